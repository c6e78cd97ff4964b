//! Real clients: curl resuming with -C -, aria2c downloading in 8 segments, and curl on a
//! percent-encoded URL written the way electron-updater writes it.
//!
//! The programs are required, never skipped: `.ci/run` installs them.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use release_edge::AppState;

use crate::support::{Fixture, TestServer, pattern, read, require_program, scratch};

const ROUTE: &str = "/releases/{*path}";
const MIB: usize = 1024 * 1024;

/// Runs `cmd` to completion without blocking the server's runtime; kills it after `limit`.
pub(crate) async fn run(cmd: Command, limit: Duration) -> Output {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn client");
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("client still running after {limit:?}"))
        .expect("wait for client")
}

pub(crate) fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `GET /releases/*` requests answered with `status`.
fn answered(state: &AppState, status: &str) -> u64 {
    state
        .metrics
        .http_requests
        .with_label_values(&[ROUTE, "GET", status])
        .get()
}

pub(crate) fn file_len(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| m.len() as usize)
}

/// A rate-limited `curl` of `url` into `out`, killed once 256 KiB of it are written (a
/// download cut off part-way, for a resume to finish).
pub(crate) async fn interrupted_curl(out: &Path, url: &str) {
    let mut first = tokio::process::Command::new("curl");
    first
        .args(["-sS", "-g", "--fail", "--limit-rate", "200K", "-o"])
        .arg(out)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut first = first.spawn().expect("spawn curl");
    let start = Instant::now();
    while file_len(out) < 256 * 1024 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "curl wrote {} bytes in 10 s",
            file_len(out)
        );
        assert!(
            first.try_wait().expect("try_wait").is_none(),
            "curl ended before it was interrupted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().await.expect("kill curl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_resumes_a_partial_download_with_a_range() {
    require_program("curl");
    const KEY: &str = "releases/v3.1.0/App-3.1.0.AppImage";
    const URL: &str = "/releases/v3.1.0/App-3.1.0.AppImage";
    const LEN: usize = 8 * MIB;
    let data = pattern(LEN);
    let fx = Fixture::new().file(KEY, &data);
    let server = TestServer::start(fx.config.clone()).await;
    let dir = scratch();
    let out = dir.path().join("App-3.1.0.AppImage");

    // A first, rate-limited attempt, killed once part of the file is written.
    interrupted_curl(&out, &server.url(URL)).await;
    let partial = read(&out);
    assert!(
        !partial.is_empty() && partial.len() < LEN,
        "partial file has {} of {LEN} bytes",
        partial.len()
    );
    assert!(partial == data[..partial.len()], "partial file differs");
    assert_eq!(answered(&server.state, "206"), 0);

    // Resume: curl asks for the rest with `Range: bytes=N-`.
    let mut resume = Command::new("curl");
    resume
        .args(["-sS", "-g", "--fail", "-C", "-", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code} %{size_download}"])
        .arg(server.url(URL));
    let output = run(resume, Duration::from_secs(30)).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("206 {}", LEN - partial.len()),
        "resume was not a 206 for the missing bytes"
    );
    assert!(read(&out) == data, "resumed file differs");
    assert_eq!(answered(&server.state, "206"), 1);
}

/// aria2c downloading `url` into `dir/name` over eight connections, in 1 MiB pieces.
pub(crate) fn aria2c(dir: &Path, name: &str, url: &str) -> Command {
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--no-conf",
        "-x",
        "8",
        "-s",
        "8",
        "-k",
        "1M",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--file-allocation=none",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--stop=60",
        "-d",
    ])
    .arg(dir)
    .args(["-o", name])
    .arg(url);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2c_downloads_in_eight_segments() {
    require_program("aria2c");
    const KEY: &str = "releases/v3.1.0/App Setup 3.1.0.exe";
    const URL: &str = "/releases/v3.1.0/App%20Setup%203.1.0.exe";
    const NAME: &str = "App Setup 3.1.0.exe";
    const LEN: usize = 20 * MIB + 12_345;
    let data = pattern(LEN);
    let fx = Fixture::new().file(KEY, &data);
    let server = TestServer::start(fx.config.clone()).await;
    let dir = scratch();

    let cmd = aria2c(dir.path(), NAME, &server.url(URL));
    let output = run(cmd, Duration::from_secs(60)).await;
    assert!(output.status.success(), "{}", describe(&output));
    let got = read(dir.path().join(NAME));
    assert_eq!(got.len(), LEN);
    assert!(got == data, "aria2c's file differs");
    let partial = answered(&server.state, "206");
    assert!(
        partial > 1,
        "aria2c made {partial} range requests; expected several segments"
    );
    assert_eq!(server.state.metrics.inflight_downloads.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_on_a_percent_encoded_non_ascii_name() {
    require_program("curl");
    const KEY: &str = "releases/v2.0.0/Ünïcödé Setup 2.0.0 (x64)+beta.exe";
    // What electron-updater sends: `new URL(name, base)` percent-encodes spaces and
    // non-ASCII as UTF-8, and leaves `(`, `)` and `+` alone.
    const URL: &str =
        "/releases/v2.0.0/%C3%9Cn%C3%AFc%C3%B6d%C3%A9%20Setup%202.0.0%20(x64)+beta.exe";
    const LEN: usize = 300_000;
    let data = pattern(LEN);
    let fx = Fixture::new().file(KEY, &data);
    let server = TestServer::start(fx.config.clone()).await;
    let dir = scratch();

    let whole = dir.path().join("whole.exe");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-g", "--fail", "-o"])
        .arg(&whole)
        .args(["-w", "%{http_code}"])
        .arg(server.url(URL));
    let output = run(cmd, Duration::from_secs(30)).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200");
    assert!(read(&whole) == data, "downloaded bytes differ");

    let part = dir.path().join("part.bin");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-g", "--fail", "-r", "70000-199999", "-o"])
        .arg(&part)
        .args(["-w", "%{http_code}"])
        .arg(server.url(URL));
    let output = run(cmd, Duration::from_secs(30)).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "206");
    assert!(read(&part) == data[70_000..200_000], "range bytes differ");
}
