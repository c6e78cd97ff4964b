//! The admin API (SPEC §2.4) in-process and on its own listener: tokens, the slowdown of
//! wrong ones, every change and its audit entry, every refusal (nothing written),
//! compare-and-swap between two nodes (a directory and a bucket), and the CLI against the
//! store with the same checks.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;
use release_edge::clock::Clock;
use release_edge::config::{AdminToken, Secrets};
use release_edge::{App, AppState};
use serde_json::{Value, json};

use crate::support::{Fixture, Reply, TestServer, channel_yml, get, pattern, send};

const JSON: (&str, &str) = ("accept", "application/json");

/// Two releases of `latest` (1.0.0 and 1.1.0, current) for Linux and macOS, and a beta.
fn releases(fx: Fixture) -> Fixture {
    for version in ["1.0.0", "1.1.0"] {
        for (file, name) in [
            ("latest-linux.yml", format!("App-{version}.AppImage")),
            ("latest-mac.yml", format!("App-{version}-mac.zip")),
        ] {
            let bytes = pattern(300 + version.len());
            fx.write(&format!("releases/v{version}/{name}"), &bytes);
            let yaml = channel_yml(version, &[(&name, &bytes)], None);
            fx.write(&format!("releases/v{version}/{file}"), &yaml);
            if version == "1.1.0" {
                fx.write(&format!("releases/latest/{file}"), &yaml);
            }
        }
    }
    let bytes = pattern(77);
    let yaml = channel_yml(
        "2.0.0-beta.1",
        &[("App-2.0.0-beta.1.AppImage", &bytes)],
        None,
    );
    fx.write("releases/v2.0.0-beta.1/App-2.0.0-beta.1.AppImage", &bytes);
    fx.write("releases/v2.0.0-beta.1/beta-linux.yml", &yaml);
    fx.write("releases/latest/beta-linux.yml", &yaml);
    fx
}

/// Tokens made at run time.
struct Tokens {
    alice: String,
    ci: String,
}

impl Tokens {
    fn new() -> Self {
        Self {
            alice: format!("{:032x}", fastrand::u128(..)),
            ci: format!("{:032x}", fastrand::u128(..)),
        }
    }

    fn secrets(&self, fx: &Fixture) -> Secrets {
        Secrets {
            admin_tokens: AdminToken::parse_list(&format!("alice:{},ci:{}", self.alice, self.ci)),
            ..fx.secrets()
        }
    }

    fn state(&self, fx: &Fixture, clock: &Clock) -> AppState {
        App::build_with_clock(fx.config.clone(), self.secrets(fx), clock.clone()).expect("state")
    }
}

/// One admin request: `token` as a bearer token, `body` as JSON, from `peer`.
async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
    peer: Option<SocketAddr>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let mut req = builder.body(body).expect("request");
    if let Some(peer) = peer {
        req.extensions_mut().insert(ConnectInfo(peer));
    }
    send(router, req).await
}

/// `POST path` with `token` and `body`, from no particular address.
async fn post(
    router: &axum::Router,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    call(router, "POST", path, token, body, &[], None).await
}

/// The error code of a JSON error body.
fn code(reply: &Reply) -> String {
    reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// Every file under the store's `policy/` (the document and the audit trail), with its
/// bytes: what a refusal must leave as it was.
fn policy_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push((
                    path.display().to_string(),
                    std::fs::read(&path).expect("read"),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join("policy"), &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn the_api_is_off_without_tokens() {
    let fx = releases(Fixture::new());
    let router = fx.router();
    for (method, path) in [
        ("GET", "/admin/releases"),
        ("POST", "/admin/channels/latest/halt"),
    ] {
        let reply = call(&router, method, path, Some("anything"), None, &[], None).await;
        assert_eq!(
            (reply.status.as_u16(), code(&reply).as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let fx = releases(Fixture::new());
    let tokens = Tokens::new();
    let router = release_edge::app(tokens.state(&fx, &Clock::manual()));
    let reply = call(&router, "GET", "/admin/releases", None, None, &[], None).await;
    assert_eq!(
        (reply.status.as_u16(), code(&reply).as_str()),
        (401, "unauthorized")
    );
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer realm=\"release-edge admin\""
    );
    let basic = call(
        &router,
        "GET",
        "/admin/releases",
        None,
        None,
        &[("authorization", "Basic YWxpY2U6eA==")],
        None,
    )
    .await;
    assert_eq!(basic.status, 401);
    let wrong = call(
        &router,
        "GET",
        "/admin/releases",
        Some("not-a-token"),
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(
        (wrong.status.as_u16(), code(&wrong).as_str()),
        (403, "forbidden")
    );
    // A prefix of a token is not the token.
    let prefix = &tokens.alice[..31];
    let reply = call(
        &router,
        "GET",
        "/admin/releases",
        Some(prefix),
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 403);
    for token in [&tokens.alice, &tokens.ci] {
        let reply = call(
            &router,
            "GET",
            "/admin/releases",
            Some(token),
            None,
            &[],
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{}", text(&reply));
        assert_eq!(reply.header("cache-control"), "no-store");
    }
}

#[tokio::test]
async fn wrong_tokens_slow_an_address_down() {
    let fx = releases(Fixture::new());
    let tokens = Tokens::new();
    let clock = Clock::manual();
    let router = release_edge::app(tokens.state(&fx, &clock));
    let guesser: SocketAddr = "203.0.113.7:50000".parse().expect("addr");
    let colleague: SocketAddr = "203.0.113.8:50000".parse().expect("addr");
    let attempt = |token: String, peer| {
        let router = router.clone();
        async move {
            call(
                &router,
                "GET",
                "/admin/audit",
                Some(&token),
                None,
                &[],
                Some(peer),
            )
            .await
        }
    };
    for i in 0..6 {
        let reply = attempt(format!("guess-{i}"), guesser).await;
        assert_eq!(reply.status, 403, "attempt {i}");
    }
    // The sixth wrong token made the address wait a second: even the right token is not
    // looked at meanwhile.
    let held = attempt(tokens.alice.clone(), guesser).await;
    assert_eq!(
        (held.status.as_u16(), code(&held).as_str()),
        (429, "too_many_attempts")
    );
    assert_eq!(held.header("retry-after"), "1");
    assert_eq!(
        attempt(tokens.ci.clone(), colleague).await.status,
        200,
        "other addresses are not"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(attempt("guess-7".into(), guesser).await.status, 403);
    let held = attempt("guess-8".into(), guesser).await;
    assert_eq!(
        (held.status.as_u16(), held.header("retry-after")),
        (429, "2"),
        "doubled"
    );
    clock.advance(Duration::from_secs(2));
    assert_eq!(attempt(tokens.alice.clone(), guesser).await.status, 200);
    // The right token forgot the failures: the next wrong one is free again.
    assert_eq!(attempt("guess-9".into(), guesser).await.status, 403);
    assert_eq!(attempt(tokens.alice.clone(), guesser).await.status, 200);
}

#[tokio::test]
async fn changes_are_written_audited_counted_and_shown_at_once() {
    let fx = releases(Fixture::new());
    let tokens = Tokens::new();
    let clock = Clock::manual();
    let state = tokens.state(&fx, &clock);
    let router = release_edge::app(state.clone());
    let alice = Some(tokens.alice.as_str());
    let ci = Some(tokens.ci.as_str());
    let feed = "/update/linux/x64/1.0.0/latest-linux.yml";
    let served = |reply: Reply| {
        serde_norway::from_slice::<serde_norway::Value>(&reply.body).expect("yaml")["version"]
            .as_str()
            .expect("version")
            .to_owned()
    };
    assert_eq!(served(get(&router, feed, &[]).await), "1.1.0");

    let halt = post(&router, "/admin/channels/latest/halt", alice, None).await;
    assert_eq!(halt.status, 200, "{}", text(&halt));
    let body = halt.json();
    assert_eq!(
        (
            body["changed"].as_bool(),
            body["policy"]["rollout"]["halted"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert_eq!(body["etag"].as_str(), Some(halt.header("etag")));
    // Stored, and answered by this node at once (its cached policy was dropped).
    let stored: Value = serde_json::from_slice(
        &std::fs::read(fx.root().join("policy/latest.json")).expect("policy"),
    )
    .expect("json");
    assert_eq!(
        stored["rollout"],
        json!({ "percentage": 100, "halted": true })
    );
    assert_eq!(served(get(&router, feed, &[]).await), "1.0.0");
    // Halting again changes nothing, writes nothing.
    let again = post(&router, "/admin/channels/latest/halt", alice, None).await;
    assert_eq!(again.json()["changed"], false);

    let rollout = post(
        &router,
        "/admin/channels/latest/rollout",
        ci,
        Some(json!({ "percentage": 25 })),
    )
    .await;
    assert_eq!(rollout.status, 200, "{}", text(&rollout));
    let resume = post(&router, "/admin/channels/latest/resume", ci, None).await;
    assert_eq!(
        resume.json()["policy"]["rollout"],
        json!({ "percentage": 25, "halted": false })
    );
    let yank = post(
        &router,
        "/admin/versions/1.1.0/yank",
        alice,
        Some(json!({ "reason": "corrupts settings" })),
    )
    .await;
    assert_eq!(yank.status, 200, "{}", text(&yank));
    assert_eq!(
        yank.json()["policy"]["yanked"],
        json!({ "1.1.0": "corrupts settings" })
    );
    assert_eq!(served(get(&router, feed, &[]).await), "1.0.0");
    assert_eq!(
        post(
            &router,
            "/admin/versions/1.1.0/unyank?channel=latest",
            alice,
            None
        )
        .await
        .status,
        200
    );
    // A pre-release's channel is its own by default.
    let beta = post(
        &router,
        "/admin/channels/beta/rollout",
        alice,
        Some(json!({ "percentage": 0 })),
    )
    .await;
    assert_eq!(beta.status, 200);
    assert!(fx.root().join("policy/beta.json").is_file());

    // The audit trail, newest first: who (the token's name), what, before → after.
    let audit = call(
        &router,
        "GET",
        "/admin/audit?channel=latest",
        alice,
        None,
        &[],
        None,
    )
    .await;
    let entries = audit.json()["entries"].as_array().expect("entries").clone();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["who"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("unyank", "alice"),
            ("yank", "alice"),
            ("resume", "ci"),
            ("rollout", "ci"),
            ("halt", "alice")
        ]
    );
    let yank_entry = &entries[1];
    assert_eq!(
        yank_entry["detail"],
        json!({ "version": "1.1.0", "reason": "corrupts settings" })
    );
    assert_eq!(yank_entry["before"]["yanked"], json!({}));
    assert_eq!(
        yank_entry["after"]["yanked"],
        json!({ "1.1.0": "corrupts settings" })
    );
    assert_eq!(yank_entry["channel"], "latest");
    assert!(
        yank_entry["at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{yank_entry}"
    );
    let all = call(
        &router,
        "GET",
        "/admin/audit?limit=2",
        alice,
        None,
        &[],
        None,
    )
    .await;
    let all = all.json()["entries"].as_array().expect("entries").clone();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0]["channel"].as_str(), all[0]["action"].as_str()),
        (Some("beta"), Some("rollout"))
    );

    // Counted by action; the rollout state is a gauge per channel.
    let metrics = state.metrics.render();
    for line in [
        "release_edge_admin_changes_total{action=\"halt\"} 1",
        "release_edge_admin_changes_total{action=\"rollout\"} 2",
        "release_edge_admin_changes_total{action=\"yank\"} 1",
        "release_edge_admin_changes_total{action=\"unyank\"} 1",
        "release_edge_admin_changes_total{action=\"resume\"} 1",
        "release_edge_channel_rollout_percentage{channel=\"latest\"} 25",
        "release_edge_channel_halted{channel=\"latest\"} 0",
        "release_edge_channel_rollout_percentage{channel=\"beta\"} 0",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

#[tokio::test]
async fn the_gauges_follow_the_store_on_every_node() {
    let fx = releases(Fixture::new());
    fx.write(
        "policy/latest.json",
        json!({ "rollout": { "percentage": 40, "halted": true } }).to_string(),
    );
    let state = fx.state_on(&Clock::manual());
    // Listed, so that the scrape knows the channels.
    state.known_versions.refresh().await.expect("listing");
    let router = release_edge::app(state.clone());
    // The first scrape loads the policies behind it (no origin read at scrape time); a
    // later one shows them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text =
            String::from_utf8(get(&router, "/metrics", &[]).await.body.to_vec()).expect("text");
        if text.contains("release_edge_channel_halted{channel=\"beta\"}")
            || std::time::Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for line in [
        "release_edge_channel_rollout_percentage{channel=\"latest\"} 40",
        "release_edge_channel_halted{channel=\"latest\"} 1",
        "release_edge_channel_rollout_percentage{channel=\"beta\"} 100",
        "release_edge_channel_halted{channel=\"beta\"} 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn refusals_say_why_and_write_nothing() {
    let fx = releases(Fixture::new());
    let tokens = Tokens::new();
    let router = release_edge::app(tokens.state(&fx, &Clock::manual()));
    let alice = Some(tokens.alice.as_str());
    // A policy and an audit entry to leave alone.
    let halt = post(&router, "/admin/channels/latest/halt", alice, None).await;
    let etag = halt.header("etag").to_owned();
    let before = policy_files(fx.root());
    assert_eq!(before.len(), 2, "the document and one audit entry");

    // (method, path, body, headers, status, code, a part of the message)
    type Case<'a> = (
        &'a str,
        String,
        Option<Value>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/admin/versions/9.9.9/yank".into(),
            Some(json!({"reason": "x"})),
            vec![],
            404,
            "unknown_version",
            "version 9.9.9 has no channel files for `latest`",
        ),
        (
            "POST",
            "/admin/versions/banana/yank".into(),
            Some(json!({"reason": "x"})),
            vec![],
            400,
            "invalid_version",
            "`banana` is not a semver version",
        ),
        (
            "POST",
            "/admin/versions/1.1.0/yank".into(),
            Some(json!({})),
            vec![],
            400,
            "reason_required",
            "needs a reason",
        ),
        (
            "POST",
            "/admin/versions/1.1.0/yank?channel=Nope".into(),
            Some(json!({"reason": "x"})),
            vec![],
            400,
            "invalid_channel",
            "`Nope` is not a channel name",
        ),
        (
            "POST",
            "/admin/channels/latest/rollout".into(),
            Some(json!({"percentage": 150})),
            vec![],
            400,
            "invalid_percentage",
            "from 0 to 100, got 150",
        ),
        (
            "POST",
            "/admin/channels/latest/rollout".into(),
            Some(json!({"percentage": -1})),
            vec![],
            400,
            "invalid_percentage",
            "got -1",
        ),
        (
            "POST",
            "/admin/channels/latest/rollout".into(),
            Some(json!({"percentage": "half"})),
            vec![],
            400,
            "invalid_percentage",
            "got \"half\"",
        ),
        (
            "POST",
            "/admin/channels/latest/rollout".into(),
            Some(json!({"percent": 5})),
            vec![],
            400,
            "invalid_json",
            "unknown field `percent`",
        ),
        (
            "POST",
            "/admin/versions/1.0.0/unyank".into(),
            None,
            vec![],
            409,
            "not_yanked",
            "1.0.0 is not yanked",
        ),
        (
            "POST",
            "/admin/rollback".into(),
            Some(json!({"channel": "latest", "version": "3.0.0"})),
            vec![],
            404,
            "unknown_version",
            "3.0.0",
        ),
        // A stale ETag, no precondition, a bad document.
        (
            "PUT",
            "/admin/channels/latest/policy".into(),
            Some(json!({})),
            vec![("if-match", "\"stale\"")],
            412,
            "precondition_failed",
            &etag,
        ),
        (
            "PUT",
            "/admin/channels/latest/policy".into(),
            Some(json!({})),
            vec![("if-none-match", "*")],
            412,
            "precondition_failed",
            "changed since it was read",
        ),
        (
            "PUT",
            "/admin/channels/latest/policy".into(),
            Some(json!({})),
            vec![],
            428,
            "precondition_required",
            "If-Match",
        ),
        (
            "PUT",
            "/admin/channels/latest/policy".into(),
            Some(json!({"rollout": {"percentage": 101}})),
            vec![("if-match", &etag)],
            400,
            "invalid_percentage",
            "got 101",
        ),
        (
            "PUT",
            "/admin/channels/latest/policy".into(),
            Some(json!({"yanked": {"7.0.0": "x"}})),
            vec![("if-match", &etag)],
            404,
            "unknown_version",
            "7.0.0",
        ),
        (
            "PUT",
            "/admin/channels/latest/policy".into(),
            Some(json!({"minimum_version": "1.2.0"})),
            vec![("if-match", &etag)],
            409,
            "minimum_version_unservable",
            "newest: 1.1.0",
        ),
        (
            "PUT",
            "/admin/channels/latest/policy".into(),
            Some(json!({"colour": "red"})),
            vec![("if-match", &etag)],
            400,
            "invalid_policy",
            "unknown field `colour`",
        ),
    ];
    for (method, path, body, headers, status, want_code, want_text) in &cases {
        let reply = call(&router, method, path, alice, body.clone(), headers, None).await;
        assert_eq!(
            (reply.status.as_u16(), code(&reply).as_str()),
            (*status, *want_code),
            "{method} {path}: {}",
            text(&reply)
        );
        let message = reply.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(want_text), "{method} {path}: {message}");
    }
    // Yanking every version a platform has: the first yank is fine, the last is refused.
    let yank = |version: &'static str| {
        let router = router.clone();
        async move {
            let path = format!("/admin/versions/{version}/yank");
            let body = Some(json!({"reason": "broken"}));
            call(&router, "POST", &path, alice, body, &[], None).await
        }
    };
    assert_eq!(yank("1.1.0").await.status, 200);
    let written = policy_files(fx.root());
    let last = yank("1.0.0").await;
    assert_eq!(
        (last.status.as_u16(), code(&last).as_str()),
        (409, "last_servable_version"),
        "{}",
        text(&last)
    );
    assert!(
        text(&last).contains("would have no version left to serve"),
        "{}",
        text(&last)
    );
    assert_eq!(policy_files(fx.root()), written, "a refusal writes nothing");
    // Every refusal above left the store as it was.
    assert_eq!(
        written.len(),
        before.len() + 1,
        "only the allowed yank added an entry"
    );
}

#[tokio::test]
async fn put_replaces_the_document_with_if_match() {
    let fx = releases(Fixture::new());
    let tokens = Tokens::new();
    let router = release_edge::app(tokens.state(&fx, &Clock::manual()));
    let alice = Some(tokens.alice.as_str());
    let path = "/admin/channels/latest/policy";
    let none = call(&router, "GET", path, alice, None, &[], None).await;
    assert_eq!(none.status, 200);
    assert!(none.headers.get("etag").is_none());
    assert_eq!(none.json()["policy"]["rollout"]["percentage"], 100);
    let doc = json!({ "rollout": { "percentage": 10 }, "notes": { "1.1.0": "Better notes." } });
    let created = call(
        &router,
        "PUT",
        path,
        alice,
        Some(doc),
        &[("if-none-match", "*")],
        None,
    )
    .await;
    assert_eq!(created.status, 200, "{}", text(&created));
    let first = created.header("etag").to_owned();
    let read = call(&router, "GET", path, alice, None, &[], None).await;
    assert_eq!(read.header("etag"), first);
    let doc = json!({ "minimum_version": "1.1.0" });
    let replaced = call(
        &router,
        "PUT",
        path,
        alice,
        Some(doc.clone()),
        &[("if-match", &first)],
        None,
    )
    .await;
    assert_eq!(replaced.status, 200);
    let second = replaced.header("etag").to_owned();
    assert_ne!(first, second);
    let stale = call(
        &router,
        "PUT",
        path,
        alice,
        Some(doc),
        &[("if-match", &first)],
        None,
    )
    .await;
    assert_eq!(stale.status, 412);
    assert!(
        text(&stale).contains(&second.replace('"', "\\\"")),
        "names the ETag now: {}",
        text(&stale)
    );
    let feed = get(&router, "/update/darwin/x64/1.0.0", &[JSON]).await;
    assert_eq!(
        feed.json()["required"],
        true,
        "the replaced document is the one applied"
    );
}

/// Two nodes over one store write the policy at the same time with the same `If-Match`:
/// exactly one wins, the other is told `412`, and the store holds the winner's document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_one_wins_the_other_gets_412() {
    for fx in Fixture::both() {
        let fx = releases(fx);
        let tokens = Tokens::new();
        let clock = Clock::manual();
        let (a, b) = (
            release_edge::app(tokens.state(&fx, &clock)),
            release_edge::app(tokens.state(&fx, &clock)),
        );
        let path = "/admin/channels/latest/policy";
        let token = tokens.alice.clone();
        let created = call(
            &a,
            "PUT",
            path,
            Some(&token),
            Some(json!({})),
            &[("if-none-match", "*")],
            None,
        )
        .await;
        assert_eq!(created.status, 200, "{}: {}", fx.kind(), text(&created));
        let mut etag = created.header("etag").to_owned();
        for round in 0..10 {
            let write = |router: axum::Router, percentage: u32, etag: String, token: String| async move {
                let body = json!({ "rollout": { "percentage": percentage } });
                call(
                    &router,
                    "PUT",
                    path,
                    Some(&token),
                    Some(body),
                    &[("if-match", &etag)],
                    None,
                )
                .await
            };
            let (x, y) = tokio::join!(
                tokio::spawn(write(a.clone(), 10 + round, etag.clone(), token.clone())),
                tokio::spawn(write(b.clone(), 60 + round, etag.clone(), token.clone())),
            );
            let (x, y) = (x.expect("task"), y.expect("task"));
            let statuses = [x.status.as_u16(), y.status.as_u16()];
            assert!(
                statuses == [200, 412] || statuses == [412, 200],
                "{} round {round}: {statuses:?} {} {}",
                fx.kind(),
                text(&x),
                text(&y)
            );
            let (winner, percentage) = if x.status == 200 {
                (&x, 10 + round)
            } else {
                (&y, 60 + round)
            };
            let stored = call(&a, "GET", path, Some(&token), None, &[], None).await;
            assert_eq!(
                stored.json()["policy"]["rollout"]["percentage"],
                percentage,
                "{}",
                fx.kind()
            );
            assert_eq!(stored.header("etag"), winner.header("etag"));
            etag = winner.header("etag").to_owned();
        }
    }
}

#[tokio::test]
async fn releases_lists_channels_versions_files_and_policies() {
    let fx = releases(Fixture::new());
    fx.write(
        "policy/latest.json",
        json!({ "yanked": { "1.1.0": "bad" } }).to_string(),
    );
    let tokens = Tokens::new();
    let router = release_edge::app(tokens.state(&fx, &Clock::manual()));
    let reply = call(
        &router,
        "GET",
        "/admin/releases",
        Some(&tokens.ci),
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", text(&reply));
    let body = reply.json();
    let channels = body["channels"].as_array().expect("channels");
    let latest = channels
        .iter()
        .find(|c| c["channel"] == "latest")
        .expect("latest");
    assert_eq!(
        latest["serves"],
        json!({ "latest-linux.yml": "1.1.0", "latest-mac.yml": "1.1.0" })
    );
    assert_eq!(
        (latest["current"].as_str(), latest["previous"].as_str()),
        (Some("1.0.0"), None)
    );
    assert_eq!(latest["versions"], json!(["1.0.0", "1.1.0"]));
    assert_eq!(latest["policy"]["yanked"], json!({ "1.1.0": "bad" }));
    assert!(
        latest["policy_etag"]
            .as_str()
            .is_some_and(|e| e.starts_with('"'))
    );
    let beta = channels
        .iter()
        .find(|c| c["channel"] == "beta")
        .expect("beta");
    assert_eq!(beta["current"], "2.0.0-beta.1");
    let versions = body["versions"].as_array().expect("versions");
    assert_eq!(versions[0]["version"], "2.0.0-beta.1", "newest first");
    let v110 = versions
        .iter()
        .find(|v| v["version"] == "1.1.0")
        .expect("1.1.0");
    assert_eq!(v110["files"]["linux"], json!(["App-1.1.0.AppImage"]));
    assert_eq!(v110["files"]["darwin"], json!(["App-1.1.0-mac.zip"]));
    assert_eq!(v110["channels"], json!(["latest"]));
    assert_eq!(v110["place"], "store");
}

#[tokio::test]
async fn purge_and_rollback() {
    let fx = releases(Fixture::new());
    let tokens = Tokens::new();
    let clock = Clock::manual();
    let state = tokens.state(&fx, &clock);
    let router = release_edge::app(state.clone());
    let alice = Some(tokens.alice.as_str());
    let feed = "/update/linux/x64/1.0.0/latest-linux.yml";
    let served = |reply: Reply| {
        serde_norway::from_slice::<serde_norway::Value>(&reply.body).expect("yaml")["version"]
            .clone()
    };
    assert_eq!(served(get(&router, feed, &[]).await), "1.1.0");
    // The store changed behind this node's back (a publish elsewhere): purging that key
    // shows it at once.
    std::fs::copy(
        fx.root().join("releases/v1.0.0/latest-linux.yml"),
        fx.root().join("releases/latest/latest-linux.yml"),
    )
    .expect("copy");
    clock.advance(Duration::from_secs(2));
    assert_eq!(served(get(&router, feed, &[]).await), "1.1.0", "cached");
    let bad = post(
        &router,
        "/admin/cache/purge",
        alice,
        Some(json!({ "keys": ["../etc"] })),
    )
    .await;
    assert_eq!(
        (bad.status.as_u16(), code(&bad).as_str()),
        (400, "invalid_key")
    );
    let purge = post(
        &router,
        "/admin/cache/purge",
        alice,
        Some(json!({ "keys": ["releases/latest/latest-linux.yml"] })),
    )
    .await;
    assert_eq!(purge.status, 200, "{}", text(&purge));
    assert_eq!(served(get(&router, feed, &[]).await), "1.0.0");

    // Rollback (to 1.1.0 again) through the API: written, shown at once, audited.
    let rollback = post(
        &router,
        "/admin/rollback",
        alice,
        Some(json!({ "channel": "latest", "version": "1.1.0" })),
    )
    .await;
    assert_eq!(rollback.status, 200, "{}", text(&rollback));
    assert_eq!(served(get(&router, feed, &[]).await), "1.1.0");
    let audit = call(&router, "GET", "/admin/audit", alice, None, &[], None).await;
    let entry = audit.json()["entries"][0].clone();
    assert_eq!(
        (entry["action"].as_str(), entry["who"].as_str()),
        (Some("rollback"), Some("alice"))
    );
    assert_eq!(entry["before"]["serves"]["latest-linux.yml"], "1.0.0");
    assert_eq!(entry["after"]["serves"]["latest-linux.yml"], "1.1.0");
    let metrics = state.metrics.render();
    assert!(
        metrics.contains("release_edge_admin_changes_total{action=\"purge\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("release_edge_admin_changes_total{action=\"rollback\"} 1"),
        "{metrics}"
    );
}

/// With `admin_listen`, `/admin/*` is served there and nowhere else, over real TCP.
#[tokio::test]
async fn admin_listen_keeps_the_api_off_the_public_listener() {
    let mut fx = releases(Fixture::new());
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin_addr = free.local_addr().expect("addr");
    drop(free);
    fx.config.admin_listen = Some(admin_addr);
    let tokens = Tokens::new();
    let server = TestServer::start_with(fx.config.clone(), tokens.secrets(&fx)).await;
    let client = reqwest::Client::new();
    let bearer = format!("Bearer {}", tokens.alice);
    let public = client
        .get(server.url("/admin/releases"))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("public");
    assert_eq!(public.status(), 404);
    let admin = |path: &str| {
        client
            .get(format!("http://{admin_addr}{path}"))
            .header("authorization", &bearer)
            .send()
    };
    let releases = admin("/admin/releases").await.expect("admin");
    assert_eq!(releases.status(), 200);
    assert_eq!(
        admin("/update/linux/x64/1.0.0")
            .await
            .expect("admin")
            .status(),
        404,
        "feeds are not there"
    );
    let unauthorized = client
        .get(format!("http://{admin_addr}/admin/releases"))
        .send()
        .await
        .expect("admin");
    assert_eq!(unauthorized.status(), 401);
}

/// The CLI, the real binary against the store with no server: the same changes, checks and
/// audit trail.
#[test]
fn the_cli_mirrors_the_api() {
    let fx = releases(Fixture::new());
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_release-edge"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("USER", "carol")
            .env("RELEASE_EDGE_STORE__ROOT", fx.root())
            .current_dir(fx.root())
            .output()
            .expect("run release-edge");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["halt", "--channel", "latest"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("\"halted\": true"), "{out}");
    let (code, out, err) = run(&["rollout", "--percentage", "150"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("percentage must be a whole number from 0 to 100, got 150"),
        "{out}{err}"
    );
    let (code, _, err) = run(&["yank", "9.9.9", "--reason", "x"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("version 9.9.9 has no channel files for `latest`"),
        "{err}"
    );
    let (code, out, err) = run(&["yank", "1.1.0", "--reason", "corrupts settings"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = run(&["yank", "1.0.0", "--reason", "also"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("would have no version left to serve"), "{err}");
    let (code, out, err) = run(&["policy", "show"]);
    assert_eq!(code, Some(0), "{err}");
    let shown: Value = serde_json::from_str(&out).expect("policy show prints the document");
    assert_eq!(shown["yanked"], json!({ "1.1.0": "corrupts settings" }));
    assert!(err.contains("ETag \""), "{err}");
    // `policy set` from a file, with a stale ETag refused.
    let file = fx.root().join("new-policy.json");
    std::fs::write(&file, json!({ "minimum_version": "1.0.0" }).to_string()).expect("write");
    let (code, _, err) = run(&[
        "policy",
        "set",
        file.to_str().expect("utf-8"),
        "--if-match",
        "\"stale\"",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("changed since it was read"), "{err}");
    let (code, out, err) = run(&["policy", "set", file.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    // The versions' table first (where each lives), then each channel.
    assert!(out.starts_with("version"), "{out}");
    assert!(out.contains("\n1.1.0 "), "{out}");
    assert!(out.contains("channel latest"), "{out}");
    assert!(out.contains("current: 1.1.0   previous: 1.0.0"), "{out}");
    let (code, out, _) = run(&["rollback", "--channel", "latest", "--to", "1.0.0"]);
    assert_eq!(code, Some(0), "{out}");
    // Every change is in the audit trail, made by the CLI's user.
    let entries = std::fs::read_dir(fx.root().join("policy/audit"))
        .expect("audit")
        .count();
    assert_eq!(entries, 4, "halt, yank, policy set, rollback");
    let mut whos = Vec::new();
    for entry in std::fs::read_dir(fx.root().join("policy/audit"))
        .expect("audit")
        .flatten()
    {
        let entry: Value =
            serde_json::from_slice(&std::fs::read(entry.path()).expect("read")).expect("json");
        whos.push(entry["who"].as_str().unwrap_or_default().to_owned());
    }
    assert!(whos.iter().all(|w| w == "cli:carol"), "{whos:?}");
}

/// A known admin path with a method it does not take: `405` JSON naming the methods it does.
#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let fx = releases(Fixture::new());
    let tokens = Tokens::new();
    let router = release_edge::app(tokens.state(&fx, &Clock::manual()));
    let reply = call(
        &router,
        "GET",
        "/admin/channels/latest/halt",
        Some(&tokens.alice),
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), code(&reply).as_str()),
        (405, "method_not_allowed")
    );
    assert_eq!(reply.header("allow"), "POST");
    for (method, path, allow) in [
        ("POST", "/admin/audit", "GET, HEAD"),
        ("DELETE", "/admin/channels/latest/policy", "GET, HEAD, PUT"),
    ] {
        let reply = call(&router, method, path, Some(&tokens.alice), None, &[], None).await;
        assert_eq!(
            (reply.status.as_u16(), reply.header("allow")),
            (405, allow),
            "{method} {path}"
        );
    }
}

/// With `[cdn]`, a change through the API purges the channel's answers on the CDN (here a
/// stand-in of Cloudflare's API); a purge that fails is reported in the answer, the change
/// itself made.
#[tokio::test]
async fn a_change_purges_the_cdn_and_a_failed_purge_is_reported() {
    use crate::cdn_standin::{CdnStandIn, Provider, Purge};
    let token = format!("{:032x}", fastrand::u128(..));
    let cdn = CdnStandIn::start(Provider::Cloudflare, &token, "unused").await;
    let mut fx = releases(Fixture::new());
    fx.config.cdn = Some(crate::cdn_purge::cdn_config(&cdn));
    fx.config.cdn.as_mut().expect("cdn").retry_backoff = Duration::from_millis(10);
    let tokens = Tokens::new();
    let secrets = Secrets {
        cloudflare_api_token: Some(secrecy::SecretString::from(token)),
        ..tokens.secrets(&fx)
    };
    let state = App::build_with_clock(fx.config.clone(), secrets, Clock::system()).expect("state");
    let router = release_edge::app(state);
    let alice = Some(tokens.alice.as_str());
    let halt = post(&router, "/admin/channels/latest/halt", alice, None).await;
    assert_eq!(halt.status, 200, "{}", text(&halt));
    assert_eq!(halt.json()["cdn"], json!({ "purged": true }));
    assert_eq!(
        cdn.purges(),
        [Purge {
            kind: "tags",
            items: vec!["release-edge-latest".into()],
        }]
    );
    // Nothing changed: nothing purged.
    let again = post(&router, "/admin/channels/latest/halt", alice, None).await;
    assert!(again.json().get("cdn").is_none());
    assert_eq!(cdn.purges().len(), 1);

    cdn.fail_all(Some(500));
    let resume = post(&router, "/admin/channels/latest/resume", alice, None).await;
    assert_eq!(resume.status, 200);
    let body = resume.json();
    assert_eq!(body["changed"], true, "the change is made");
    assert_eq!(body["cdn"]["purged"], false);
    assert!(
        body["cdn"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("the CDN was not purged")),
        "{body}"
    );
}
