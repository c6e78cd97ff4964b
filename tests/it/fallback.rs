//! SPEC §3 over the whole matrix: GitHub failing in every way it can (a 5xx, hanging past
//! its timeout, the primary and the secondary rate limit, never reached since start) times
//! every protocol (YAML for every channel file, JSON for macOS, Linux and Windows and an
//! up-to-date client, RELEASES, `/latest`, `/releases/*`), with the store healthy, lacking
//! the object, failing, and after a warm cache.
//!
//! The rule each cell checks: what the store answers is answered exactly as if GitHub were
//! not configured; what only GitHub could have fails naming GitHub; what the store fails to
//! answer fails naming the store; and a warm cache answers as before.

use std::time::Duration;

use release_edge::clock::Clock;
use release_edge::config::{FallbackReason, GithubConfig, StoreConfig, StoreKind};

use crate::github_standin::GitHubStandIn;
use crate::support::{BinaryServer, Fixture, Reply, get};

/// How GitHub fails.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The API answers 503.
    ServerError,
    /// The API never answers (longer than `github.timeout`).
    Hanging,
    /// The primary rate limit is spent (403, `x-ratelimit-remaining: 0`).
    PrimaryLimit,
    /// The secondary rate limit (429 with `Retry-After`).
    SecondaryLimit,
    /// Nothing listens where the API should be.
    NeverReached,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::ServerError,
        Fault::Hanging,
        Fault::PrimaryLimit,
        Fault::SecondaryLimit,
        Fault::NeverReached,
    ];

    /// What a client gets when only GitHub could have answered.
    fn answer(self) -> (u16, &'static str) {
        match self {
            Fault::ServerError | Fault::NeverReached => (503, "github_unavailable"),
            Fault::Hanging => (504, "github_timeout"),
            Fault::PrimaryLimit | Fault::SecondaryLimit => (503, "github_rate_limited"),
        }
    }
}

/// A GitHub stand-in failing with `fault`, and the `[github]` section that points at it.
async fn failing_github(fault: Fault) -> (GitHubStandIn, GithubConfig) {
    let gh = GitHubStandIn::start().await;
    let mut api_url = gh.api_url();
    match fault {
        Fault::ServerError => gh.set_api_down(true),
        Fault::Hanging => gh.hold_api(),
        Fault::PrimaryLimit => gh.set_rate_limit(0, 600),
        Fault::SecondaryLimit => gh.set_retry_after(Some(600)),
        Fault::NeverReached => api_url = closed_port_url(),
    }
    let config = GithubConfig {
        owner: GitHubStandIn::OWNER.into(),
        repo: GitHubStandIn::REPO.into(),
        api_url,
        private: None,
        fallback_on: FallbackReason::ALL.to_vec(),
        timeout: Duration::from_millis(300),
        refresh_interval: Duration::from_secs(60),
    };
    (gh, config)
}

/// A URL on 127.0.0.1 where nothing listens.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// Every protocol's request: path, and whether it asks for JSON.
const PROBES: &[(&str, bool)] = &[
    ("/update/win32/x64/1.0.0/latest.yml", false),
    ("/update/darwin/arm64/1.0.0/latest-mac.yml", false),
    ("/update/linux/x64/1.0.0/latest-linux.yml", false),
    ("/update/linux/arm64/1.0.0/latest-linux-arm64.yml", false),
    ("/update/darwin/x64/1.0.0", false),
    ("/update/darwin/arm64/1.0.0", true),
    ("/update/linux/x64/1.0.0", true),
    ("/update/win32/x64/1.0.0", true),
    ("/update/darwin/arm64/1.1.0", true),
    ("/update/win32/x64/1.0.0/RELEASES", false),
    ("/latest/mac", false),
    ("/latest/win/x64", false),
    ("/latest/linux/arm64", false),
    ("/releases/v1.1.0/Sample-App-Setup-1.1.0.exe", false),
    ("/releases/latest/latest-mac.yml", false),
];

/// The status the sample store gives each probe, so that "the same as without GitHub" is
/// never a comparison of two failures.
const HEALTHY_STATUS: &[u16] = &[
    200, 200, 200, 200, 200, 200, 200, 200, 204, 200, 302, 302, 302, 200, 200,
];

/// The versioned artifact among the probes: never kept in memory, so no stale copy of it.
const ARTIFACT: usize = 13;

/// The sample releases plus a Squirrel.Windows `RELEASES`, in `fx`'s store.
fn with_samples(fx: Fixture) -> Fixture {
    let fx = fx.samples();
    fx.write(
        "releases/latest/RELEASES",
        "85F4D657F8424DD437D1B33CC4511EA7AD86B1A7 Sample-App-1.1.0-full.nupkg 600752\n",
    );
    fx
}

async fn ask_all(router: &axum::Router) -> Vec<Reply> {
    let mut replies = Vec::new();
    for (path, json) in PROBES {
        let headers: &[(&str, &str)] = if *json {
            &[("accept", "application/json")]
        } else {
            &[]
        };
        replies.push(get(router, path, headers).await);
    }
    replies
}

/// What a user depends on in a reply: status, body and the headers that carry meaning.
fn essence(reply: &Reply) -> (u16, String, Vec<(String, String)>) {
    let headers = [
        "content-type",
        "etag",
        "location",
        "cache-control",
        "content-range",
    ]
    .iter()
    .filter_map(|name| {
        let value = reply.headers.get(*name)?.to_str().ok()?;
        Some((name.to_string(), value.to_owned()))
    })
    .collect();
    (
        reply.status.as_u16(),
        String::from_utf8_lossy(&reply.body).into_owned(),
        headers,
    )
}

fn assert_same(cell: &str, got: &[Reply], want: &[Reply]) {
    for (i, ((path, _), (got, want))) in PROBES.iter().zip(got.iter().zip(want)).enumerate() {
        assert_eq!(
            essence(got),
            essence(want),
            "{cell}, probe {i} {path}: {}",
            String::from_utf8_lossy(&got.body)
        );
    }
}

fn assert_error(cell: &str, path: &str, reply: &Reply, (status, code): (u16, &str)) {
    let body = String::from_utf8_lossy(&reply.body);
    assert_eq!(reply.status.as_u16(), status, "{cell} {path}: {body}");
    assert_eq!(reply.json()["error"], code, "{cell} {path}: {body}");
    assert_eq!(reply.header("cache-control"), "no-store", "{cell} {path}");
    if status == 503 {
        let wait: u64 = reply.header("retry-after").parse().expect("Retry-After");
        if code == "github_rate_limited" {
            assert!((590..=600).contains(&wait), "{cell} {path}: {wait}");
        } else {
            assert_eq!(wait, 5, "{cell} {path}");
        }
    }
}

/// The reference: the same store with no GitHub at all.
async fn reference() -> Vec<Reply> {
    let fx = with_samples(Fixture::new());
    let replies = ask_all(&fx.router()).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(
        statuses, HEALTHY_STATUS,
        "the sample store answers every probe"
    );
    replies
}

#[tokio::test]
async fn a_healthy_store_answers_as_if_github_did_not_exist() {
    let want = reference().await;
    for fault in Fault::ALL {
        let (_gh, github) = failing_github(fault).await;
        let mut fx = with_samples(Fixture::new());
        fx.config.github = Some(github);
        let clock = Clock::manual();
        let state = fx.state_on(&clock);
        let router = release_edge::app(state.clone());
        assert_same(&format!("{fault:?}, cold"), &ask_all(&router).await, &want);
        // Past every TTL: stale copies answer while they revalidate from the store...
        clock.advance(Duration::from_secs(120));
        assert_same(&format!("{fault:?}, stale"), &ask_all(&router).await, &want);
        // ...and the revalidated ones answer the same.
        state.manifests.settled().await;
        assert_same(
            &format!("{fault:?}, revalidated"),
            &ask_all(&router).await,
            &want,
        );
    }
}

#[tokio::test]
async fn what_only_github_could_have_fails_naming_github() {
    for fault in Fault::ALL {
        let (_gh, github) = failing_github(fault).await;
        let mut fx = Fixture::new();
        fx.config.github = Some(github);
        let router = fx.state_on(&Clock::manual());
        let router = release_edge::app(router);
        for ((path, _), reply) in PROBES.iter().zip(ask_all(&router).await) {
            assert_error(
                &format!("{fault:?}, empty store"),
                path,
                &reply,
                fault.answer(),
            );
        }
    }
}

#[tokio::test]
async fn a_failing_store_is_named_whatever_github_does() {
    for fault in Fault::ALL {
        let (_gh, github) = failing_github(fault).await;
        let mut fx = Fixture::new();
        fx.config.github = Some(github);
        fx.config.store = StoreConfig {
            kind: StoreKind::S3,
            bucket: Some("releases".into()),
            endpoint: Some(closed_port_url()),
            force_path_style: true,
            max_attempts: 1,
            ..StoreConfig::default()
        };
        let secrets = release_edge::config::Secrets {
            s3_credentials: Some(aws_sdk_s3::config::Credentials::new(
                "closed", "closed", None, None, "test",
            )),
            ..Default::default()
        };
        let state =
            release_edge::App::build_with_clock(fx.config.clone(), secrets, Clock::manual())
                .expect("state");
        let router = release_edge::app(state);
        for ((path, _), reply) in PROBES.iter().zip(ask_all(&router).await) {
            assert_error(
                &format!("{fault:?}, failing store"),
                path,
                &reply,
                (503, "store_unavailable"),
            );
        }
    }
}

#[tokio::test]
async fn a_warm_cache_answers_when_the_store_fails_too() {
    for fault in Fault::ALL {
        let (_gh, github) = failing_github(fault).await;
        let mut fx = with_samples(Fixture::s3());
        fx.config.github = Some(github);
        fx.config.store.max_attempts = 1;
        let clock = Clock::manual();
        let router = release_edge::app(fx.state_on(&clock));
        let warm = ask_all(&router).await;
        let statuses: Vec<u16> = warm.iter().map(|r| r.status.as_u16()).collect();
        assert_eq!(statuses, HEALTHY_STATUS, "{fault:?}: warm");

        // The bucket goes away; two hours later (past every TTL, within stale_if_error)
        // every update check and download link is answered from what was cached.
        fx.s3.as_ref().expect("bucket").stop();
        clock.advance(Duration::from_secs(2 * 3600));
        let cold = ask_all(&router).await;
        for (i, ((path, _), (got, was))) in PROBES.iter().zip(cold.iter().zip(&warm)).enumerate() {
            let cell = format!("{fault:?}, warm then store down");
            if i == ARTIFACT {
                assert_error(&cell, path, got, (503, "store_unavailable"));
            } else {
                assert_eq!(essence(got), essence(was), "{cell} {path}");
            }
        }
    }
}

/// The first run of a new user, through the real binary: the sample releases, `[github]`
/// configured, GitHub unreachable. Every check the store can answer is answered and logs
/// no error; a manifest only GitHub could have is a `503 github_unavailable`, logged once
/// with its cause chain, naming GitHub.
#[tokio::test]
async fn a_new_users_first_run_with_github_unreachable() {
    let fx = with_samples(Fixture::new());
    let api = closed_port_url();
    let server = BinaryServer::spawn(
        fx.root(),
        &[
            ("RELEASE_EDGE_GITHUB__OWNER", "acme"),
            ("RELEASE_EDGE_GITHUB__REPO", "app"),
            ("RELEASE_EDGE_GITHUB__API_URL", &api),
        ],
    );
    let client = reqwest::Client::new();
    let json = |path: &str| {
        client
            .get(server.url(path))
            .header("accept", "application/json")
            .send()
    };
    let up_to_date = json("/update/darwin/arm64/1.1.0").await.expect("check");
    assert_eq!(up_to_date.status(), 204);
    let update = json("/update/darwin/arm64/1.0.0").await.expect("check");
    assert_eq!(update.status(), 200);
    let body: serde_json::Value = update.json().await.expect("json");
    assert_eq!(body["version"], "1.1.0");
    let linux = json("/update/linux/x64/1.0.0").await.expect("check");
    assert_eq!(linux.status(), 200);

    let missing = client
        .get(server.url("/update/linux/x64/1.0.0/beta-linux.yml"))
        .send()
        .await
        .expect("check");
    assert_eq!(missing.status(), 503);
    let body: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(body["error"], "github_unavailable");

    // Four requests, four access-log lines; then exactly one error, for the fourth.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.logged("request").len() < 4 {
        assert!(std::time::Instant::now() < deadline, "access log lines");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let errors = server.logged("request failed");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = &errors[0];
    assert_eq!(error["level"], "ERROR");
    assert_eq!(error["origin"], "github");
    let chain = error["error"].as_str().expect("error chain");
    assert!(
        chain.starts_with("GitHub is unavailable: request failed: "),
        "{chain}"
    );
    assert!(
        chain.contains("onnect"),
        "the cause (connection refused) is in the chain: {chain}"
    );
    assert!(
        !chain.to_lowercase().contains("the store is"),
        "the store is not blamed: {chain}"
    );
}

/// A warm cache, then the store fails while GitHub answers and has none of the store's
/// manifests: the cached copies stand (the origin that gave them failed; GitHub's "none"
/// cannot take them away), for every probe the store answered before.
#[tokio::test]
async fn a_warm_cache_stands_when_the_store_fails_and_github_has_nothing() {
    let gh = GitHubStandIn::start().await;
    let mut fx = with_samples(Fixture::s3());
    fx.config.store.max_attempts = 1;
    let (_, mut github) = failing_github(Fault::ServerError).await;
    github.api_url = gh.api_url();
    fx.config.github = Some(github);
    let clock = Clock::manual();
    let state = fx.state_on(&clock);
    let router = release_edge::app(state.clone());
    let warm = ask_all(&router).await;
    let statuses: Vec<u16> = warm.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, HEALTHY_STATUS);

    fx.s3.as_ref().expect("bucket").stop();
    for round in 0..3 {
        // Past the TTL (and then past the retry gap): each round revalidates and fails.
        clock.advance(Duration::from_secs(61));
        let answers = ask_all(&router).await;
        state.manifests.settled().await;
        for (i, ((path, _), (got, was))) in PROBES.iter().zip(answers.iter().zip(&warm)).enumerate()
        {
            let cell = format!("round {round}, store down, GitHub empty");
            if i == ARTIFACT {
                continue;
            }
            assert_eq!(essence(got), essence(was), "{cell} {path}");
        }
    }
}
