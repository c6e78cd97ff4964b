//! GitHub Releases as the fallback origin, against the local stand-in of GitHub's API and
//! download hosts: manifests and downloads from GitHub when the store lacks them or is
//! down, the circuit breaker, stale copies when both fail, coalescing, `If-None-Match`
//! revalidation, rate-limit back-off, and private downloads that never leak the token.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use release_edge::AppState;
use release_edge::clock::Clock;
use release_edge::config::{Config, FallbackReason, GithubConfig, Secrets, StoreConfig, StoreKind};
use secrecy::SecretString;
use serde_norway::Value;
use sha2::{Digest, Sha512};
use tokio::io::AsyncReadExt;

use crate::github_standin::{GitHubStandIn, Host, ReleaseSpec};
use crate::support::{BinaryServer, Fixture, Reply, TestServer, channel_yml, get, pattern};

const MAC_ZIP: &str = "App-1.2.0-mac.zip";
const LIST: &str = "/repos/acme/app/releases";
const MAC_FEED: &str = "/update/darwin/arm64/1.0.0/latest-mac.yml";
const WIN_FEED: &str = "/update/win32/x64/1.0.0/RELEASES";
const JSON: (&str, &str) = ("accept", "application/json");

/// What the stand-in's repository holds: a stable 1.2.0 for macOS and Windows (channel
/// files, Squirrel `RELEASES`, a minisign signature), a 1.3.0-beta.1 pre-release and a
/// 2.0.0 draft that must never be served.
fn publish_releases(gh: &GitHubStandIn) -> Vec<u8> {
    let zip = pattern(300_000);
    let dmg = pattern(40_000);
    let nupkg = pattern(5_000);
    gh.add_release(
        ReleaseSpec::new("v1.2.0")
            .asset(
                "latest-mac.yml",
                channel_yml("1.2.0", &[(MAC_ZIP, &zip), ("App-1.2.0.dmg", &dmg)], None),
            )
            .asset(MAC_ZIP, zip.clone())
            .asset("App-1.2.0.dmg", dmg)
            .asset(&format!("{MAC_ZIP}.sig"), "untrusted comment: sig\nRWQ=\n")
            .asset(
                "RELEASES",
                format!(
                    "ABCDEF0123456789ABCDEF0123456789ABCDEF01 App-1.2.0-full.nupkg {}\n",
                    nupkg.len()
                ),
            )
            .asset("App-1.2.0-full.nupkg", nupkg),
    );
    let beta = pattern(1_000);
    gh.add_release(
        ReleaseSpec::new("v1.3.0-beta.1")
            .prerelease()
            .asset(
                "beta-mac.yml",
                channel_yml("1.3.0-beta.1", &[("App-1.3.0-beta.1-mac.zip", &beta)], None),
            )
            .asset("App-1.3.0-beta.1-mac.zip", beta),
    );
    let draft = pattern(500);
    gh.add_release(
        ReleaseSpec::new("v2.0.0")
            .draft()
            .asset(
                "latest-mac.yml",
                channel_yml("2.0.0", &[("App-2.0.0-mac.zip", &draft)], None),
            )
            .asset("App-2.0.0-mac.zip", draft),
    );
    zip
}

fn github_config(gh: &GitHubStandIn) -> GithubConfig {
    GithubConfig {
        owner: GitHubStandIn::OWNER.into(),
        repo: GitHubStandIn::REPO.into(),
        api_url: gh.api_url(),
        private: None,
        fallback_on: FallbackReason::ALL.to_vec(),
        timeout: Duration::from_secs(5),
        refresh_interval: Duration::from_secs(60),
    }
}

/// An empty filesystem store with GitHub as its fallback.
fn empty_store_with(gh: &GitHubStandIn) -> Fixture {
    let mut fx = Fixture::new();
    fx.config.github = Some(github_config(gh));
    fx
}

fn yaml(reply: &Reply) -> Value {
    reply.yaml()
}

fn counter(state: &AppState, metric: &str, labels: &[&str]) -> u64 {
    let m = &state.metrics;
    match metric {
        "fallback" => m.fallback.with_label_values(labels).get(),
        "origin" => m.origin_requests.with_label_values(labels).get(),
        "lookup" => m.cache_lookups.with_label_values(labels).get(),
        other => panic!("no metric {other}"),
    }
}

/// A TCP server that accepts connections, counts the HTTP requests written to it and never
/// answers: a store that hangs. The S3 store pointed at it times out.
struct BlackHole {
    endpoint: String,
    requests: tokio::sync::watch::Sender<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = tokio::sync::watch::Sender::new(0);
        let counted = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let heads = text
                            .lines()
                            .filter(|l| l.ends_with("HTTP/1.1") && !l.starts_with(' '))
                            .count();
                        counted.send_modify(|n| *n += heads);
                    }
                });
            }
        });
        Self {
            endpoint,
            requests,
            task,
        }
    }

    fn requests(&self) -> usize {
        *self.requests.borrow()
    }

    /// Waits (at most 10 s) until `n` requests have arrived.
    async fn arrived(&self, n: usize) {
        let mut seen = self.requests.subscribe();
        tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|count| *count >= n))
            .await
            .expect("the store request within 10 s")
            .expect("the black hole runs");
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server on 127.0.0.1 with `store`, and GitHub as its fallback.
fn config_with(gh: &GitHubStandIn, store: StoreConfig) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        store,
        github: Some(github_config(gh)),
        ..Config::default()
    }
}

/// A bucket on a store that never answers, with GitHub as fallback.
fn hanging_store_with(gh: &GitHubStandIn, hole: &BlackHole) -> (Config, Secrets) {
    let store = StoreConfig {
        kind: StoreKind::S3,
        bucket: Some("releases".into()),
        endpoint: Some(hole.endpoint.clone()),
        force_path_style: true,
        max_attempts: 1,
        timeout: Duration::from_millis(300),
        circuit_failures: 3,
        circuit_open_for: Duration::from_millis(1500),
        ..StoreConfig::default()
    };
    let config = config_with(gh, store);
    let secrets = Secrets {
        s3_credentials: Some(aws_sdk_s3::config::Credentials::new(
            "hole", "hole", None, None, "test",
        )),
        ..Secrets::default()
    };
    (config, secrets)
}

fn state_of(config: Config, secrets: Secrets, clock: &Clock) -> (AppState, axum::Router) {
    let state = release_edge::App::build_with_clock(config, secrets, clock.clone()).expect("state");
    (state.clone(), release_edge::app(state))
}

#[tokio::test]
async fn a_manifest_the_store_lacks_is_served_from_github() {
    let gh = GitHubStandIn::start().await;
    let zip = publish_releases(&gh);
    let fx = empty_store_with(&gh);
    let public = fx.config.public_url.clone();
    let state = fx.state();
    let router = release_edge::app(state.clone());

    // electron-updater's feed: the release's own channel file, URLs made absolute.
    let feed = yaml(&get(&router, MAC_FEED, &[]).await);
    assert_eq!(feed["version"], "1.2.0", "the draft 2.0.0 is never served");
    assert_eq!(
        feed["files"][0]["url"],
        format!("{public}/releases/v1.2.0/{MAC_ZIP}")
    );
    assert_eq!(feed["files"][0]["size"], 300_000);
    let sha = base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&zip));
    assert_eq!(feed["files"][0]["sha512"], sha.as_str());

    // The pre-release feeds the channel named by its semver tag.
    let beta = yaml(&get(&router, "/update/darwin/arm64/1.0.0/beta-mac.yml", &[]).await);
    assert_eq!(beta["version"], "1.3.0-beta.1");

    // Squirrel.Mac / Tauri JSON, with the signature asset.
    let json = get(&router, "/update/darwin/x64/1.0.0", &[JSON]).await;
    assert_eq!(json.status, 200);
    let body = json.json();
    assert_eq!(body["version"], "1.2.0");
    assert_eq!(body["url"], format!("{public}/releases/v1.2.0/{MAC_ZIP}"));
    assert_eq!(body["signature"], "untrusted comment: sig\nRWQ=");

    // Squirrel.Windows.
    let releases = get(&router, WIN_FEED, &[]).await;
    assert_eq!(releases.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&releases.body),
        format!(
            "ABCDEF0123456789ABCDEF0123456789ABCDEF01 {public}/releases/v1.2.0/App-1.2.0-full.nupkg 5000\n"
        )
    );

    // The artifact: a redirect to GitHub's public download URL, whose bytes are the file.
    let download = get(&router, &format!("/releases/v1.2.0/{MAC_ZIP}"), &[]).await;
    assert_eq!(download.status, 302);
    let location = download.header("location").to_owned();
    assert_eq!(
        location,
        format!(
            "{}/acme/app/releases/download/v1.2.0/{MAC_ZIP}",
            gh.web_url()
        )
    );
    let bytes = reqwest::get(&location)
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert!(
        bytes[..] == zip[..],
        "the redirect leads to the exact bytes"
    );
    let downloads = |labels: [&str; 4]| state.metrics.downloads.with_label_values(&labels).get();
    assert_eq!(
        downloads(["latest", "1.2.0", "darwin", "x64"]),
        1,
        "counted at the redirect"
    );
    let latest = get(&router, "/latest/mac", &[]).await;
    assert_eq!(latest.status, 302);
    assert_eq!(
        latest.header("location"),
        format!("{public}/releases/v1.2.0/App-1.2.0.dmg")
    );

    // One listing served all of it; each manifest asset was downloaded once.
    assert_eq!(gh.hits_on(Host::Api, LIST).len(), 1);
    assert_eq!(
        gh.hits_on(
            Host::Web,
            "/acme/app/releases/download/v1.2.0/latest-mac.yml"
        )
        .len(),
        1
    );
    assert!(counter(&state, "fallback", &["missing"]) >= 5);
    // One listing and four manifest assets (two channel files, a signature, RELEASES).
    assert_eq!(counter(&state, "origin", &["github", "ok"]), 5);

    // A channel with no release of its own follows the stable releases.
    let nightly = yaml(&get(&router, "/update/darwin/arm64/1.0.0/nightly-mac.yml", &[]).await);
    assert_eq!(nightly["version"], "1.2.0");
    // A file GitHub does not have either is a 404 that says so, not an error.
    let missing = get(&router, "/update/linux/x64/1.0.0/latest-linux.yml", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no_release");
}

#[tokio::test]
async fn the_store_answers_first_and_fallback_reasons_are_configurable() {
    let gh = GitHubStandIn::start().await;
    publish_releases(&gh);
    // The store has its own 1.1.0: it wins, GitHub is not asked.
    let fx = empty_store_with(&gh);
    let files = [("App-1.1.0-mac.zip", &b"zip"[..])];
    fx.write(
        "releases/latest/latest-mac.yml",
        channel_yml("1.1.0", &files, None),
    );
    fx.write("releases/v1.1.0/App-1.1.0-mac.zip", "zip");
    let router = fx.router();
    assert_eq!(yaml(&get(&router, MAC_FEED, &[]).await)["version"], "1.1.0");
    let object = get(&router, "/releases/v1.1.0/App-1.1.0-mac.zip", &[]).await;
    assert_eq!(
        (object.status.as_u16(), &object.body[..]),
        (200, &b"zip"[..])
    );
    assert!(gh.hits().is_empty(), "{:?}", gh.hits());

    // Without `missing` among the reasons, a missing object stays a 404.
    let mut fx = empty_store_with(&gh);
    if let Some(github) = fx.config.github.as_mut() {
        github.fallback_on = vec![FallbackReason::Error, FallbackReason::Timeout];
    }
    let router = fx.router();
    assert_eq!(get(&router, MAC_FEED, &[]).await.status, 404);
    assert_eq!(
        get(&router, &format!("/releases/v1.2.0/{MAC_ZIP}"), &[])
            .await
            .status,
        404
    );
    assert!(gh.hits().is_empty(), "{:?}", gh.hits());
}

#[tokio::test]
async fn a_store_that_is_down_falls_back_and_the_circuit_opens() {
    let gh = GitHubStandIn::start().await;
    publish_releases(&gh);
    let hole = BlackHole::start().await;
    let (config, secrets) = hanging_store_with(&gh, &hole);
    let open_for = config.store.circuit_open_for;
    let clock = Clock::manual();
    let (state, router) = state_of(config, secrets, &clock);
    let path = format!("/releases/v1.2.0/{MAC_ZIP}");

    // Three timeouts (the threshold), each answered from GitHub...
    for i in 1..=3 {
        let reply = get(&router, &path, &[]).await;
        assert_eq!(reply.status, 302, "request {i}");
        hole.arrived(i).await;
    }
    assert_eq!(counter(&state, "fallback", &["timeout"]), 3);
    assert_eq!(counter(&state, "origin", &["store", "timeout"]), 3);

    // ...then the circuit is open: the store is not asked, nobody waits for its timeout.
    for _ in 0..20 {
        let reply = get(&router, &path, &[]).await;
        assert_eq!(reply.status, 302);
        let feed = yaml(&get(&router, MAC_FEED, &[]).await);
        assert_eq!(feed["version"], "1.2.0");
    }
    assert_eq!(
        hole.requests(),
        3,
        "no store request while the circuit is open"
    );
    assert!(counter(&state, "fallback", &["circuit_open"]) >= 20);
    let ready = get(&router, "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "GitHub can answer");
    assert_eq!(ready.json()["store_circuit_open"], true);

    // After `circuit_open_for`, one request probes the store again (and times out).
    clock.advance(open_for);
    let reply = get(&router, &path, &[]).await;
    assert_eq!(reply.status, 302);
    hole.arrived(4).await;
    assert_eq!(get(&router, &path, &[]).await.status, 302);
    assert_eq!(hole.requests(), 4, "open again after the failed probe");

    // Neither origin answers: not ready.
    gh.set_api_down(true);
    let (config, secrets) = hanging_store_with(&gh, &hole);
    let (_, cold) = state_of(config, secrets, &Clock::manual());
    let not_ready = get(&cold, "/readyz", &[]).await;
    assert_eq!(not_ready.status, 503);
    assert_eq!(not_ready.json()["error"], "not_ready");
}

#[tokio::test]
async fn both_origins_down_after_a_warm_cache_answer_every_check_from_stale_copies() {
    let gh = GitHubStandIn::start().await;
    publish_releases(&gh);
    let hole = BlackHole::start().await;
    let (config, secrets) = hanging_store_with(&gh, &hole);
    let clock = Clock::manual();
    let (state, router) = state_of(config, secrets, &clock);
    let checks: [(&str, &[(&str, &str)]); 3] = [
        (MAC_FEED, &[]),
        ("/update/darwin/x64/1.0.0", &[JSON]),
        (WIN_FEED, &[]),
    ];
    let mut warm = Vec::new();
    for (path, headers) in checks {
        let reply = get(&router, path, headers).await;
        assert_eq!(reply.status, 200, "{path}");
        warm.push(reply.body);
    }

    gh.set_api_down(true);
    let api_before = gh.hits_on(Host::Api, LIST).len();
    // Past the manifest TTL and GitHub's refresh interval.
    clock.advance(Duration::from_secs(120));
    let mut tasks = Vec::new();
    for i in 0..300 {
        let router = router.clone();
        let (path, headers) = checks[i % 3];
        tasks.push(tokio::spawn(async move {
            (i % 3, get(&router, path, headers).await)
        }));
    }
    for task in tasks {
        let (which, reply) = task.await.expect("task");
        assert_eq!(reply.status, 200, "every update check is answered");
        assert_eq!(reply.body, warm[which], "with the last good copy");
    }
    assert!(counter(&state, "lookup", &["manifest", "stale"]) >= 3);
    let api_calls = gh.hits_on(Host::Api, LIST).len() - api_before;
    assert_eq!(
        api_calls, 1,
        "a failing GitHub is asked again after a pause, not per request"
    );
}

#[tokio::test]
async fn two_hundred_concurrent_cold_checks_make_one_api_call() {
    let gh = GitHubStandIn::start().await;
    publish_releases(&gh);
    let fx = empty_store_with(&gh);
    let router = fx.router();
    // Hold GitHub so that all 200 checks are waiting on the same cold miss.
    gh.hold_api();
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let router = router.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("/update/darwin/arm64/1.0.{i}/latest-mac.yml");
            // Counted in the same poll that enters the check: once all 200 are counted,
            // all 200 are waiting inside it (the test runtime has one thread).
            started.fetch_add(1, Ordering::SeqCst);
            yaml(&get(&router, &path, &[]).await)["version"].clone()
        }));
    }
    while started.load(Ordering::SeqCst) < 200 {
        tokio::task::yield_now().await;
    }
    gh.release_api();
    for task in tasks {
        assert_eq!(task.await.expect("task"), "1.2.0");
    }
    assert_eq!(gh.hits_on(Host::Api, "/").len(), 1, "{:?}", gh.hits());
    assert_eq!(
        gh.hits_on(Host::Storage, "/").len(),
        1,
        "the manifest asset, once"
    );
}

#[tokio::test]
async fn a_cold_failing_github_is_asked_once_not_once_per_manifest() {
    let gh = GitHubStandIn::start().await;
    publish_releases(&gh);
    gh.set_api_down(true);
    let fx = empty_store_with(&gh);
    let router = fx.router();
    // Different manifests: separate cache misses, all needing the list of releases.
    let paths = [
        MAC_FEED,
        "/update/win32/x64/1.0.0/latest.yml",
        WIN_FEED,
        "/update/linux/x64/1.0.0/latest-linux.yml",
    ];
    let mut tasks = Vec::new();
    for path in paths {
        let router = router.clone();
        tasks.push(tokio::spawn(async move { get(&router, path, &[]).await }));
    }
    for task in tasks {
        let reply = task.await.expect("task");
        assert_eq!(
            reply.status, 503,
            "nothing to serve yet: an error, not a 404"
        );
        assert_eq!(
            reply.json()["error"],
            "github_unavailable",
            "the store answered (not there): GitHub is the origin that failed"
        );
    }
    assert_eq!(gh.hits_on(Host::Api, LIST).len(), 1, "{:?}", gh.hits());
    // Within the retry gap, later checks get the failure without a request either.
    assert_eq!(get(&router, MAC_FEED, &[]).await.status, 503);
    assert_eq!(gh.hits_on(Host::Api, LIST).len(), 1);
}

#[tokio::test]
async fn revalidation_answered_304_costs_no_rate_limit_and_runs_behind_the_answer() {
    let gh = GitHubStandIn::start().await;
    publish_releases(&gh);
    let fx = empty_store_with(&gh);
    // Past both the manifest TTL and GitHub's refresh interval (60 s each here).
    let past_ttl = Duration::from_secs(61);
    let clock = Clock::manual();
    let state = fx.state_on(&clock);
    let router = release_edge::app(state.clone());
    assert_eq!(yaml(&get(&router, MAC_FEED, &[]).await)["version"], "1.2.0");
    let first = gh.hits_on(Host::Api, LIST);
    assert_eq!((first.len(), first[0].status), (1, 200));

    // The first revalidation is a 200: downloading latest-mac.yml raised its
    // `download_count`, so the list (and its ETag) changed, as on GitHub.
    clock.advance(past_ttl);
    get(&router, MAC_FEED, &[]).await;
    state.manifests.settled().await;
    let list = gh.hits_on(Host::Api, LIST);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[1].status, 200);
    assert!(list[1].if_none_match.is_some(), "{:?}", list[1]);
    let remaining = gh.rate_remaining();

    // Past the TTL, the check is answered at once while GitHub is held: the revalidation
    // runs behind it, and GitHub's 304 costs no rate limit.
    clock.advance(past_ttl);
    gh.hold_api();
    for _ in 0..20 {
        let reply = tokio::time::timeout(Duration::from_secs(5), get(&router, MAC_FEED, &[]))
            .await
            .expect("a slow GitHub does not hold up a warm update check");
        assert_eq!(yaml(&reply)["version"], "1.2.0");
    }
    gh.release_api();
    state.manifests.settled().await;
    let list = gh.hits_on(Host::Api, LIST);
    assert_eq!(list.len(), 3, "one revalidation for 20 checks: {list:?}");
    assert_eq!(list[2].status, 304);
    assert!(
        list[2]
            .if_none_match
            .as_deref()
            .is_some_and(|etag| etag.starts_with("W/\""))
    );
    assert_eq!(gh.rate_remaining(), remaining, "a 304 does not count");
    assert_eq!(
        gh.hits_on(Host::Storage, "/").len(),
        1,
        "an unchanged asset is not fetched again"
    );

    // A new upload changes the listing: the next revalidation picks it up.
    let zip = pattern(1234);
    gh.replace_asset(
        "v1.2.0",
        "latest-mac.yml",
        channel_yml("1.2.1", &[("App-1.2.1-mac.zip", &zip)], None),
    );
    clock.advance(past_ttl);
    assert_eq!(yaml(&get(&router, MAC_FEED, &[]).await)["version"], "1.2.0");
    state.manifests.settled().await;
    assert_eq!(yaml(&get(&router, MAC_FEED, &[]).await)["version"], "1.2.1");
}

#[tokio::test]
async fn rate_limits_are_honoured_with_back_off() {
    for (name, limit) in [("primary", true), ("secondary", false)] {
        let gh = GitHubStandIn::start().await;
        publish_releases(&gh);
        let fx = empty_store_with(&gh);
        let clock = Clock::manual();
        let state = fx.state_on(&clock);
        let router = release_edge::app(state.clone());
        let warm = get(&router, MAC_FEED, &[]).await;
        assert_eq!(warm.status, 200);
        if limit {
            gh.set_rate_limit(0, 600);
        } else {
            gh.set_retry_after(Some(600));
        }
        // Five minutes of checks, each past the TTL and revalidating behind its answer:
        // within GitHub's ten-minute back-off, no request but the one refused.
        for _ in 0..5 {
            clock.advance(Duration::from_secs(61));
            let reply = get(&router, MAC_FEED, &[]).await;
            assert_eq!(reply.body, warm.body, "{name}: the last good copy");
            state.manifests.settled().await;
        }
        let list = gh.hits_on(Host::Api, LIST);
        let statuses: Vec<u16> = list.iter().map(|h| h.status).collect();
        let refused = if limit { 403 } else { 429 };
        assert_eq!(
            statuses,
            [200, refused],
            "{name}: one refusal, then no request until the reset"
        );
        assert_eq!(
            counter(&state, "origin", &["github", "rate_limited"]),
            1,
            "{name}"
        );
        // After the reset, GitHub is asked again.
        gh.set_rate_limit(5000, 3600);
        gh.set_retry_after(None);
        clock.advance(Duration::from_secs(600));
        get(&router, MAC_FEED, &[]).await;
        state.manifests.settled().await;
        let statuses: Vec<u16> = gh
            .hits_on(Host::Api, LIST)
            .iter()
            .map(|h| h.status)
            .collect();
        assert_eq!(statuses.len(), 3, "{name}: {statuses:?}");
        assert!(matches!(statuses[2], 200 | 304), "{name}: {statuses:?}");
    }
}

#[tokio::test]
async fn a_private_download_is_byte_exact_with_ranges_and_never_leaks_the_token() {
    let gh = GitHubStandIn::start().await;
    let zip = publish_releases(&gh);
    // A Tauri release as tauri-action publishes it: absolute github.com URLs.
    let tarball = pattern(7_777);
    let tarball_url = format!(
        "{}/acme/app/releases/download/v1.2.1/App.app.tar.gz",
        gh.web_url()
    );
    let tauri = serde_json::json!({
        "version": "1.2.1",
        "notes": "Tauri build",
        "pub_date": "2026-11-02T12:00:00Z",
        "platforms": {
            "darwin-x86_64": { "signature": "c2lnbmF0dXJl", "url": tarball_url },
        },
    });
    gh.add_release(
        ReleaseSpec::new("v1.2.1")
            .asset("latest.json", tauri.to_string())
            .asset("App.app.tar.gz", tarball.clone()),
    );
    gh.set_private(true);
    let mut fx = empty_store_with(&gh);
    let public = crate::support::on_free_port(&mut fx.config);
    let secrets = Secrets {
        github_token: Some(SecretString::from(GitHubStandIn::TOKEN)),
        ..Secrets::default()
    };
    let server = TestServer::start_with(fx.config.clone(), secrets).await;
    let client = reqwest::Client::new();
    let url = server.url(&format!("/releases/v1.2.0/{MAC_ZIP}"));

    let whole = client.get(&url).send().await.expect("get");
    assert_eq!(whole.status(), 200, "streamed through, not redirected");
    assert_eq!(whole.headers()["content-length"], "300000");
    let etag = whole.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(whole.bytes().await.expect("body")[..], zip[..]);

    let part = client
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 1000-1999/300000");
    assert_eq!(part.bytes().await.expect("body")[..], zip[1000..2000]);

    let tail = client
        .get(&url)
        .header("range", "bytes=-10")
        .header("if-range", &etag)
        .send()
        .await
        .expect("suffix");
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.expect("body")[..], zip[299_990..]);

    let multi = client
        .get(&url)
        .header("range", "bytes=0-9,200000-200009")
        .send()
        .await
        .expect("multi");
    assert_eq!(multi.status(), 206);
    let ctype = multi.headers()["content-type"]
        .to_str()
        .expect("ct")
        .to_owned();
    assert!(
        ctype.starts_with("multipart/byteranges; boundary="),
        "{ctype}"
    );
    let body = multi.bytes().await.expect("body");
    for (start, end) in [(0usize, 9usize), (200_000, 200_009)] {
        let header = format!("Content-Range: bytes {start}-{end}/300000\r\n\r\n");
        let at = find(&body, header.as_bytes()).expect("part") + header.len();
        assert_eq!(body[at..=at + end - start], zip[start..=end]);
    }

    // The feed of a private repository works too (its manifest fetched with the token).
    let feed = client.get(server.url(MAC_FEED)).send().await.expect("feed");
    assert_eq!(feed.status(), 200);

    // The token went to the API on every request, and never to the storage host.
    let api = gh.hits_on(Host::Api, "/");
    assert!(!api.is_empty());
    for hit in &api {
        assert_eq!(
            hit.authorization.as_deref(),
            Some(&*format!("Bearer {}", GitHubStandIn::TOKEN)),
            "{hit:?}"
        );
    }
    let storage = gh.hits_on(Host::Storage, "/");
    assert!(storage.len() >= 5, "{storage:?}");
    for hit in &storage {
        assert_eq!(hit.authorization, None, "{hit:?}");
        assert!(hit.status == 200 || hit.status == 206, "{hit:?}");
    }
    assert!(
        gh.hits_on(Host::Web, "/").is_empty(),
        "private assets are not on the public host"
    );
    // The signed storage URL is reused across the ranges of one download.
    let zip_asset_calls = api
        .iter()
        .filter(|h| h.path.contains("/releases/assets/"))
        .count();
    assert_eq!(
        zip_asset_calls, 2,
        "one redirect for the zip, one for the manifest: {api:?}"
    );

    // The Tauri manifest's github.com URL, which a client without the token cannot fetch,
    // becomes a URL through release-edge, which streams the archive.
    let check = client
        .get(server.url("/update/darwin/x64/1.0.0"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("tauri check");
    assert_eq!(check.status(), 200);
    let answer: serde_json::Value = check.json().await.expect("json");
    let through_us = format!("{public}/releases/v1.2.1/App.app.tar.gz");
    assert_eq!(answer["url"], through_us.as_str());
    assert_eq!(answer["signature"], "c2lnbmF0dXJl");
    let archive = client.get(&through_us).send().await.expect("archive");
    assert_eq!(archive.status(), 200);
    assert_eq!(archive.bytes().await.expect("body")[..], tarball[..]);
    for hit in gh.hits_on(Host::Storage, "/") {
        assert_eq!(hit.authorization, None, "{hit:?}");
    }
}

#[tokio::test]
async fn github_alone_serves_without_any_store() {
    let gh = GitHubStandIn::start().await;
    let zip = publish_releases(&gh);
    let store = StoreConfig {
        kind: StoreKind::None,
        ..StoreConfig::default()
    };
    let config = config_with(&gh, store);
    let (state, router) = state_of(config, Secrets::default(), &Clock::system());
    assert_eq!(yaml(&get(&router, MAC_FEED, &[]).await)["version"], "1.2.0");
    let download = get(&router, &format!("/releases/v1.2.0/{MAC_ZIP}"), &[]).await;
    assert_eq!(download.status, 302);
    let bytes = reqwest::get(download.header("location"))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(bytes.len(), zip.len());
    let ready = get(&router, "/readyz", &[]).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["origin"], "github");
    assert_eq!(
        counter(&state, "fallback", &["missing"]),
        0,
        "GitHub is the origin, not a fallback"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_a_private_repository_alone_from_environment_variables() {
    let gh = GitHubStandIn::start().await;
    let zip = publish_releases(&gh);
    gh.set_private(true);
    let dir = crate::support::scratch();
    let api = gh.api_url();
    let server = BinaryServer::spawn(
        dir.path(),
        &[
            ("RELEASE_EDGE_STORE__KIND", "none"),
            ("RELEASE_EDGE_GITHUB__OWNER", GitHubStandIn::OWNER),
            ("RELEASE_EDGE_GITHUB__REPO", GitHubStandIn::REPO),
            ("RELEASE_EDGE_GITHUB__API_URL", &api),
            ("GITHUB_TOKEN", GitHubStandIn::TOKEN),
        ],
    );
    let feed = reqwest::get(server.url(MAC_FEED)).await.expect("feed");
    assert_eq!(feed.status(), 200);
    let doc: Value = serde_norway::from_slice(&feed.bytes().await.expect("body")).expect("yaml");
    assert_eq!(doc["version"], "1.2.0");
    let download = reqwest::get(server.url(&format!("/releases/v1.2.0/{MAC_ZIP}")))
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.expect("body")[..], zip[..]);
    for hit in gh.hits_on(Host::Storage, "/") {
        assert_eq!(hit.authorization, None, "{hit:?}");
    }
}
