//! electron-updater (the npm package, run by Node) against the update feed: full and differential downloads.
//!
//! The client is `tests/clients/electron-updater/harness.js`: the real `electron-updater`
//! (pinned in its package.json, installed by `scripts/test.sh` with `npm ci`), with a
//! stand-in for the `electron` module only where it asks for the app's name, version, paths
//! and network (`fake-electron.js`). The app runs version 1.0.0 with the `generic` provider
//! at `{public_url}/update/linux/x64/1.0.0` (SPEC §2.3), so electron-updater reads
//! `latest-linux.yml` through the feed, follows its absolute `/releases/v1.1.0/...` URLs and
//! verifies the sha512 itself.
//!
//! Updater class: `AppImageUpdater`, the one electron-updater's `autoUpdater` is on Linux. It
//! downloads without installing (the harness never calls `quitAndInstall`), and it is the
//! Linux updater with a differential download: the block map is embedded in the AppImage
//! (`blockMapSize` in the channel file) and made here, as electron-builder makes it, by
//! `app-builder blockmap --input F --compression deflate` from the npm package
//! `app-builder-bin`. `DebUpdater`/`RpmUpdater` only download in full. Separate `.blockmap`
//! files (`app-builder blockmap --input F --output F.blockmap`) are the Windows/mac flow:
//! one more test runs `NsisUpdater` for them, on the `win32` feed, with electron-updater's
//! own test hook (`_testOnlyOptions.platform = "win32"`, as electron-builder's updater tests
//! do) so that under Node on Linux it reads `latest.yml` as it does on Windows.
//!
//! Node and the npm packages are required: a missing one fails the test with a hint to run
//! `scripts/test.sh`; every Node run is killed after [`NODE_LIMIT`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use release_edge::AppState;
use serde_json::Value;

use crate::support::{Fixture, TestServer, read, scratch};

/// `tests/clients/electron-updater`: the Node project of the harness.
const CLIENT_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/electron-updater"
);
/// Longest run of one Node command; the process is killed after it.
const NODE_LIMIT: Duration = Duration::from_secs(60);
/// The matched route of `/releases/*`, as the metrics label it.
const ROUTE: &str = "/releases/{*path}";
const OLD_NAME: &str = "Sample-App-1.0.0.AppImage";
const NEW_NAME: &str = "Sample-App-1.1.0.AppImage";
const MIB: usize = 1024 * 1024;
const KIB: usize = 1024;

/// Fails (never skips) when Node or the harness's npm packages are missing or not the
/// versions `package.json` pins.
pub(crate) fn require_client() {
    let hint = "run ./scripts/test.sh (it runs `npm ci` in tests/clients/electron-updater), \
                or `npm ci` there yourself";
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is required by the electron-updater tests (Node 18+ on PATH): {node:?}; {hint}"
    );
    let manifest: Value = serde_json::from_slice(&read(Path::new(CLIENT_DIR).join("package.json")))
        .expect("tests/clients/electron-updater/package.json");
    let deps = manifest["dependencies"]
        .as_object()
        .expect("dependencies in package.json");
    for (name, pinned) in deps {
        let installed = Path::new(CLIENT_DIR)
            .join("node_modules")
            .join(name)
            .join("package.json");
        let found = std::fs::read(&installed)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned));
        assert_eq!(
            found.as_deref(),
            pinned.as_str(),
            "npm package {name}@{} is not installed in tests/clients/electron-updater \
             (found {found:?}); {hint}",
            pinned.as_str().unwrap_or_default()
        );
    }
}

/// Output of one Node run.
pub(crate) struct NodeRun {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl NodeRun {
    /// The JSON result: the last line of stdout.
    pub(crate) fn json(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("harness printed nothing; stderr:\n{}", self.stderr));
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "harness result is not JSON ({e}): {line}\nstderr:\n{}",
                self.stderr
            )
        })
    }
}

/// `node harness.js ARGS` in the client directory, killed after [`NODE_LIMIT`].
pub(crate) async fn harness(args: &[&str]) -> NodeRun {
    let child = tokio::process::Command::new("node")
        .arg("harness.js")
        .args(args)
        .current_dir(CLIENT_DIR)
        .env("NODE_OPTIONS", "")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    // On timeout the future is dropped, and with it the child, which kill_on_drop kills.
    let output = tokio::time::timeout(NODE_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!("node harness.js {args:?} ran longer than {NODE_LIMIT:?}: killed")
        })
        .expect("node output");
    NodeRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// What `app-builder blockmap` says about a file.
#[derive(Debug)]
pub(crate) struct ArtifactInfo {
    pub(crate) size: u64,
    pub(crate) sha512: String,
    pub(crate) block_map_size: Option<u64>,
}

/// How electron-builder attaches the block map of an artifact.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum BlockMap {
    /// Appended to the file, deflate, `blockMapSize` in the channel file (AppImage).
    Embedded,
    /// A separate gzip `{file}.blockmap` beside it (NSIS, mac zip).
    Separate,
}

/// Runs electron-builder's block map tool on `file` and returns its size, sha512 and
/// `blockMapSize` (embedded) as the channel file lists them.
async fn blockmap(file: &Path, kind: BlockMap) -> ArtifactInfo {
    let path = file.to_str().expect("utf-8 path");
    let output = format!("{path}.blockmap");
    let mut args = vec!["blockmap", path];
    if kind == BlockMap::Separate {
        args.extend(["--output", &output]);
    }
    let run = harness(&args).await;
    assert!(
        run.success,
        "app-builder blockmap failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    let info = run.json();
    let parsed = ArtifactInfo {
        size: info["size"].as_u64().expect("size"),
        sha512: info["sha512"].as_str().expect("sha512").to_owned(),
        block_map_size: info["blockMapSize"].as_u64(),
    };
    match kind {
        BlockMap::Embedded => assert!(parsed.block_map_size.is_some(), "no blockMapSize: {info}"),
        BlockMap::Separate => assert!(
            Path::new(&output).metadata().is_ok_and(|m| m.len() > 0),
            "no {output}"
        ),
    }
    parsed
}

/// Deterministic bytes without repeats (SplitMix64), so that content-defined chunking finds
/// no block twice and every unchanged block is really the old file's.
pub(crate) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A channel file as electron-builder writes it for one artifact.
pub(crate) fn channel_file(version: &str, name: &str, info: &ArtifactInfo) -> String {
    let block_map = info
        .block_map_size
        .map(|b| format!("    blockMapSize: {b}\n"))
        .unwrap_or_default();
    format!(
        "version: {version}\nfiles:\n  - url: {name}\n    sha512: {sha}\n    size: {size}\n{block_map}\
         path: {name}\nsha512: {sha}\nreleaseDate: '2026-03-02T10:00:00.000Z'\n",
        sha = info.sha512,
        size = info.size,
    )
}

/// One artifact as electron-builder publishes it: its bytes (with the block map when it is
/// embedded), the separate block map if any, and what the channel file says about it.
pub(crate) struct Artifact {
    pub(crate) bytes: Vec<u8>,
    pub(crate) blockmap: Option<Vec<u8>>,
    pub(crate) info: ArtifactInfo,
}

/// Builds the artifact `name` from `raw` with its block map.
pub(crate) async fn artifact(name: &str, raw: &[u8], kind: BlockMap) -> Artifact {
    let build = scratch();
    let path = build.path().join(name);
    std::fs::write(&path, raw).expect("write artifact");
    let info = blockmap(&path, kind).await;
    let bytes = read(&path);
    assert_eq!(bytes.len() as u64, info.size);
    let blockmap =
        (kind == BlockMap::Separate).then(|| read(build.path().join(format!("{name}.blockmap"))));
    Artifact {
        bytes,
        blockmap,
        info,
    }
}

/// Two AppImages, each with its embedded block map.
pub(crate) async fn build_appimages(old_raw: &[u8], new_raw: &[u8]) -> (Artifact, Artifact) {
    (
        artifact(OLD_NAME, old_raw, BlockMap::Embedded).await,
        artifact(NEW_NAME, new_raw, BlockMap::Embedded).await,
    )
}

/// 8 MiB of old content and the new content: three changes (two overwrites, one insertion)
/// of 72 KiB in all.
pub(crate) fn changed_content() -> (Vec<u8>, Vec<u8>, usize) {
    let old_raw = random_bytes(10, 8 * MIB);
    let mut new_raw = old_raw.clone();
    new_raw[MIB..MIB + 40 * KIB].copy_from_slice(&random_bytes(11, 40 * KIB));
    let at = 4 * MIB + 1234;
    new_raw.splice(at..at, random_bytes(12, 24 * KIB));
    let at = 6 * MIB + MIB / 2;
    new_raw[at..at + 8 * KIB].copy_from_slice(&random_bytes(13, 8 * KIB));
    (old_raw, new_raw, (40 + 24 + 8) * KIB)
}

/// Serves `fixture` on a free port with `public_url` pointing at it, because electron-updater
/// follows the absolute URLs of the channel file.
async fn serve(mut fixture: Fixture) -> (Fixture, TestServer) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("free port");
    drop(listener);
    fixture.config.listen = addr;
    fixture.config.public_url = format!("http://{addr}");
    let server = TestServer::start_with(fixture.config.clone(), fixture.secrets()).await;
    assert_eq!(server.addr, addr);
    (fixture, server)
}

/// A store with both releases (and their separate block maps, if any) and `channel`
/// announcing 1.1.0.
fn store(old: (&str, &Artifact), new: (&str, &Artifact), channel: &str, feed: &str) -> Fixture {
    store_in(Fixture::new(), old, new, channel, feed)
}

/// As [`store`], in `fixture`'s store (a bucket, say).
fn store_in(
    fixture: Fixture,
    old: (&str, &Artifact),
    new: (&str, &Artifact),
    channel: &str,
    feed: &str,
) -> Fixture {
    let mut fixture = fixture.file(&format!("releases/latest/{channel}"), feed);
    for (version, (name, artifact)) in [("1.0.0", old), ("1.1.0", new)] {
        let key = format!("releases/v{version}/{name}");
        fixture = fixture.file(&key, &artifact.bytes);
        if let Some(map) = &artifact.blockmap {
            fixture = fixture.file(&format!("{key}.blockmap"), map);
        }
    }
    fixture
}

/// The app under test: which electron-updater class, its feed URL and its current artifact.
pub(crate) struct App<'a> {
    updater: &'a str,
    feed: &'a str,
    old_name: &'a str,
    old: &'a [u8],
}

/// The Linux app (1.0.0, running `old` as its AppImage).
pub(crate) fn appimage_app(old: &[u8]) -> App<'_> {
    App {
        updater: "appimage",
        feed: "/update/linux/x64/1.0.0",
        old_name: OLD_NAME,
        old,
    }
}

/// Runs `app` against `server`.
pub(crate) async fn run_update(
    server: &TestServer,
    app: App<'_>,
    differential: bool,
) -> (NodeRun, tempfile::TempDir) {
    let client = scratch();
    let old_file = client.path().join(app.old_name);
    std::fs::write(&old_file, app.old).expect("write the running app's artifact");
    let config = serde_json::json!({
        "updater": app.updater,
        "feedUrl": server.url(app.feed),
        "version": "1.0.0",
        "workDir": client.path(),
        "oldFile": old_file,
        "differential": differential,
        "expectVersion": "1.1.0",
    });
    let run = harness(&["update", &config.to_string()]).await;
    (run, client)
}

fn requests(state: &AppState, route: &str, status: &str) -> u64 {
    state
        .metrics
        .http_requests
        .with_label_values(&[route, "GET", status])
        .get()
}

fn sent_bytes(state: &AppState) -> u64 {
    state
        .metrics
        .response_bytes
        .with_label_values(&[ROUTE])
        .get()
}

fn update_checks(state: &AppState, platform: &str) -> u64 {
    state
        .metrics
        .update_checks
        .with_label_values(&["electron-updater", platform, "x64", "update"])
        .get()
}

/// The downloaded file, which must be inside the client's directory (the updater cache).
pub(crate) fn downloaded(result: &Value, client: &Path, name: &str) -> PathBuf {
    let file = PathBuf::from(
        result["downloadedFile"]
            .as_str()
            .unwrap_or_else(|| panic!("no downloadedFile in {result}")),
    );
    assert!(file.starts_with(client), "{file:?} is outside {client:?}");
    assert_eq!(file.file_name().and_then(|n| n.to_str()), Some(name));
    file
}

/// Check, find 1.1.0, download it in full (differential download disabled), sha512 verified
/// by electron-updater; the file is the 1.1.0 artifact byte for byte, fetched with one
/// `200`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electron_updater_downloads_the_update_in_full() {
    require_client();
    let (old, new) = build_appimages(
        &random_bytes(1, 2 * MIB),
        &random_bytes(2, 3 * MIB + 12_345),
    )
    .await;
    let feed = channel_file("1.1.0", NEW_NAME, &new.info);
    let fixture = store(
        (OLD_NAME, &old),
        (NEW_NAME, &new),
        "latest-linux.yml",
        &feed,
    );
    let (_fixture, server) = serve(fixture).await;

    let (run, client) = run_update(&server, appimage_app(&old.bytes), false).await;
    let result = update_succeeded(&run, client.path(), (NEW_NAME, &new.bytes), false);
    assert_eq!(result["updater"], "AppImageUpdater");
    assert_eq!(result["version"], "1.1.0");

    let state = &server.state;
    assert_eq!(update_checks(state, "linux"), 1, "one update check counted");
    assert_eq!(requests(state, ROUTE, "200"), 1, "one full download");
    assert_eq!(requests(state, ROUTE, "206"), 0);
    assert_eq!(sent_bytes(state), new.info.size);
}

/// The sha512 check is electron-updater's own and it is live: a channel file whose sha512
/// does not match the artifact makes the download fail (so the passing tests above and below
/// mean the hash was checked and matched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electron_updater_refuses_an_artifact_whose_sha512_differs() {
    require_client();
    let (old, new) = build_appimages(&random_bytes(3, MIB), &random_bytes(4, MIB + 777)).await;
    let wrong = ArtifactInfo {
        sha512: old.info.sha512.clone(),
        ..new.info
    };
    let feed = channel_file("1.1.0", NEW_NAME, &wrong);
    let fixture = store(
        (OLD_NAME, &old),
        (NEW_NAME, &new),
        "latest-linux.yml",
        &feed,
    );
    let (_fixture, server) = serve(fixture).await;

    let (run, client) = run_update(&server, appimage_app(&old.bytes), false).await;
    let result = run.json();
    assert!(!run.success, "a wrong sha512 was accepted: {result:#}");
    assert_eq!(result["ok"], false);
    assert_eq!(
        result["error"]["code"], "ERR_CHECKSUM_MISMATCH",
        "{result:#}\nstderr:\n{}",
        run.stderr
    );
    assert!(result["downloadedFile"].is_null());
    let left: Vec<_> = walk(&client.path().join("cache"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("1.1.0"))
        .collect();
    assert!(left.is_empty(), "a rejected download was kept: {left:?}");
    assert_eq!(
        requests(&server.state, ROUTE, "200"),
        1,
        "the whole file was fetched"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// An update that succeeded without falling back, downloaded in full or differentially
/// (`differential`), its file `name` in the client's directory byte for byte `bytes`; the
/// harness's result.
pub(crate) fn update_succeeded(
    run: &NodeRun,
    client: &Path,
    (name, bytes): (&str, &[u8]),
    differential: bool,
) -> Value {
    let result = run.json();
    assert!(
        run.success && result["ok"] == true,
        "electron-updater failed: {result:#}\nstderr:\n{}",
        run.stderr
    );
    assert_eq!(result["differential"], differential, "{result:#}");
    assert_eq!(result["fallback"], false, "{result:#}");
    let file = downloaded(&result, client, name);
    assert!(read(&file) == bytes, "{name} differs from the artifact");
    result
}

/// What every differential test asserts: success without a fallback, the rebuilt file
/// byte-identical, every artifact request a range request answered `206`, the changed blocks
/// in `multipart/byteranges`, no `200` on `/releases` but for separate block maps, and far
/// fewer bytes sent than the file.
fn assert_differential(
    run: &NodeRun,
    client: &Path,
    server: &TestServer,
    new: (&str, &Artifact),
    changed: usize,
) -> Value {
    let (name, new) = new;
    let result = update_succeeded(run, client, (name, &new.bytes), true);
    assert_eq!(result["version"], "1.1.0");

    let exchanges = result["exchanges"].as_array().expect("exchanges");
    let artifact_path = format!("/releases/v1.1.0/{name}");
    let artifact: Vec<_> = exchanges
        .iter()
        .filter(|e| e["path"] == artifact_path.as_str())
        .collect();
    assert!(
        !artifact.is_empty()
            && artifact
                .iter()
                .all(|e| e["status"] == 206 && e["range"].is_string()),
        "every artifact request is a range request answered 206: {exchanges:#?}"
    );
    assert!(
        artifact.iter().any(|e| e["contentType"]
            .as_str()
            .is_some_and(|c| c.starts_with("multipart/byteranges; boundary="))),
        "changed blocks came in multipart/byteranges: {exchanges:#?}"
    );

    let state = &server.state;
    let sent = sent_bytes(state);
    let full = new.info.size;
    eprintln!(
        "{}: {sent} bytes sent on /releases for a {full}-byte update ({:.1}%); plan: {}; requests: {}",
        result["updater"],
        sent as f64 * 100.0 / full as f64,
        result["plan"],
        result["exchanges"]
    );
    // `200`s on /releases are the separate block maps only, never the artifact.
    let block_maps = exchanges
        .iter()
        .filter(|e| e["status"] == 200)
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/releases/") && p.ends_with(".blockmap"))
        })
        .count() as u64;
    assert_eq!(
        requests(state, ROUTE, "200"),
        block_maps,
        "no full download: {exchanges:#?}"
    );
    assert_eq!(
        requests(state, ROUTE, "206"),
        artifact.len() as u64,
        "range requests"
    );
    assert!(
        sent >= changed as u64,
        "{sent} bytes cannot hold the {changed} changed"
    );
    assert!(
        sent < full / 8,
        "{sent} bytes sent for a differential download of a {full}-byte file"
    );
    result
}

/// 1.0.0 → 1.1.0 differentially on Linux (AppImageUpdater): 8 MiB AppImages that differ in
/// three places, block maps embedded by electron-builder's `app-builder`. electron-updater
/// fetches the new block map with a Range request for the file's tail, then only the changed
/// blocks with one multi-range request (`multipart/byteranges`), rebuilds the file from the
/// running AppImage and verifies its sha512, without falling back to a full download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electron_updater_downloads_the_update_differentially() {
    require_client();
    let (old_raw, new_raw, changed) = changed_content();
    let (old, new) = build_appimages(&old_raw, &new_raw).await;
    let feed = channel_file("1.1.0", NEW_NAME, &new.info);
    let fixture = store(
        (OLD_NAME, &old),
        (NEW_NAME, &new),
        "latest-linux.yml",
        &feed,
    );
    let (_fixture, server) = serve(fixture).await;

    let (run, client) = run_update(&server, appimage_app(&old.bytes), true).await;
    let result = assert_differential(&run, client.path(), &server, (NEW_NAME, &new), changed);
    assert_eq!(result["updater"], "AppImageUpdater");
    assert_eq!(
        update_checks(&server.state, "linux"),
        1,
        "one update check counted"
    );
    let block_map_tail = new.info.block_map_size.expect("blockMapSize") + 4;
    assert!(
        result["exchanges"]
            .as_array()
            .expect("exchanges")
            .iter()
            .any(|e| e["range"]
                == format!(
                    "bytes={}-{}",
                    new.info.size - block_map_tail,
                    new.info.size - 1
                )
                .as_str()),
        "the embedded block map was read with a Range request for the file's tail: {result:#}"
    );
}

/// The same with separate `.blockmap` files (NsisUpdater, the Windows flow: `latest.yml`,
/// `GenericDifferentialDownloader`), the block maps written by `app-builder blockmap --output`.
/// electron-updater derives the old block map's URL from the new artifact's by replacing the
/// version in the path, which works because the feed's URLs are
/// `{public_url}/releases/v{version}/{file}`: both block maps come from `/releases`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electron_updater_downloads_differentially_with_separate_blockmaps() {
    const OLD_EXE: &str = "Sample-App-Setup-1.0.0.exe";
    const NEW_EXE: &str = "Sample-App-Setup-1.1.0.exe";
    require_client();
    let (old_raw, new_raw, changed) = changed_content();
    let old = artifact(OLD_EXE, &old_raw, BlockMap::Separate).await;
    let new = artifact(NEW_EXE, &new_raw, BlockMap::Separate).await;
    let feed = channel_file("1.1.0", NEW_EXE, &new.info);
    let fixture = store((OLD_EXE, &old), (NEW_EXE, &new), "latest.yml", &feed);
    let (_fixture, server) = serve(fixture).await;

    let app = App {
        updater: "nsis",
        feed: "/update/win32/x64/1.0.0",
        old_name: OLD_EXE,
        old: &old.bytes,
    };
    let (run, client) = run_update(&server, app, true).await;
    let result = assert_differential(&run, client.path(), &server, (NEW_EXE, &new), changed);
    assert_eq!(result["updater"], "NsisUpdater");
    assert_eq!(
        update_checks(&server.state, "win32"),
        1,
        "one update check counted"
    );
    let fetched: Vec<&str> = result["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .filter(|e| e["status"] == 200)
        .filter_map(|e| e["path"].as_str())
        .collect();
    for map in [
        format!("/releases/v1.1.0/{NEW_EXE}.blockmap"),
        format!("/releases/v1.0.0/{OLD_EXE}.blockmap"),
    ] {
        assert!(
            fetched.contains(&map.as_str()),
            "{map} not fetched: {result:#}"
        );
    }
}

/// 8 MiB of old content and the new content: a cluster of 24 small changes 96 KiB apart
/// (what a rebuilt app's archive looks like), one change far from it and one insertion.
fn clustered_content() -> (Vec<u8>, Vec<u8>) {
    let old_raw = random_bytes(20, 8 * MIB);
    let mut new_raw = old_raw.clone();
    for i in 0..24 {
        let at = 2 * MIB + i * 96 * KIB;
        new_raw[at..at + 512].copy_from_slice(&random_bytes(21 + i as u64, 512));
    }
    let at = 6 * MIB + MIB / 2;
    new_raw[at..at + 8 * KIB].copy_from_slice(&random_bytes(50, 8 * KIB));
    let at = 7 * MIB;
    new_raw.splice(at..at, random_bytes(51, 4 * KIB));
    (old_raw, new_raw)
}

/// The differential download from a bucket (the S3 store, against the in-process S3
/// server): the client's multi-range request is answered part for part, while the store
/// reads ranges within 256 KiB of each other with one ranged GET. Prints the figures the
/// README quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_differential_download_from_a_bucket_reads_close_ranges_together() {
    require_client();
    let (old_raw, new_raw) = clustered_content();
    let (old, new) = build_appimages(&old_raw, &new_raw).await;
    let feed = channel_file("1.1.0", NEW_NAME, &new.info);
    let fixture = store_in(
        Fixture::s3(),
        (OLD_NAME, &old),
        (NEW_NAME, &new),
        "latest-linux.yml",
        &feed,
    );
    let (fixture, server) = serve(fixture).await;
    let (run, client) = run_update(&server, appimage_app(&old.bytes), true).await;
    let result = update_succeeded(&run, client.path(), (NEW_NAME, &new.bytes), true);

    // What the client asked for: the ranges of its requests for the artifact, in order.
    let artifact_path = format!("/releases/v1.1.0/{NEW_NAME}");
    let requests: Vec<&str> = result["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .filter(|e| e["path"] == artifact_path.as_str())
        .filter_map(|e| e["range"].as_str())
        .collect();
    let ranges_of = |header: &str| -> Vec<(u64, u64)> {
        header
            .trim_start_matches("bytes=")
            .split(',')
            .filter_map(|r| {
                let (a, b) = r.trim().split_once('-')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect()
    };
    // What reaching the bucket should cost: per request, one GET per run of ranges less
    // than 256 KiB apart.
    let mut expected_gets = Vec::new();
    for header in &requests {
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for (a, b) in ranges_of(header) {
            match spans.last_mut() {
                Some(span) if a > span.1 && a - span.1 - 1 <= 256 * 1024 => span.1 = b,
                _ => spans.push((a, b)),
            }
        }
        expected_gets.extend(spans);
    }
    let s3 = fixture.s3.as_ref().expect("bucket");
    let target = format!("/{}/releases/v1.1.0/{NEW_NAME}", crate::support::BUCKET);
    let gets: Vec<(u64, u64)> = s3
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.target.split('?').next() == Some(target.as_str()))
        .filter_map(|r| r.range.as_deref())
        .flat_map(ranges_of)
        .collect();
    let asked: Vec<(u64, u64)> = requests.iter().flat_map(|h| ranges_of(h)).collect();
    let total = |ranges: &[(u64, u64)]| ranges.iter().map(|(a, b)| b - a + 1).sum::<u64>();
    eprintln!(
        "differential download from a bucket: {} requests asking {} ranges ({} bytes) cost {} upstream GETs ({} bytes read)",
        requests.len(),
        asked.len(),
        total(&asked),
        gets.len(),
        total(&gets),
    );
    assert_eq!(gets, expected_gets, "asked: {requests:?}");
    assert!(
        gets.len() * 4 <= asked.len(),
        "close ranges share GETs: {} GETs for {} ranges",
        gets.len(),
        asked.len()
    );
}

/// A Linux app under the release policy, driven through the admin API over TCP.
struct PolicyApp {
    server: TestServer,
    /// The store (a temporary directory, kept while the server runs).
    _fixture: Fixture,
    token: String,
    /// The AppImage each version's app runs.
    builds: Vec<(&'static str, Artifact)>,
}

impl PolicyApp {
    /// Releases 1.0.0, 1.1.0 and 1.2.0 (current), served with an admin token.
    async fn start() -> Self {
        let mut builds = Vec::new();
        for (i, version) in ["1.0.0", "1.1.0", "1.2.0"].into_iter().enumerate() {
            let name = format!("Sample-App-{version}.AppImage");
            let raw = random_bytes(20 + i as u64, MIB + i * 1000);
            builds.push((version, artifact(&name, &raw, BlockMap::Embedded).await));
        }
        let mut fixture = Fixture::new();
        for (version, build) in &builds {
            let name = format!("Sample-App-{version}.AppImage");
            let feed = channel_file(version, &name, &build.info);
            fixture = fixture
                .file(&format!("releases/v{version}/{name}"), &build.bytes)
                .file(&format!("releases/v{version}/latest-linux.yml"), &feed);
            if *version == "1.2.0" {
                fixture = fixture.file("releases/latest/latest-linux.yml", &feed);
            }
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let addr = listener.local_addr().expect("free port");
        drop(listener);
        fixture.config.listen = addr;
        fixture.config.public_url = format!("http://{addr}");
        let token = format!("{:032x}", fastrand::u128(..));
        let secrets = release_edge::config::Secrets {
            admin_tokens: release_edge::config::AdminToken::parse_list(&format!(
                "release-manager:{token}"
            )),
            ..fixture.secrets()
        };
        let server = TestServer::start_with(fixture.config.clone(), secrets).await;
        Self {
            server,
            _fixture: fixture,
            token,
            builds,
        }
    }

    /// `POST /admin/...` with the token.
    async fn admin(&self, path: &str, body: Value) {
        let reply = reqwest::Client::new()
            .post(self.server.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("admin request");
        assert_eq!(reply.status(), 200, "{path}: {:?}", reply.text().await);
    }

    /// The app at `version` checks (staging id `staging`): it must download `expect`, or
    /// find no update when `expect` is `None`.
    async fn check(&self, version: &str, expect: Option<&str>, staging: Option<&str>) -> Value {
        let client = scratch();
        let (_, running) = self
            .builds
            .iter()
            .find(|(v, _)| *v == version)
            .expect("a build of that version");
        let old_file = client.path().join(format!("Sample-App-{version}.AppImage"));
        std::fs::write(&old_file, &running.bytes).expect("write the running app");
        let mut config = serde_json::json!({
            "feedUrl": self.server.url(&format!("/update/linux/x64/{version}")),
            "version": version,
            "workDir": client.path(),
            "oldFile": old_file,
            "differential": false,
        });
        match expect {
            Some(want) => config["expectVersion"] = want.into(),
            None => config["expectNoUpdate"] = true.into(),
        }
        if let Some(id) = staging {
            config["stagingId"] = id.into();
        }
        let run = harness(&["update", &config.to_string()]).await;
        let result = run.json();
        assert!(
            run.success && result["ok"] == true,
            "{version} expecting {expect:?}: {result:#}\nstderr:\n{}",
            run.stderr
        );
        if let Some(want) = expect {
            let name = format!("Sample-App-{want}.AppImage");
            let file = downloaded(&result, client.path(), &name);
            let (_, build) = self.builds.iter().find(|(v, _)| *v == want).expect("build");
            assert!(
                read(&file) == build.bytes,
                "{name} downloaded byte for byte"
            );
        }
        result
    }
}

/// A staging user id in electron-updater's format, inside (or outside) a rollout of 1.2.0
/// at `percentage` as the server buckets it.
fn staging_id(percentage: f64, inside: bool) -> String {
    (0u64..)
        .map(|i| {
            let r = random_bytes(1000 + i, 16);
            let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            )
        })
        .find(|id| release_edge::release::rollout::in_rollout(id, "1.2.0", percentage) == inside)
        .expect("an id")
}

/// electron-updater (the npm package) under the release policy: a halted release is not
/// offered; resumed, it is; yanked, the release before it is offered and downloaded; a
/// staged rollout is decided by the staging id electron-updater sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electron_updater_obeys_halt_resume_yank_and_rollout() {
    require_client();
    let app = PolicyApp::start().await;
    app.check("1.1.0", Some("1.2.0"), None).await;

    app.admin("/admin/channels/latest/halt", Value::Null).await;
    let result = app.check("1.1.0", None, None).await;
    assert_eq!(
        result["version"], "1.1.0",
        "told about 1.1.0, its own: {result:#}"
    );
    // An older app is offered the release before the halted one.
    app.check("1.0.0", Some("1.1.0"), None).await;

    app.admin("/admin/channels/latest/resume", Value::Null)
        .await;
    app.check("1.1.0", Some("1.2.0"), None).await;

    app.admin(
        "/admin/versions/1.2.0/yank",
        serde_json::json!({ "reason": "corrupts settings" }),
    )
    .await;
    app.check("1.0.0", Some("1.1.0"), None).await;
    app.check("1.1.0", None, None).await;
    // On the yanked release itself: no downgrade, no update.
    app.check("1.2.0", None, None).await;

    app.admin("/admin/versions/1.2.0/unyank", Value::Null).await;
    app.admin(
        "/admin/channels/latest/rollout",
        serde_json::json!({ "percentage": 50 }),
    )
    .await;
    app.check("1.1.0", Some("1.2.0"), Some(&staging_id(50.0, true)))
        .await;
    let left_out = app
        .check("1.1.0", None, Some(&staging_id(50.0, false)))
        .await;
    assert_eq!(left_out["version"], "1.1.0", "{left_out:#}");
}
