//! Velopack's own client against the Velopack feed (SPEC §2.6) over TCP: the `velopack`
//! crate's `UpdateManager` with its `HttpSource`, as a Rust (or C++/Node/Python, which bind the same
//! library) Velopack app runs it, checks for an update, downloads it (a full package, and
//! through a chain of deltas) and verifies every package's size and SHA-256. The store is
//! filled by `release-edge publish` of `vpk pack`-shaped folders; the packages (zips with a
//! `.nuspec`, as Velopack reads them) are built at test time.
//!
//! One part of Velopack cannot run here: the `Update` binary that rebuilds a full package
//! from the base and the deltas (`Update patch`), built from Velopack's repository and
//! published on no registry this suite reaches. `tests/clients/velopack/update.py` stands
//! in for that command (Velopack's delta rules, whole files only); the test compares what
//! it rebuilt with the full package, so a wrong chain shows.
//!
//! The client is `tests/clients/velopack` (the crate, pinned, in a program of a few lines
//! that `scripts/test.sh` builds), run as a process per step, bounded in time.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use release_edge::release::rollout::in_rollout;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::support::{
    Fixture, TestServer, admin_releases, admin_router, entry, get, on_free_port, private_router,
    repo_root,
};

/// The longest a client step may take.
const LIMIT: Duration = Duration::from_secs(30);
const VERSIONS: [&str; 3] = ["1.0.0", "1.1.0", "1.2.0"];
/// `vpk pack`'s default channel on Linux.
const CHANNEL: &str = "linux";

/// The app's files at `version`: `app.bin` changes every release, `settings.txt` only in
/// 1.1.0, `old.txt` is gone from 1.1.0 on and `new.txt` arrives in 1.2.0, so that a delta
/// applied to the wrong base rebuilds the wrong package.
fn app_files(version: &str) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let bin: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(31) as u8) ^ version.as_bytes()[2])
        .collect();
    files.insert("lib/app/app.bin".into(), bin);
    let settings = if version == "1.0.0" {
        "settings 1.0"
    } else {
        "settings 1.1"
    };
    files.insert("lib/app/settings.txt".into(), settings.into());
    if version == "1.0.0" {
        files.insert("lib/app/old.txt".into(), b"removed in 1.1.0".to_vec());
    }
    if version == "1.2.0" {
        files.insert("lib/app/new.txt".into(), b"added in 1.2.0".to_vec());
    }
    files
}

/// The package manifest Velopack reads (`{id}.nuspec`, and `current/sq.version` installed).
fn nuspec(version: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <package xmlns=\"http://schemas.microsoft.com/packaging/2010/07/nuspec.xsd\"><metadata>\
         <id>App</id><title>App</title><version>{version}</version><authors>Acme</authors>\
         <description>test app</description><mainExe>app</mainExe><os>linux</os>\
         <channel>{CHANNEL}</channel><releaseNotes>Notes of {version}</releaseNotes>\
         </metadata></package>"
    )
}

fn zip(entries: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        writer
            .start_file(name.as_str(), options)
            .expect("zip entry");
        writer.write_all(bytes).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).expect("entry");
            let mut data = Vec::new();
            file.read_to_end(&mut data).expect("read entry");
            (file.name().to_owned(), data)
        })
        .collect()
}

/// `App-{version}-full.nupkg`'s contents.
fn full_entries(version: &str) -> BTreeMap<String, Vec<u8>> {
    let mut entries = app_files(version);
    entries.insert("App.nuspec".into(), nuspec(version).into_bytes());
    entries
}

/// A delta from `from` to `to` as Velopack's rules read it: changed and new files whole,
/// unchanged ones as an empty `.zsdiff`, removed ones absent.
fn delta(from: &str, to: &str) -> Vec<u8> {
    let (old, new) = (app_files(from), app_files(to));
    let mut entries = BTreeMap::new();
    entries.insert("App.nuspec".to_owned(), nuspec(to).into_bytes());
    for (name, bytes) in &new {
        if old.get(name) == Some(bytes) {
            entries.insert(format!("{name}.zsdiff"), Vec::new());
        } else {
            entries.insert(name.clone(), bytes.clone());
        }
    }
    zip(&entries)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn asset(version: &str, kind: &str, file: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "PackageId": "App", "Version": version, "Type": kind, "FileName": file,
        "SHA1": hex(&Sha1::digest(bytes)), "SHA256": hex(&Sha256::digest(bytes)),
        "Size": bytes.len(), "NotesMarkdown": format!("Notes of {version}"),
        "NotesHtml": format!("<p>Notes of {version}</p>")
    })
}

/// What `vpk pack` leaves in its output folder for `version`: the new full package and
/// delta, the feed listing them (and the older packages still in the folder), the installers.
fn vpk_folder(dir: &Path, version: &str) {
    let index = VERSIONS
        .iter()
        .position(|v| *v == version)
        .expect("known version");
    let mut assets = Vec::new();
    for (i, v) in VERSIONS[..=index].iter().enumerate().rev() {
        let full_name = format!("App-{v}-{CHANNEL}-full.nupkg");
        let full = zip(&full_entries(v));
        std::fs::write(dir.join(&full_name), &full).expect("write full");
        if i > 0 {
            let delta_name = format!("App-{v}-{CHANNEL}-delta.nupkg");
            let bytes = delta(VERSIONS[i - 1], v);
            std::fs::write(dir.join(&delta_name), &bytes).expect("write delta");
            assets.push(asset(v, "Delta", &delta_name, &bytes));
        }
        assets.push(asset(v, "Full", &full_name, &full));
    }
    let feed = serde_json::json!({ "Assets": assets });
    std::fs::write(
        dir.join(format!("releases.{CHANNEL}.json")),
        feed.to_string(),
    )
    .expect("feed");
    std::fs::write(dir.join("App.AppImage"), format!("AppImage {version}")).expect("appimage");
    std::fs::write(
        dir.join(format!("assets.{CHANNEL}.json")),
        r#"[{"RelativeFileName":"App.AppImage","Type":"Portable"}]"#,
    )
    .expect("assets");
}

/// A store with 1.0.0, 1.1.0 and 1.2.0 published from `vpk` folders, one publish each (the
/// last folder alone would do: the feed merges with what the store serves), and a server on a
/// free port.
async fn published() -> (Fixture, TestServer) {
    let mut fx = Fixture::new();
    let store = release_edge::store::Store::from_config(&fx.config.store, &fx.config.cache)
        .expect("the store");
    for version in VERSIONS {
        let folder = tempfile::tempdir().expect("tempdir");
        vpk_folder(folder.path(), version);
        release_edge::publish::publish(&store, folder.path(), version, "latest")
            .await
            .unwrap_or_else(|e| panic!("publish {version}: {e:#}"));
    }
    on_free_port(&mut fx.config);
    let server = TestServer::start(fx.config.clone()).await;
    (fx, server)
}

/// An installed app at `version`, as Velopack lays it out: its manifest, the `Update`
/// binary (the stand-in), its packages folder (with its own full package when `base`).
struct Install {
    dir: tempfile::TempDir,
}

impl Install {
    fn new(version: &str, base: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let (current, packages) = (root.join("current"), root.join("packages"));
        std::fs::create_dir_all(&current).expect("mkdir");
        std::fs::create_dir_all(&packages).expect("mkdir");
        std::fs::write(current.join("sq.version"), nuspec(version)).expect("manifest");
        let update = root.join("Update");
        std::fs::copy(
            repo_root().join("tests/clients/velopack/update.py"),
            &update,
        )
        .expect("the Update stand-in");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&update, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        if base {
            std::fs::write(
                packages.join(format!("App-{version}-{CHANNEL}-full.nupkg")),
                zip(&full_entries(version)),
            )
            .expect("base package");
        }
        Self { dir }
    }

    /// Fixes the install's rollout identity (Velopack keeps it in `packages/.betaId`).
    fn staging_id(&self, id: &str) {
        std::fs::write(self.packages().join(".betaId"), id).expect("betaId");
    }

    fn packages(&self) -> PathBuf {
        self.dir.path().join("packages")
    }

    /// Where the stand-in logs its invocations: beside itself.
    fn patch_log(&self) -> PathBuf {
        self.dir.path().join("patch.log")
    }

    fn patches(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.patch_log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line"))
            .collect()
    }

    /// Runs Velopack's client (`tests/clients/velopack`) on this install against the feed
    /// at `base_url`: the update it read from the feed (`None`: up to date, or an empty
    /// feed), after downloading and verifying it when `action` is `download`.
    async fn client(&self, base_url: &str, action: &str) -> Option<serde_json::Value> {
        let mut command = tokio::process::Command::new(client_program());
        command
            .arg(self.dir.path())
            .arg(base_url)
            .arg(action)
            .kill_on_drop(true);
        let output = tokio::time::timeout(LIMIT, command.output())
            .await
            .unwrap_or_else(|_| panic!("velopack-client {action} within {LIMIT:?}"))
            .expect("velopack-client runs");
        assert!(
            output.status.success(),
            "velopack-client {action} {base_url}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("the client's JSON answer");
        Some(answer["update"].clone()).filter(|u| !u.is_null())
    }

    /// The client's check.
    async fn check(&self, base_url: &str) -> Option<serde_json::Value> {
        self.client(base_url, "check").await
    }

    /// The client's check, download and verification of the update it must find.
    async fn download(&self, base_url: &str) -> serde_json::Value {
        self.client(base_url, "download")
            .await
            .expect("an update to download")
    }
}

/// Velopack's client program, built by `scripts/test.sh` (`VELOPACK_CLIENT` overrides).
fn client_program() -> PathBuf {
    let path = std::env::var_os("VELOPACK_CLIENT").map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| repo_root().join("target"), PathBuf::from)
                .join("debug/velopack-client")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} is missing: run ./scripts/test.sh (it builds tests/clients/velopack), or \
         `cargo build --manifest-path tests/clients/velopack/Cargo.toml --target-dir target`",
        path.display()
    );
    path
}

/// The version, base version and delta file names of an offered update.
fn offered(info: &serde_json::Value) -> (String, Option<String>, Vec<String>) {
    let text = |v: &serde_json::Value| v.as_str().expect("a string").to_owned();
    (
        text(&info["TargetFullRelease"]["Version"]),
        info["BaseRelease"].as_object().map(|b| text(&b["Version"])),
        info["DeltasToTarget"]
            .as_array()
            .expect("deltas")
            .iter()
            .map(|d| text(&d["FileName"]))
            .collect(),
    )
}

fn package(install: &Install, version: &str) -> Vec<u8> {
    std::fs::read(
        install
            .packages()
            .join(format!("App-{version}-{CHANNEL}-full.nupkg")),
    )
    .expect("the downloaded package")
}

#[tokio::test]
async fn velopack_finds_downloads_and_verifies_a_full_update() {
    let (_fx, server) = published().await;
    let install = Install::new("1.0.0", false);
    for base in [
        server.url("/velopack/latest"),
        server.url("/update/linux/x64/1.0.0"),
    ] {
        let info = install.check(&base).await.expect("an update");
        assert_eq!(offered(&info), ("1.2.0".into(), None, vec![]), "{base}");
        let target = &info["TargetFullRelease"];
        assert_eq!(target["FileName"], "App-1.2.0-linux-full.nupkg");
        assert_eq!(target["NotesMarkdown"], "Notes of 1.2.0");
        let full = zip(&full_entries("1.2.0"));
        assert_eq!(target["Size"], full.len());
        assert_eq!(target["SHA256"], hex(&Sha256::digest(&full)));
    }
    let info = install.download(&server.url("/velopack/latest")).await;
    assert_eq!(info["TargetFullRelease"]["Version"], "1.2.0");
    assert_eq!(
        package(&install, "1.2.0"),
        zip(&full_entries("1.2.0")),
        "byte for byte"
    );
    assert!(install.patches().is_empty(), "no delta applied");
    let checks = |labels: [&str; 4]| {
        server
            .state
            .metrics
            .update_checks
            .with_label_values(&labels)
            .get()
    };
    // The platform from the channel's name on /velopack/, from the path on /update/.
    assert_eq!(checks(["velopack", "linux", "other", "update"]), 2);
    assert_eq!(checks(["velopack", "linux", "x64", "update"]), 1);
    // Up to date: nothing offered.
    let current = Install::new("1.2.0", false);
    assert_eq!(current.check(&server.url("/velopack/latest")).await, None);
}

#[tokio::test]
async fn velopack_updates_through_a_chain_of_deltas() {
    let (_fx, server) = published().await;
    let install = Install::new("1.0.0", true);
    let base = server.url("/velopack/latest");
    let want = (
        "1.2.0".to_owned(),
        Some("1.0.0".to_owned()),
        vec![
            "App-1.1.0-linux-delta.nupkg".to_owned(),
            "App-1.2.0-linux-delta.nupkg".to_owned(),
        ],
    );
    assert_eq!(
        offered(&install.check(&base).await.expect("an update")),
        want
    );
    assert_eq!(offered(&install.download(&base).await), want);
    let patches = install.patches();
    assert_eq!(patches.len(), 1, "one patch run: {patches:?}");
    let deltas: Vec<&str> = patches[0]["deltas"]
        .as_array()
        .expect("deltas")
        .iter()
        .map(|d| d.as_str().expect("path").rsplit('/').next().expect("name"))
        .collect();
    assert_eq!(
        deltas,
        ["App-1.1.0-linux-delta.nupkg", "App-1.2.0-linux-delta.nupkg"]
    );
    assert_eq!(
        unzip(&package(&install, "1.2.0")),
        full_entries("1.2.0"),
        "rebuilt from the chain"
    );
}

/// Writes the channel's policy and drops the server's cached copy.
fn set_policy(fx: &Fixture, server: &TestServer, policy: serde_json::Value) {
    fx.write("policy/latest.json", policy.to_string());
    server.state.manifests.purge();
}

#[tokio::test]
async fn a_halted_or_yanked_version_is_not_offered_to_velopack() {
    let (fx, server) = published().await;
    let base = server.url("/velopack/latest");

    // Halted: everyone new gets 1.1.0 (through its delta); a client on 1.1.0 nothing.
    set_policy(
        &fx,
        &server,
        serde_json::json!({"rollout": {"halted": true}}),
    );
    let install = Install::new("1.0.0", true);
    let want = (
        "1.1.0".to_owned(),
        Some("1.0.0".to_owned()),
        vec!["App-1.1.0-linux-delta.nupkg".to_owned()],
    );
    assert_eq!(offered(&install.download(&base).await), want);
    assert_eq!(unzip(&package(&install, "1.1.0")), full_entries("1.1.0"));
    assert_eq!(Install::new("1.1.0", true).check(&base).await, None);

    // 1.1.0 yanked: 1.2.0 is offered, but its delta is built on 1.1.0: no delta, the full
    // package (a chain with a gap would rebuild the wrong files).
    set_policy(
        &fx,
        &server,
        serde_json::json!({"yanked": {"1.1.0": "broken"}}),
    );
    let install = Install::new("1.0.0", true);
    let info = install.download(&base).await;
    assert_eq!(offered(&info), ("1.2.0".into(), None, vec![]));
    assert!(install.patches().is_empty());
    assert_eq!(package(&install, "1.2.0"), zip(&full_entries("1.2.0")));

    // 1.2.0 yanked: 1.1.0 is current; a client on 1.2.0 is offered nothing (no downgrade).
    set_policy(
        &fx,
        &server,
        serde_json::json!({"yanked": {"1.2.0": "broken"}}),
    );
    let info = Install::new("1.0.0", true)
        .check(&base)
        .await
        .expect("1.1.0");
    assert_eq!(info["TargetFullRelease"]["Version"], "1.1.0");
    assert_eq!(Install::new("1.2.0", true).check(&base).await, None);
    let feed = get(
        &release_edge::app(server.state.clone()),
        "/velopack/latest/releases.linux.json?localVersion=1.2.0&id=App&stagingId=x",
        &[],
    )
    .await;
    assert_eq!(feed.json(), serde_json::json!({"Assets": []}));
}

#[tokio::test]
async fn a_staged_rollout_buckets_velopack_s_staging_id() {
    let (fx, server) = published().await;
    set_policy(
        &fx,
        &server,
        serde_json::json!({"rollout": {"percentage": 40}}),
    );
    let pick = |inside: bool| {
        (0..)
            .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
            .find(|id| in_rollout(id, "1.2.0", 40.0) == inside)
            .expect("an id")
    };
    for (inside, want) in [(true, "1.2.0"), (false, "1.1.0")] {
        let install = Install::new("1.0.0", false);
        install.staging_id(&pick(inside));
        let info = install
            .check(&server.url("/velopack/latest"))
            .await
            .expect("an update");
        assert_eq!(
            info["TargetFullRelease"]["Version"], want,
            "inside the rollout: {inside}"
        );
    }
}

#[tokio::test]
async fn publish_refuses_a_vpk_folder_whose_feed_does_not_match_its_packages() {
    let fx = Fixture::new();
    let store = release_edge::store::Store::from_config(&fx.config.store, &fx.config.cache)
        .expect("the store");
    for (field, value) in [
        ("SHA256", serde_json::json!("00".repeat(32))),
        ("SHA1", serde_json::json!("00".repeat(20))),
        ("Size", serde_json::json!(7)),
    ] {
        let folder = tempfile::tempdir().expect("tempdir");
        vpk_folder(folder.path(), "1.0.0");
        let feed_path = folder.path().join(format!("releases.{CHANNEL}.json"));
        let mut feed: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&feed_path).expect("feed")).expect("json");
        feed["Assets"][0][field] = value;
        std::fs::write(&feed_path, feed.to_string()).expect("feed");
        let err = release_edge::publish::publish(&store, folder.path(), "1.0.0", "latest")
            .await
            .expect_err("a feed that does not match its package");
        let message = format!("{err:#}");
        assert!(
            message.contains("App-1.0.0-linux-full.nupkg"),
            "{field}: {message}"
        );
        // Nothing written: not the package, not the feed.
        assert!(!fx.root().join("releases/v1.0.0").exists(), "{field}");
        assert!(
            !fx.root()
                .join(format!("releases/latest/releases.{CHANNEL}.json"))
                .exists(),
            "{field}"
        );
    }
}

#[tokio::test]
async fn latest_and_the_admin_api_know_velopack_releases() {
    let (fx, server) = published().await;
    let (router, auth) = admin_router(&fx);
    let base = &fx.config.public_url;
    let reply = get(&router, "/latest/linux", &[]).await;
    assert_eq!(
        reply.status,
        302,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.header("location"),
        format!("{base}/releases/v1.2.0/App.AppImage")
    );
    // The installer is the one `publish` stored for that version.
    let installer = get(&router, "/releases/v1.2.0/App.AppImage", &[]).await;
    assert_eq!(installer.body, "AppImage 1.2.0");

    let body = admin_releases(&router, &auth).await;
    let latest = entry(&body["channels"], "channel", "latest");
    assert_eq!(
        latest["serves"],
        serde_json::json!({"releases.linux.json": "1.2.0"})
    );
    assert_eq!(latest["current"], "1.2.0");
    assert_eq!(latest["previous"], "1.1.0");
    assert_eq!(
        latest["versions"],
        serde_json::json!(["1.0.0", "1.1.0", "1.2.0"])
    );
    assert_eq!(body["channels"].as_array().expect("channels").len(), 1);
    let v12 = entry(&body["versions"], "version", "1.2.0");
    assert_eq!(v12["files"]["linux"], serde_json::json!(["App.AppImage"]));

    // Halted: a new visitor gets 1.1.0's installer.
    set_policy(
        &fx,
        &server,
        serde_json::json!({"rollout": {"halted": true}}),
    );
    let router = fx.router();
    let reply = get(&router, "/latest/linux", &[]).await;
    assert_eq!(
        reply.header("location"),
        format!("{base}/releases/v1.1.0/App.AppImage")
    );
}

#[tokio::test]
async fn a_private_channel_s_feed_needs_a_token_and_its_packages_are_signed() {
    let (mut fx, _server) = published().await;
    let (router, token) = private_router(&mut fx, "latest");
    let feed = "/velopack/latest/releases.linux.json?localVersion=1.0.0&id=App&stagingId=x";
    let package = "/velopack/latest/App-1.2.0-linux-full.nupkg";
    // The packages themselves, the delta and the installer too: the folder of a version
    // whose only feed is a private channel's is private.
    for path in [
        feed,
        package,
        "/releases/v1.2.0/App-1.2.0-linux-full.nupkg",
        "/releases/v1.2.0/App-1.2.0-linux-delta.nupkg",
        "/releases/v1.2.0/App.AppImage",
    ] {
        let refused = get(&router, path, &[]).await;
        assert_eq!(refused.status, 401, "{path}");
    }
    // Velopack's HttpSource replaces the base URL's query: its apps send the header.
    let auth = format!("Bearer {token}");
    let reply = get(&router, feed, &[("authorization", &auth)]).await;
    assert_eq!(reply.status, 200);
    let names: Vec<serde_json::Value> = reply.json()["Assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|a| a["FileName"].clone())
        .collect();
    assert_eq!(
        names[..2],
        ["App-1.2.0-linux-delta.nupkg", "App-1.2.0-linux-full.nupkg"]
    );
    let redirect = get(&router, package, &[("authorization", &auth)]).await;
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("cache-control"), "private, no-store");
    let location = redirect.header("location");
    let prefix = format!(
        "{}/releases/v1.2.0/App-1.2.0-linux-full.nupkg?sig=",
        fx.config.public_url
    );
    assert!(location.starts_with(&prefix), "{location}");
    let download = get(&router, &location[fx.config.public_url.len()..], &[]).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.body, zip(&full_entries("1.2.0")));
}
