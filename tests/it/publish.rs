//! `release-edge publish` and `rollback` through the real binary, against the store the
//! server reads: ordering, merging arches, refusals, a publish killed half-way, rollback.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use release_edge::clock::Clock;
use serde_norway::Value;
use sha2::{Digest, Sha512};

use crate::support::{Fixture, channel_yml, get, pattern};

/// An electron-builder output folder.
pub struct Dist {
    dir: tempfile::TempDir,
}

impl Dist {
    /// A folder for `version` with `files` (name, bytes) listed in `channel_file`.
    pub fn new(version: &str, channel_file: &str, files: &[(&str, Vec<u8>)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).expect("write artifact");
        }
        let listed: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let yaml = channel_yml(version, &listed, None);
        std::fs::write(dir.path().join(channel_file), yaml).expect("write channel file");
        std::fs::write(dir.path().join("builder-debug.yml"), "x: 1\n").expect("noise");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The real binary, pointed at the fixture's store: its directory, or its bucket through the
/// standard AWS chain (the S3 server's keys in the environment).
pub fn cli(fx: &Fixture) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_release-edge"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", fx.dir.path())
        .env("RELEASE_EDGE_STORE__ROOT", fx.root())
        .current_dir(fx.dir.path())
        .stdin(Stdio::null());
    for (k, v) in fx.s3.iter().flat_map(|s3| s3.env()) {
        cmd.env(k, v);
    }
    cmd
}

pub fn publish(fx: &Fixture, dist: &Dist, version: &str) -> Output {
    cli(fx)
        .args(["publish", "--version", version])
        .arg(dist.path())
        .output()
        .expect("run publish")
}

pub fn rollback(fx: &Fixture, channel: &str, to: &str) -> Output {
    cli(fx)
        .args(["rollback", "--channel", channel, "--to", to])
        .output()
        .expect("run rollback")
}

pub fn ok(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn failed_with(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
}

/// Every file under `releases/`, with a digest of its bytes (uploads in progress excluded).
fn snapshot(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("releases")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string();
                let digest = Sha512::digest(std::fs::read(&path).expect("read"));
                out.push((
                    rel,
                    base64::engine::general_purpose::STANDARD.encode(digest),
                ));
            }
        }
    }
    out.sort();
    out
}

fn mac(version: &str, arch: &str) -> Vec<(String, Vec<u8>)> {
    let tag = if arch == "x64" {
        String::new()
    } else {
        format!("-{arch}")
    };
    vec![
        (
            format!("App-{version}{tag}-mac.zip"),
            pattern(3000 + version.len() + tag.len()),
        ),
        (format!("App-{version}{tag}.dmg"), pattern(5000 + tag.len())),
    ]
}

fn dist(version: &str, channel_file: &str, files: &[(String, Vec<u8>)]) -> Dist {
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    Dist::new(version, channel_file, &files)
}

async fn served_version(fx: &Fixture, path: &str) -> String {
    let router = fx.router();
    let reply = get(&router, path, &[]).await;
    assert_eq!(reply.status, 200, "{path}");
    let doc: Value = serde_norway::from_slice(&reply.body).expect("yaml");
    doc["version"].as_str().expect("version").to_owned()
}

#[tokio::test]
async fn publish_then_a_second_arch_merges_into_the_version() {
    let fx = Fixture::new();
    let x64 = mac("1.0.0", "x64");
    ok(&publish(
        &fx,
        &dist("1.0.0", "latest-mac.yml", &x64),
        "1.0.0",
    ));
    let router = fx.router();
    for (name, bytes) in &x64 {
        let reply = get(&router, &format!("/releases/v1.0.0/{name}"), &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.as_ref(), bytes.as_slice());
    }
    assert_eq!(
        served_version(&fx, "/update/darwin/x64/0.9.0/latest-mac.yml").await,
        "1.0.0"
    );

    // The arm64 CI job publishes the same version: its files join the x64 ones.
    let arm = mac("1.0.0", "arm64");
    ok(&publish(
        &fx,
        &dist("1.0.0", "latest-mac.yml", &arm),
        "1.0.0",
    ));
    for file in [
        "releases/v1.0.0/latest-mac.yml",
        "releases/latest/latest-mac.yml",
    ] {
        let doc: Value =
            serde_norway::from_slice(&std::fs::read(fx.root().join(file)).expect("read"))
                .expect("yaml");
        let urls: Vec<&str> = doc["files"]
            .as_sequence()
            .expect("files")
            .iter()
            .filter_map(|f| f["url"].as_str())
            .collect();
        assert_eq!(
            urls,
            [
                "App-1.0.0-mac.zip",
                "App-1.0.0.dmg",
                "App-1.0.0-arm64-mac.zip",
                "App-1.0.0-arm64.dmg"
            ],
            "{file}"
        );
    }
    let arm_update = get(
        &fx.router(),
        "/update/darwin/arm64/0.9.0",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(
        arm_update.json()["url"],
        "http://127.0.0.1:8080/releases/v1.0.0/App-1.0.0-arm64-mac.zip"
    );

    // Publishing the same folder again changes nothing.
    let before = snapshot(fx.root());
    let again = publish(&fx, &dist("1.0.0", "latest-mac.yml", &arm), "1.0.0");
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 uploaded, 2 already there"));
    assert_eq!(snapshot(fx.root()), before);
}

#[tokio::test]
async fn refusals_write_nothing() {
    let fx = Fixture::new();
    ok(&publish(
        &fx,
        &dist("1.0.0", "latest-mac.yml", &mac("1.0.0", "x64")),
        "1.0.0",
    ));
    let before = snapshot(fx.root());

    // Same name, other bytes: a published artifact never changes.
    let mut changed = mac("1.0.0", "x64");
    changed[1].1[0] ^= 0xff;
    failed_with(
        &publish(&fx, &dist("1.0.0", "latest-mac.yml", &changed), "1.0.0"),
        "refusing to overwrite",
    );
    // A folder whose file does not match its channel file.
    let bad = dist("1.1.0", "latest-mac.yml", &mac("1.1.0", "x64"));
    std::fs::write(bad.path().join("App-1.1.0.dmg"), b"tampered").expect("tamper");
    failed_with(&publish(&fx, &bad, "1.1.0"), "App-1.1.0.dmg is 8 bytes");
    // The wrong version, or no channel file at all.
    failed_with(
        &publish(
            &fx,
            &dist("1.1.0", "latest-mac.yml", &mac("1.1.0", "x64")),
            "1.2.0",
        ),
        "not 1.2.0",
    );
    failed_with(
        &publish(
            &fx,
            &dist("1.1.0", "beta-mac.yml", &mac("1.1.0", "x64")),
            "1.1.0",
        ),
        "no channel file",
    );
    // An older version would move the channel backwards: that is rollback's job.
    failed_with(
        &publish(
            &fx,
            &dist("0.9.0", "latest-mac.yml", &mac("0.9.0", "x64")),
            "0.9.0",
        ),
        "use `release-edge rollback`",
    );
    assert_eq!(
        snapshot(fx.root()),
        before,
        "nothing was written by a refused publish"
    );
}

#[tokio::test]
async fn a_publish_killed_half_way_leaves_the_served_release_intact() {
    let fx = Fixture::new();
    ok(&publish(
        &fx,
        &dist(
            "1.0.0",
            "latest-linux.yml",
            &[("App-1.0.0.AppImage".into(), pattern(4096))],
        ),
        "1.0.0",
    ));
    let before = snapshot(fx.root());

    let big = dist(
        "1.1.0",
        "latest-linux.yml",
        &[
            ("App-1.1.0.AppImage".into(), pattern(128 << 20)),
            ("App-1.1.0-small.deb".into(), pattern(1000)),
        ],
    );
    let mut child = cli(&fx)
        .args(["publish", "--version", "1.1.0"])
        .arg(big.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn publish");
    // Kill it while the large artifact is being written.
    let uploads = fx.root().join(".release-edge-uploads");
    let start = Instant::now();
    let killed_mid_upload = loop {
        let writing = std::fs::read_dir(&uploads)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20))
            })
            .unwrap_or(false);
        if writing {
            child.kill().expect("kill");
            break true;
        }
        if child.try_wait().expect("try_wait").is_some()
            || start.elapsed() > Duration::from_secs(30)
        {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = child.wait();
    assert!(
        killed_mid_upload,
        "the publish was caught while writing the large artifact"
    );

    // What was served is served, byte for byte. Of 1.1.0 only whole artifacts can exist,
    // which nothing points at yet; the one being written is not there at all.
    let after = snapshot(fx.root());
    let (old, new): (Vec<_>, Vec<_>) = after
        .into_iter()
        .partition(|(k, _)| !k.starts_with("releases/v1.1.0/"));
    assert_eq!(old, before);
    for (key, digest) in &new {
        let name = key.rsplit('/').next().unwrap_or_default();
        let local = Sha512::digest(std::fs::read(big.path().join(name)).expect("dist file"));
        assert_eq!(
            digest,
            &base64::engine::general_purpose::STANDARD.encode(local),
            "{key} is complete"
        );
        assert_ne!(
            name, "App-1.1.0.AppImage",
            "the interrupted artifact is not in place"
        );
    }
    assert_eq!(
        served_version(&fx, "/update/linux/x64/1.0.0/latest-linux.yml").await,
        "1.0.0"
    );
    let router = fx.router();
    assert_eq!(
        get(&router, "/releases/v1.1.0/App-1.1.0.AppImage", &[])
            .await
            .status,
        404
    );
    assert_eq!(
        get(&router, "/releases/v1.0.0/App-1.0.0.AppImage", &[])
            .await
            .body
            .as_ref(),
        pattern(4096).as_slice()
    );

    // Running it again finishes the job.
    ok(&publish(&fx, &big, "1.1.0"));
    assert_eq!(
        served_version(&fx, "/update/linux/x64/1.0.0/latest-linux.yml").await,
        "1.1.0"
    );
}

#[tokio::test]
async fn rollback_serves_an_earlier_version_again() {
    let fx = Fixture::new();
    ok(&publish(
        &fx,
        &dist(
            "1.0.0",
            "latest.yml",
            &[("App Setup 1.0.0.exe".into(), pattern(1000))],
        ),
        "1.0.0",
    ));
    ok(&publish(
        &fx,
        &dist(
            "1.1.0",
            "latest.yml",
            &[("App Setup 1.1.0.exe".into(), pattern(1100))],
        ),
        "1.1.0",
    ));
    let clock = Clock::manual();
    let state = fx.state_on(&clock);
    let router = release_edge::app(state.clone());
    let check = "/update/win32/x64/0.1.0/latest.yml";
    let version = |body: &[u8]| {
        serde_norway::from_slice::<Value>(body).expect("yaml")["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(version(&get(&router, check, &[]).await.body), "1.1.0");

    failed_with(&rollback(&fx, "latest", "9.9.9"), "no channel files");
    failed_with(&rollback(&fx, "beta", "1.0.0"), "no channel files");
    let out = rollback(&fx, "latest", "1.0.0");
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("releases/latest/latest.yml"));
    // After the cache TTLs (the store's object TTL, then the manifest TTL) the rolled-back
    // version is served: the stale copy answers once while it revalidates.
    clock.advance(fx.config.cache.object_ttl + fx.config.cache.manifest_ttl);
    assert_eq!(version(&get(&router, check, &[]).await.body), "1.1.0");
    state.manifests.settled().await;
    let after = get(&router, check, &[]).await;
    assert_eq!(version(&after.body), "1.0.0");
    let doc: Value = serde_norway::from_slice(&after.body).expect("yaml");
    assert_eq!(
        doc["path"],
        "http://127.0.0.1:8080/releases/v1.0.0/App%20Setup%201.0.0.exe"
    );
}
