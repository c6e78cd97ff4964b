//! The release policy in every feed (SPEC §2.5), in-process: halt, staged rollout, yank,
//! `minimum_version` and notes, each checked in the YAML feed (electron-updater), the JSON
//! protocol (Squirrel.Mac, Tauri), Squirrel.Windows' `RELEASES` and `/latest`; and two nodes
//! over one store (a directory, a bucket) agreeing within `cache.manifest_ttl` of a change.
//! The real clients under a policy are in `electron_updater.rs` and `tauri.rs`.

use std::time::Duration;

use release_edge::clock::Clock;
use release_edge::config::{AdminToken, Secrets};
use release_edge::release::rollout::in_rollout;
use release_edge::{App, AppState};
use serde_json::json;
use serde_norway::Value;

use crate::support::{Fixture, Reply, channel_yml, get, pattern, request};

const PUBLIC: &str = "https://dl.example.com";
const JSON: (&str, &str) = ("accept", "application/json");
const VERSIONS: [&str; 3] = ["1.0.0", "1.1.0", "1.2.0"];

/// Writes `version` as electron-builder publishes it: artifacts, signatures and channel
/// files under `releases/v{version}/`, and (when `current`) the channel files under
/// `releases/latest/`.
fn publish(fx: &Fixture, version: &str, current: bool) {
    let files: [(&str, Vec<String>); 3] = [
        ("latest-linux.yml", vec![format!("App-{version}.AppImage")]),
        (
            "latest-mac.yml",
            vec![
                format!("App-{version}-mac.zip"),
                format!("App-{version}.dmg"),
            ],
        ),
        ("latest.yml", vec![format!("App Setup {version}.exe")]),
    ];
    for (channel_file, names) in &files {
        let contents: Vec<Vec<u8>> = names
            .iter()
            .map(|n| pattern(500 + n.len() + version.len()))
            .collect();
        for (name, bytes) in names.iter().zip(&contents) {
            fx.write(&format!("releases/v{version}/{name}"), bytes);
            fx.write(
                &format!("releases/v{version}/{name}.sig"),
                format!("signature of {name}"),
            );
        }
        let listed: Vec<(&str, &[u8])> = names
            .iter()
            .zip(&contents)
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        let yaml =
            channel_yml(version, &listed, None) + &format!("releaseNotes: Notes of {version}.\n");
        fx.write(&format!("releases/v{version}/{channel_file}"), &yaml);
        if current {
            fx.write(&format!("releases/latest/{channel_file}"), &yaml);
        }
    }
}

/// 1.0.0, 1.1.0 and 1.2.0 (current), with Squirrel.Windows' `RELEASES` listing all three
/// (deltas for 1.1.0 and 1.2.0).
fn releases(fx: Fixture) -> Fixture {
    for version in VERSIONS {
        publish(&fx, version, version == "1.2.0");
    }
    let mut lines = String::new();
    for (i, version) in VERSIONS.iter().enumerate() {
        if i > 0 {
            lines.push_str(&format!("{:040} App-{version}-delta.nupkg 10\n", i * 2));
        }
        lines.push_str(&format!("{:040} App-{version}-full.nupkg 100\n", i * 2 + 1));
    }
    fx.write("releases/latest/RELEASES", lines);
    fx
}

fn fixture() -> Fixture {
    let mut fx = releases(Fixture::new());
    fx.config.public_url = PUBLIC.into();
    fx
}

fn set_policy(fx: &Fixture, policy: serde_json::Value) {
    fx.write("policy/latest.json", policy.to_string());
}

fn yaml(reply: &Reply) -> Value {
    reply.yaml()
}

/// electron-updater's check from `client`, with `headers`.
async fn yaml_check(router: &axum::Router, client: &str, headers: &[(&str, &str)]) -> Reply {
    get(
        router,
        &format!("/update/linux/x64/{client}/latest-linux.yml"),
        headers,
    )
    .await
}

/// The version the YAML answer describes.
async fn yaml_version(router: &axum::Router, client: &str, headers: &[(&str, &str)]) -> String {
    let reply = yaml_check(router, client, headers).await;
    yaml(&reply)["version"]
        .as_str()
        .expect("version")
        .to_owned()
}

/// The JSON protocol from `client` (macOS x64) with `query`: `None` for a `204`.
async fn json_version(router: &axum::Router, client: &str, query: &str) -> Option<String> {
    let reply = get(
        router,
        &format!("/update/darwin/x64/{client}{query}"),
        &[JSON],
    )
    .await;
    match reply.status.as_u16() {
        204 => None,
        200 => Some(
            reply.json()["version"]
                .as_str()
                .expect("version")
                .to_owned(),
        ),
        other => panic!("{other}: {:?}", String::from_utf8_lossy(&reply.body)),
    }
}

/// Where `/latest/linux{query}` sends a visitor, and its `Cache-Control`.
async fn latest(router: &axum::Router, query: &str) -> (String, String) {
    let reply = get(router, &format!("/latest/linux{query}"), &[]).await;
    assert_eq!(
        reply.status,
        302,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    (
        reply.header("location").to_owned(),
        reply.header("cache-control").to_owned(),
    )
}

fn appimage(version: &str) -> String {
    format!("{PUBLIC}/releases/v{version}/App-{version}.AppImage")
}

/// The packages Squirrel.Windows is offered from `client`.
async fn squirrel(router: &axum::Router, client: &str, query: &str) -> Vec<String> {
    let reply = get(
        router,
        &format!("/update/win32/x64/{client}/RELEASES{query}"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    String::from_utf8(reply.body.to_vec())
        .expect("text")
        .lines()
        .map(|l| {
            l.rsplit('/')
                .next()
                .unwrap_or_default()
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Two rollout ids of 1.2.0 at `percentage`: one inside, one outside.
fn ids(percentage: f64) -> (String, String) {
    let find = |inside: bool| {
        (0..)
            .map(|i| format!("install-{i}"))
            .find(|id| in_rollout(id, "1.2.0", percentage) == inside)
            .expect("an id")
    };
    (find(true), find(false))
}

#[tokio::test]
async fn an_inert_policy_changes_no_byte() {
    let plain = fixture();
    let with_doc = fixture();
    set_policy(&with_doc, json!({ "rollout": { "percentage": 100 } }));
    let (a, b) = (plain.router(), with_doc.router());
    for path in [
        "/update/linux/x64/1.0.0/latest-linux.yml",
        "/update/darwin/x64/1.0.0",
        "/update/win32/x64/1.0.0/RELEASES",
        "/latest/linux",
    ] {
        for headers in [&[][..], &[JSON][..]] {
            let (x, y) = (get(&a, path, headers).await, get(&b, path, headers).await);
            assert_eq!((x.status, &x.body), (y.status, &y.body), "{path}");
            for name in ["cache-control", "etag", "location", "vary"] {
                assert_eq!(x.headers.get(name), y.headers.get(name), "{path} {name}");
            }
        }
    }
}

#[tokio::test]
async fn a_halt_offers_the_previous_release_to_everyone_new() {
    let fx = fixture();
    set_policy(&fx, json!({ "rollout": { "halted": true } }));
    let router = fx.router();

    let reply = yaml_check(&router, "1.0.0", &[]).await;
    let doc = yaml(&reply);
    assert_eq!(doc["version"], "1.1.0");
    assert_eq!(doc["path"], appimage("1.1.0").as_str());
    assert_eq!(doc["releaseNotes"], "Notes of 1.1.0.");
    assert!(doc.get("stagingPercentage").is_none());
    // Everyone new gets the same answer: a shared cache may keep it.
    assert!(reply.header("cache-control").starts_with("public"));
    assert_eq!(yaml_version(&router, "1.1.0", &[]).await, "1.1.0");
    assert_eq!(
        yaml_version(&router, "1.2.0", &[]).await,
        "1.2.0",
        "already on it"
    );

    assert_eq!(
        json_version(&router, "1.0.0", "").await.as_deref(),
        Some("1.1.0")
    );
    let json = get(&router, "/update/darwin/x64/1.0.0", &[JSON])
        .await
        .json();
    assert_eq!(
        json["url"],
        format!("{PUBLIC}/releases/v1.1.0/App-1.1.0-mac.zip")
    );
    assert_eq!(json["signature"], "signature of App-1.1.0-mac.zip");
    assert_eq!(json_version(&router, "1.1.0", "").await, None);
    assert_eq!(json_version(&router, "1.2.0", "").await, None);

    let (location, caching) = latest(&router, "").await;
    assert_eq!(location, appimage("1.1.0"));
    assert_eq!(caching, "public, max-age=300");

    assert_eq!(
        squirrel(&router, "1.0.0", "").await,
        [
            "App-1.0.0-full.nupkg",
            "App-1.1.0-delta.nupkg",
            "App-1.1.0-full.nupkg"
        ]
    );
    assert_eq!(
        squirrel(&router, "1.2.0", "").await.len(),
        5,
        "a client on the halted release sees it"
    );
}

#[tokio::test]
async fn a_staged_rollout_is_decided_per_client_and_never_shared() {
    let fx = fixture();
    set_policy(&fx, json!({ "rollout": { "percentage": 30 } }));
    let router = fx.router();
    let (inside, outside) = ids(30.0);

    // electron-updater: its own staging id decides; the server's answer is final, so the
    // file carries no stagingPercentage for the client to apply again.
    let reply = yaml_check(&router, "1.0.0", &[("x-user-staging-id", &inside)]).await;
    let doc = yaml(&reply);
    assert_eq!(doc["version"], "1.2.0");
    assert!(doc.get("stagingPercentage").is_none());
    assert_eq!(reply.header("cache-control"), "private, max-age=300");
    assert_eq!(
        reply.header("vary"),
        "Accept, X-Client-Id, X-User-Staging-Id"
    );
    let reply = yaml_check(&router, "1.0.0", &[("x-user-staging-id", &outside)]).await;
    assert_eq!(
        yaml(&reply)["version"],
        "1.1.0",
        "the previous release, not nothing"
    );
    assert!(reply.header("cache-control").starts_with("private"));
    // `?id=` and `X-Client-Id` come first.
    assert_eq!(
        yaml_version(
            &router,
            "1.0.0",
            &[("x-client-id", &inside), ("x-user-staging-id", &outside)]
        )
        .await,
        "1.2.0"
    );

    for (id, want) in [(&inside, "1.2.0"), (&outside, "1.1.0")] {
        let query = format!("?id={id}");
        assert_eq!(
            json_version(&router, "1.0.0", &query).await.as_deref(),
            Some(want)
        );
        let (location, caching) = latest(&router, &query).await;
        assert_eq!((location, caching.as_str()), (appimage(want), "no-store"));
        let packages = squirrel(&router, "1.0.0", &query).await;
        assert_eq!(
            packages.last().map(String::as_str),
            Some(&*format!("App-{want}-full.nupkg"))
        );
    }
    let reply = get(
        &router,
        &format!("/update/darwin/x64/1.0.0?id={outside}"),
        &[JSON],
    )
    .await;
    assert_eq!(reply.header("cache-control"), "private, max-age=300");
    // Already on the release: up to date, whatever the bucket.
    assert_eq!(
        yaml_version(&router, "1.2.0", &[("x-user-staging-id", &outside)]).await,
        "1.2.0"
    );
    assert_eq!(
        json_version(&router, "1.2.0", &format!("?id={outside}")).await,
        None
    );
}

#[tokio::test]
async fn a_yanked_version_is_offered_by_no_feed_and_stays_downloadable() {
    let fx = fixture();
    set_policy(
        &fx,
        json!({ "yanked": { "1.2.0": "corrupts settings on upgrade" } }),
    );
    let router = fx.router();
    assert_eq!(yaml_version(&router, "1.0.0", &[]).await, "1.1.0");
    assert_eq!(
        json_version(&router, "1.0.0", "").await.as_deref(),
        Some("1.1.0")
    );
    assert_eq!(json_version(&router, "1.1.0", "").await, None);
    assert_eq!(latest(&router, "").await.0, appimage("1.1.0"));
    assert_eq!(
        squirrel(&router, "1.0.0", "").await,
        [
            "App-1.0.0-full.nupkg",
            "App-1.1.0-delta.nupkg",
            "App-1.1.0-full.nupkg"
        ]
    );
    // A client on the yanked version is offered nothing: not 1.1.0 (electron-updater would
    // downgrade with allowDowngrade), but a file that no client takes.
    let doc = yaml(&yaml_check(&router, "1.2.0", &[]).await);
    assert_eq!(doc["stagingPercentage"], 0);
    assert_eq!(json_version(&router, "1.2.0", "").await, None);
    // Its files stay downloadable (a client may be mid-download).
    let file = get(&router, "/releases/v1.2.0/App-1.2.0.AppImage", &[]).await;
    assert_eq!(file.status, 200);
    assert_eq!(
        file.body,
        std::fs::read(fx.root().join("releases/v1.2.0/App-1.2.0.AppImage")).expect("artifact")
    );

    // Two yanked: the newest not yanked is served...
    let fx = fixture();
    set_policy(&fx, json!({ "yanked": { "1.2.0": "x", "1.1.0": "y" } }));
    let router = fx.router();
    assert_eq!(yaml_version(&router, "0.9.0", &[]).await, "1.0.0");
    assert_eq!(
        json_version(&router, "0.9.0", "").await.as_deref(),
        Some("1.0.0")
    );
    // ...and when it is halted too, there is nothing before it to offer: nothing is.
    set_policy(
        &fx,
        json!({ "yanked": { "1.2.0": "x", "1.1.0": "y" }, "rollout": { "halted": true } }),
    );
    let router = fx.router();
    assert_eq!(json_version(&router, "0.9.0", "").await, None);
    let doc = yaml(&yaml_check(&router, "0.9.0", &[]).await);
    assert_eq!(doc["stagingPercentage"], 0);
}

#[tokio::test]
async fn minimum_version_marks_the_update_required_in_every_protocol() {
    let fx = fixture();
    set_policy(
        &fx,
        json!({ "minimum_version": "1.1.0", "rollout": { "percentage": 30 } }),
    );
    let router = fx.router();
    let (_, outside) = ids(30.0);
    // Below the minimum: in the rollout whatever the bucket, and told it is required.
    let reply = yaml_check(&router, "1.0.0", &[("x-user-staging-id", &outside)]).await;
    let doc = yaml(&reply);
    assert_eq!(doc["version"], "1.2.0");
    assert_eq!(doc["updateRequired"], true);
    assert_eq!(doc["minimumVersion"], "1.1.0");
    assert_eq!(reply.header("x-update-required"), "true");
    assert!(
        reply.header("cache-control").starts_with("public"),
        "not per client"
    );

    let reply = get(&router, "/update/darwin/x64/1.0.0", &[JSON]).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(
        (body["version"].as_str(), body["required"].as_bool()),
        (Some("1.2.0"), Some(true))
    );
    assert_eq!(body["minimum_version"], "1.1.0");
    assert_eq!(reply.header("x-update-required"), "true");

    let reply = get(&router, "/update/win32/x64/1.0.0/RELEASES", &[]).await;
    assert_eq!(reply.header("x-update-required"), "true");

    // At the minimum: an ordinary client of the rollout.
    let reply = yaml_check(&router, "1.1.0", &[("x-user-staging-id", &outside)]).await;
    let doc = yaml(&reply);
    assert_eq!(doc["version"], "1.1.0");
    assert!(doc.get("updateRequired").is_none());
    assert!(reply.headers.get("x-update-required").is_none());
    let reply = get(&router, "/update/darwin/x64/1.1.0?id=x", &[JSON]).await;
    assert!(reply.headers.get("x-update-required").is_none());
}

#[tokio::test]
async fn notes_override_the_manifests() {
    let fx = fixture();
    set_policy(
        &fx,
        json!({ "notes": { "1.2.0": "Fixes the settings migration.\n\n\"Really\"." } }),
    );
    let router = fx.router();
    let doc = yaml(&yaml_check(&router, "1.0.0", &[]).await);
    assert_eq!(
        doc["releaseNotes"],
        "Fixes the settings migration.\n\n\"Really\"."
    );
    assert_eq!(doc["releaseDate"], "2026-11-01T12:00:00.000Z");
    let body = get(&router, "/update/darwin/x64/1.0.0", &[JSON])
        .await
        .json();
    assert_eq!(
        body["notes"],
        "Fixes the settings migration.\n\n\"Really\"."
    );
    // The raw text keeps electron-builder's quoting of the date (js-yaml would read an
    // unquoted one as a Date).
    let reply = yaml_check(&router, "1.0.0", &[]).await;
    let text = String::from_utf8_lossy(&reply.body);
    assert!(
        text.contains("releaseDate: '2026-11-01T12:00:00.000Z'"),
        "{text}"
    );
}

#[tokio::test]
async fn a_tauri_manifest_obeys_the_policy_too() {
    let fx = fixture();
    for version in ["1.1.0", "1.2.0"] {
        let manifest = json!({
            "version": version,
            "notes": format!("Tauri notes {version}"),
            "pub_date": "2026-11-01T12:00:00Z",
            "platforms": {
                "linux-x86_64": { "signature": format!("SIG-{version}"), "url": format!("app_{version}.AppImage.tar.gz") }
            }
        });
        fx.write(
            &format!("releases/v{version}/latest.json"),
            manifest.to_string(),
        );
        if version == "1.2.0" {
            fx.write("releases/latest/latest.json", manifest.to_string());
        }
    }
    set_policy(
        &fx,
        json!({ "rollout": { "halted": true }, "notes": { "1.1.0": "Overridden." } }),
    );
    let router = fx.router();
    let reply = get(&router, "/update/linux/x86_64/1.0.0", &[JSON]).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["version"], "1.1.0");
    assert_eq!(body["signature"], "SIG-1.1.0");
    assert_eq!(body["notes"], "Overridden.");
    assert_eq!(
        body["url"],
        format!("{PUBLIC}/releases/v1.1.0/app_1.1.0.AppImage.tar.gz")
    );
    assert_eq!(
        get(&router, "/update/linux/x86_64/1.1.0", &[JSON])
            .await
            .status,
        204
    );
}

fn admin_secrets(fx: &Fixture, token: &str) -> Secrets {
    Secrets {
        admin_tokens: AdminToken::parse_list(&format!("alice:{token}")),
        ..fx.secrets()
    }
}

fn node(fx: &Fixture, clock: &Clock, token: &str) -> AppState {
    App::build_with_clock(fx.config.clone(), admin_secrets(fx, token), clock.clone())
        .expect("state")
}

/// Two nodes over one store: a halt made through one is what the other answers once
/// `cache.manifest_ttl` has passed (on the injected clock), with no coordination.
#[tokio::test]
async fn every_node_sees_a_change_within_the_ttl() {
    for fx in Fixture::both() {
        let mut fx = releases(fx);
        fx.config.public_url = PUBLIC.into();
        let ttl = fx.config.cache.manifest_ttl;
        let clock = Clock::manual();
        let token = format!("{:032x}", fastrand::u128(..));
        let (a, b) = (node(&fx, &clock, &token), node(&fx, &clock, &token));
        let (ra, rb) = (release_edge::app(a.clone()), release_edge::app(b.clone()));
        for router in [&ra, &rb] {
            assert_eq!(
                yaml_version(router, "1.0.0", &[]).await,
                "1.2.0",
                "{}",
                fx.kind()
            );
        }
        let auth = format!("Bearer {token}");
        let halt = request(
            &ra,
            "POST",
            "/admin/channels/latest/halt",
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(
            halt.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&halt.body)
        );
        // The node that made the change shows it at once; the other within the TTL.
        assert_eq!(
            yaml_version(&ra, "1.0.0", &[]).await,
            "1.1.0",
            "{}",
            fx.kind()
        );
        clock.advance(ttl - Duration::from_secs(1));
        assert_eq!(
            yaml_version(&rb, "1.0.0", &[]).await,
            "1.2.0",
            "{}: still fresh",
            fx.kind()
        );
        clock.advance(Duration::from_secs(1));
        // Past the TTL: answered from memory while the policy is read again behind it...
        let stale = yaml_version(&rb, "1.0.0", &[]).await;
        b.manifests.settled().await;
        // ...and from then on the new policy.
        assert_eq!(
            yaml_version(&rb, "1.0.0", &[]).await,
            "1.1.0",
            "{}",
            fx.kind()
        );
        assert_eq!(stale, "1.2.0");
        assert_eq!(latest(&rb, "").await.0, appimage("1.1.0"));

        // Resumed through the other node: the first sees it within the TTL too.
        let resume = request(
            &rb,
            "POST",
            "/admin/channels/latest/resume",
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(resume.status, 200);
        assert_eq!(yaml_version(&rb, "1.0.0", &[]).await, "1.2.0");
        clock.advance(ttl);
        yaml_version(&ra, "1.0.0", &[]).await;
        a.manifests.settled().await;
        assert_eq!(
            yaml_version(&ra, "1.0.0", &[]).await,
            "1.2.0",
            "{}",
            fx.kind()
        );
    }
}
