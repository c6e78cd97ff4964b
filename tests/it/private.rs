//! Private channels and signed download URLs (SPEC §2.7): tokens on feeds, `/latest` and
//! artifacts, which objects are private, signed URLs that expire and open one object, the
//! slowdown of wrong credentials, revocation and key rotation, the log — in-process on a
//! manual clock — then every updater of the suite against a private channel over TCP:
//! electron-updater (full and differential), the Tauri client, `curl -C -` and aria2c.
//!
//! Tokens and keys are made at run time; none is in the repository.

use std::process::Command;
use std::time::{Duration, Instant};

use http::StatusCode;
use release_edge::App;
use release_edge::clock::Clock;
use release_edge::config::{Config, Secrets};
use secrecy::SecretString;
use serde_json::Value;

use crate::clients::{aria2c, describe, file_len, interrupted_curl, run};
use crate::electron_updater::{
    Artifact, BlockMap, artifact, build_appimages, changed_content, channel_file as builder_yml,
    harness, random_bytes, require_client, update_succeeded,
};
use crate::support::{
    BinaryServer, Fixture, Reply, TestServer, get, pattern, read, require_program, scratch,
};
use crate::tauri::{Keys, LIMIT, blocking};

const BETA_FILE: &str = "App-2.0.0-beta.1.AppImage";
const PUBLIC_FILE: &str = "App-1.1.0.AppImage";
const TAGGED_FILE: &str = "App-2.0.0-beta.0.AppImage";
const ACME_FILE: &str = "App-1.4.0.AppImage";
/// electron-updater's feed of the beta channel, for a Linux app at 1.0.0.
const BETA_FEED: &str = "/update/linux/x64/1.0.0/beta-linux.yml";
/// `access.url_ttl` of these tests; URLs are signed until the end of the window (an eighth
/// of it) plus this.
const URL_TTL: Duration = Duration::from_secs(3600);
const WINDOW: Duration = Duration::from_secs(450);

/// A random secret of 32 hex digits.
fn secret() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// The tokens and key of one test.
struct Keyring {
    alice: String,
    bob: String,
    acme: String,
    key: String,
}

impl Keyring {
    fn new() -> Self {
        Self {
            alice: secret(),
            bob: secret(),
            acme: secret(),
            key: secret(),
        }
    }

    /// `RELEASE_EDGE_ACCESS_TOKENS` with every token.
    fn tokens(&self) -> String {
        format!(
            "beta:alice:{},beta:bob:{},acme:acme-it:{}",
            self.alice, self.bob, self.acme
        )
    }

    /// The secrets of `fx` with `tokens` and `keys` (`RELEASE_EDGE_URL_SIGNING_KEY`).
    fn secrets(&self, fx: &Fixture, tokens: &str, keys: &str) -> Secrets {
        Secrets {
            access_tokens: Some(SecretString::from(tokens.to_owned())),
            url_signing_key: Some(SecretString::from(keys.to_owned())),
            ..fx.secrets()
        }
    }
}

/// `beta` and `acme` private, URLs valid an hour.
fn private_config(config: &mut Config) {
    config.access.private_channels = vec!["beta".into(), "acme".into()];
    config.access.url_ttl = URL_TTL;
}

/// A store with: 1.1.0 on `latest` (and on `beta` too: public), 2.0.0-beta.1 on `beta`
/// only (private), 2.0.0-beta.0 uploaded without a channel file (private by its tag), 1.4.0
/// on `acme` only (private, a stray `builder-debug.yml` beside it naming no live channel).
fn store() -> Fixture {
    let beta = pattern(300_000);
    let public = pattern(200_000);
    let acme = pattern(100_000);
    let mut fx = Fixture::new()
        .release(
            "2.0.0-beta.1",
            "beta-linux.yml",
            &[(BETA_FILE, &beta)],
            true,
        )
        .release("1.1.0", "latest-linux.yml", &[(PUBLIC_FILE, &public)], true)
        .release("1.1.0", "beta-linux.yml", &[(PUBLIC_FILE, &public)], false)
        .file(
            &format!("releases/v2.0.0-beta.0/{TAGGED_FILE}"),
            pattern(5000),
        )
        .release("1.4.0", "acme-linux.yml", &[(ACME_FILE, &acme)], true)
        .file("releases/v1.4.0/builder-debug.yml", "x: 1\n");
    private_config(&mut fx.config);
    fx
}

/// The router over `fx` with `keyring`'s tokens and key, on `clock`.
fn router_on(fx: &Fixture, keyring: &Keyring, clock: &Clock) -> axum::Router {
    let secrets = keyring.secrets(fx, &keyring.tokens(), &keyring.key);
    let state = App::build_with_clock(fx.config.clone(), secrets, clock.clone()).expect("state");
    release_edge::app(state)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The path and query of a URL the server wrote (`http://127.0.0.1:8080/releases/...`).
fn local(url: &str) -> &str {
    url.strip_prefix("http://127.0.0.1:8080")
        .unwrap_or_else(|| panic!("{url} is not under the public URL"))
}

/// The error code of a JSON error reply, after checking it is one and carries nothing of an
/// object.
fn error_code(reply: &Reply) -> String {
    assert_eq!(
        reply.header("content-type"),
        "application/json",
        "{reply:?}"
    );
    assert_eq!(reply.header("cache-control"), "no-store");
    assert!(reply.headers.get("content-range").is_none());
    assert!(reply.headers.get("etag").is_none());
    reply.json()["error"]
        .as_str()
        .expect("an error code")
        .to_owned()
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {}",
            self.status,
            self.headers,
            String::from_utf8_lossy(&self.body[..self.body.len().min(400)])
        )
    }
}

/// The first file URL of a YAML feed reply.
fn yaml_url(reply: &Reply) -> String {
    reply.yaml()["files"][0]["url"]
        .as_str()
        .expect("files[0].url")
        .to_owned()
}

#[tokio::test]
async fn a_private_channels_feeds_and_latest_need_one_of_its_tokens() {
    let keyring = Keyring::new();
    let fx = store().file(
        "releases/latest/RELEASES-beta",
        "85F4D657F8424DD437D1B33CC4511EA7AD86B1A7 App-2.0.0-beta.1-full.nupkg 600752\n",
    );
    let router = router_on(&fx, &keyring, &Clock::manual());
    let feed = BETA_FEED;

    let none = get(&router, feed, &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&none), "token_required");
    assert_eq!(
        none.header("www-authenticate"),
        "Bearer realm=\"release-edge\""
    );
    assert!(none.json()["message"].as_str().unwrap().contains("beta"));

    let wrong = get(&router, feed, &[("authorization", &bearer(&secret()))]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&wrong), "invalid_token");
    let other = get(&router, feed, &[("authorization", &bearer(&keyring.acme))]).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&other), "token_not_for_channel");

    // Header and query give the same answer: the signed channel file, private.
    let by_header = get(&router, feed, &[("authorization", &bearer(&keyring.alice))]).await;
    let by_query = get(&router, &format!("{feed}?token={}", keyring.bob), &[]).await;
    for reply in [&by_header, &by_query] {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("cache-control"), "private, max-age=300");
        let url = yaml_url(reply);
        assert!(
            url.starts_with(&format!(
                "http://127.0.0.1:8080/releases/v2.0.0-beta.1/{BETA_FILE}?sig="
            )),
            "{url}"
        );
        assert_eq!(reply.yaml()["path"].as_str(), Some(url.as_str()));
    }
    assert_eq!(by_header.body, by_query.body);
    assert_eq!(by_header.header("etag"), by_query.header("etag"));
    // The signed URL downloads with no header.
    let url = yaml_url(&by_header);
    let download = get(&router, local(&url), &[]).await;
    assert_eq!(download.status, 200, "{download:?}");
    assert!(download.body[..] == pattern(300_000)[..]);

    // The JSON protocol and RELEASES-style routes: the same rule, the same signing.
    let json = get(
        &router,
        "/update/linux/x64/1.0.0?channel=beta",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(json.status, StatusCode::UNAUTHORIZED);
    let json = get(
        &router,
        &format!(
            "/update/linux/x64/1.0.0?channel=beta&token={}",
            keyring.alice
        ),
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(json.status, 200, "{json:?}");
    assert_eq!(json.header("cache-control"), "private, max-age=300");
    let url = json.json()["url"].as_str().unwrap().to_owned();
    assert!(
        url.contains(&format!("/releases/v2.0.0-beta.1/{BETA_FILE}?sig=")),
        "{url}"
    );
    assert_eq!(get(&router, local(&url), &[]).await.status, 200);
    let releases = get(
        &router,
        "/update/win32/x64/1.0.0/RELEASES?channel=beta",
        &[],
    )
    .await;
    assert_eq!(releases.status, StatusCode::UNAUTHORIZED);
    let releases = get(
        &router,
        &format!(
            "/update/win32/x64/1.0.0/RELEASES?channel=beta&token={}",
            keyring.bob
        ),
        &[],
    )
    .await;
    assert_eq!(releases.status, 200, "{releases:?}");
    assert_eq!(releases.header("cache-control"), "private, max-age=300");
    let line = String::from_utf8_lossy(&releases.body).into_owned();
    let package = "http://127.0.0.1:8080/releases/v2.0.0-beta.1/App-2.0.0-beta.1-full.nupkg?sig=";
    assert!(
        line.starts_with(&format!(
            "85F4D657F8424DD437D1B33CC4511EA7AD86B1A7 {package}"
        )) && line.ends_with(" 600752\n"),
        "{line}"
    );

    // `/latest`: a signed URL, never stored by any cache.
    let latest = get(&router, "/latest/linux/x64?channel=beta", &[]).await;
    assert_eq!(latest.status, StatusCode::UNAUTHORIZED);
    let latest = get(
        &router,
        &format!("/latest/linux/x64?channel=beta&token={}", keyring.alice),
        &[],
    )
    .await;
    assert_eq!(latest.status, StatusCode::FOUND, "{latest:?}");
    assert_eq!(latest.header("cache-control"), "no-store");
    let location = latest.header("location").to_owned();
    assert!(
        location.contains(&format!("{BETA_FILE}?sig=")),
        "{location}"
    );
    assert_eq!(get(&router, local(&location), &[]).await.status, 200);

    // The public channel is as before: no token, shareable, plain URLs.
    let public = get(&router, "/update/linux/x64/1.0.0/latest-linux.yml", &[]).await;
    assert_eq!(public.status, 200);
    assert!(
        public
            .header("cache-control")
            .starts_with("public, max-age=300")
    );
    assert_eq!(
        yaml_url(&public),
        format!("http://127.0.0.1:8080/releases/v1.1.0/{PUBLIC_FILE}")
    );
    let latest = get(&router, "/latest/linux/x64", &[]).await;
    assert_eq!(latest.status, StatusCode::FOUND);
    assert!(!latest.header("location").contains("sig="));
}

#[tokio::test]
async fn private_objects_open_to_a_token_of_their_channel_or_a_signed_url_only() {
    let keyring = Keyring::new();
    let fx = store();
    let router = router_on(&fx, &keyring, &Clock::manual());
    let alice = bearer(&keyring.alice);
    let acme = bearer(&keyring.acme);
    for (path, private, opens) in [
        // A beta-only version, and one with no channel file whose tag says beta.
        (format!("/releases/v2.0.0-beta.1/{BETA_FILE}"), true, &alice),
        (
            format!("/releases/v2.0.0-beta.0/{TAGGED_FILE}"),
            true,
            &alice,
        ),
        // Published to latest and beta: public.
        (format!("/releases/v1.1.0/{PUBLIC_FILE}"), false, &alice),
        ("/releases/v1.1.0/beta-linux.yml".to_owned(), false, &alice),
        // acme only (the stray builder-debug.yml names no live channel).
        (format!("/releases/v1.4.0/{ACME_FILE}"), true, &acme),
        ("/releases/v1.4.0/builder-debug.yml".to_owned(), true, &acme),
        // Channel files read straight from the bucket layout.
        ("/releases/latest/beta-linux.yml".to_owned(), true, &alice),
        ("/releases/latest/acme-linux.yml".to_owned(), true, &acme),
        (
            "/releases/latest/latest-linux.yml".to_owned(),
            false,
            &alice,
        ),
    ] {
        let anonymous = get(&router, &path, &[]).await;
        if !private {
            assert_eq!(anonymous.status, 200, "{path}: {anonymous:?}");
            assert!(
                anonymous.header("cache-control").starts_with("public"),
                "{path}"
            );
            continue;
        }
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{path}: {anonymous:?}"
        );
        assert_eq!(error_code(&anonymous), "token_required");
        let head = crate::support::request(&router, "HEAD", &path, &[]).await;
        assert_eq!(head.status, StatusCode::UNAUTHORIZED, "HEAD {path}");
        assert!(
            head.headers
                .get("content-length")
                .is_none_or(|l| l != "0" || head.body.is_empty())
        );
        let granted = get(&router, &path, &[("authorization", opens)]).await;
        assert_eq!(granted.status, 200, "{path}: {granted:?}");
        let file = fx.root().join(path.trim_start_matches('/'));
        assert!(
            granted.body[..] == read(&file)[..],
            "{path}: the object's bytes"
        );
        let cache = granted.header("cache-control");
        assert!(cache.starts_with("private"), "{path}: {cache}");
        // A token of the other private channel does not open it.
        let other = if opens == &alice { &acme } else { &alice };
        let refused = get(&router, &path, &[("authorization", other)]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(error_code(&refused), "token_not_for_channel");
    }
    assert_eq!(
        get(
            &router,
            &format!("/releases/v2.0.0-beta.1/{BETA_FILE}"),
            &[("authorization", "Basic YTpi")]
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED,
        "a scheme other than Bearer is no token"
    );
    // A version that does not exist, tagged beta: refused, not a 404 to probe with.
    let ghost = get(&router, "/releases/v9.0.0-beta.1/App.AppImage", &[]).await;
    assert_eq!(ghost.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signed_urls_expire_and_open_only_their_object() {
    let keyring = Keyring::new();
    let clock = Clock::manual();
    let beta = pattern(300_000);
    let mut fx = store().file(
        &format!("releases/v2.0.0-beta.1/{BETA_FILE}.sig"),
        "signature text",
    );
    private_config(&mut fx.config);
    let router = router_on(&fx, &keyring, &clock);
    let feed = format!("{BETA_FEED}?token={}", keyring.alice);
    let signed = yaml_url(&get(&router, &feed, &[]).await);
    let path = local(&signed).to_owned();
    let (object, sig) = path.split_once("?sig=").expect("signed");
    let (expires, mac) = sig.split_once('.').expect("expires.mac");
    let expires: u64 = expires.parse().expect("unix time");
    let now = clock
        .system_time()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lives = expires - now;
    assert!(
        (URL_TTL.as_secs()..=URL_TTL.as_secs() + WINDOW.as_secs()).contains(&lives),
        "valid for {lives} s"
    );

    // Ranges, a resume, several ranges: all within the window.
    let whole = get(&router, &path, &[]).await;
    assert_eq!(whole.status, 200);
    assert!(whole.body[..] == beta[..]);
    let range = get(&router, &path, &[("range", "bytes=1000-1999")]).await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT);
    assert!(range.body[..] == beta[1000..2000]);
    let resume = get(&router, &path, &[("range", "bytes=250000-")]).await;
    assert_eq!(resume.header("content-range"), "bytes 250000-299999/300000");
    assert!(resume.body[..] == beta[250_000..]);
    let multi = get(&router, &path, &[("range", "bytes=0-9, 100-109")]).await;
    assert_eq!(multi.status, StatusCode::PARTIAL_CONTENT);
    assert!(
        multi
            .header("content-type")
            .starts_with("multipart/byteranges")
    );

    // Each refusal below counts against the address; a right token in between forgets them
    // (the slowdown has its own test).
    let forgive = || async {
        let object = format!("/releases/v2.0.0-beta.1/{BETA_FILE}");
        let reply = get(
            &router,
            &object,
            &[
                ("authorization", &bearer(&keyring.alice)),
                ("range", "bytes=0-0"),
            ],
        )
        .await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
    };
    // The signature opens its object only: not its .sig beside it, not another version.
    for other in [
        format!("/releases/v2.0.0-beta.1/{BETA_FILE}.sig?sig={sig}"),
        format!("/releases/v2.0.0-beta.0/{TAGGED_FILE}?sig={sig}"),
    ] {
        let reply = get(&router, &other, &[]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{other}");
        assert_eq!(error_code(&reply), "invalid_signature");
        forgive().await;
    }
    // Tampered: another expiry, a changed MAC, garbage. Nothing of the object is sent.
    let mut flipped: Vec<char> = mac.chars().collect();
    flipped[5] = if flipped[5] == 'A' { 'B' } else { 'A' };
    let flipped: String = flipped.into_iter().collect();
    for tampered in [
        format!("{object}?sig={}.{mac}", expires + 86_400),
        format!("{object}?sig={expires}.{flipped}"),
        format!("{object}?sig=garbage"),
    ] {
        for headers in [&[][..], &[("range", "bytes=0-99")][..]] {
            let reply = get(&router, &tampered, headers).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{tampered}");
            assert_eq!(error_code(&reply), "invalid_signature");
            assert!(reply.body.len() < 400 && !reply.body.windows(16).any(|w| w == &beta[..16]));
            forgive().await;
        }
    }

    // Expired: just before the expiry it opens, at it it does not.
    clock.advance(Duration::from_secs(lives - 1));
    assert_eq!(
        get(&router, &path, &[("range", "bytes=0-0")]).await.status,
        206
    );
    clock.advance(Duration::from_secs(1));
    let expired = get(&router, &path, &[]).await;
    assert_eq!(expired.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&expired), "signature_expired");
    // The feed hands out a new one, which opens.
    let fresh = yaml_url(&get(&router, &feed, &[]).await);
    assert_ne!(fresh, signed);
    assert_eq!(get(&router, local(&fresh), &[]).await.status, 200);
}

#[tokio::test]
async fn a_feed_is_signed_once_per_window_and_keeps_its_etag_within_it() {
    let keyring = Keyring::new();
    let clock = Clock::manual();
    let fx = store();
    let router = router_on(&fx, &keyring, &clock);
    let feed = format!("{BETA_FEED}?token={}", keyring.alice);
    let first = get(&router, &feed, &[]).await;
    let etag = first.header("etag").to_owned();
    // Later in the same window: the same bytes, and a 304 for the client that has them.
    let now = clock
        .system_time()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = WINDOW.as_secs() - now % WINDOW.as_secs();
    clock.advance(Duration::from_secs(left - 1));
    let again = get(&router, &feed, &[]).await;
    assert_eq!(again.body, first.body);
    let revalidated = get(&router, &feed, &[("if-none-match", &etag)]).await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    // The next window: new expiries, a new ETag.
    clock.advance(Duration::from_secs(1));
    let next = get(&router, &feed, &[]).await;
    assert_ne!(next.header("etag"), etag);
    assert_ne!(yaml_url(&next), yaml_url(&first));
}

#[tokio::test]
async fn a_revoked_token_and_a_retired_key_stop_working() {
    let keyring = Keyring::new();
    let fx = store();
    let clock = Clock::manual();
    let feed = BETA_FEED;
    let object = format!("/releases/v2.0.0-beta.1/{BETA_FILE}");
    let before = router_on(&fx, &keyring, &clock);
    let signed_before =
        yaml_url(&get(&before, feed, &[("authorization", &bearer(&keyring.alice))]).await);

    // alice's token revoked (removed from the variable, the server restarted); bob's stays.
    let new_key = secret();
    let revoked = App::build_with_clock(
        fx.config.clone(),
        keyring.secrets(
            &fx,
            &format!("beta:bob:{}", keyring.bob),
            &format!("{new_key},{}", keyring.key),
        ),
        clock.clone(),
    )
    .expect("state");
    let after = release_edge::app(revoked);
    for path in [feed, object.as_str()] {
        let reply = get(&after, path, &[("authorization", &bearer(&keyring.alice))]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(error_code(&reply), "invalid_token");
        let reply = get(&after, path, &[("authorization", &bearer(&keyring.bob))]).await;
        assert_eq!(reply.status, 200, "{path}");
    }
    // The key rotated (new first, old second): URLs signed before still open until they
    // expire; new ones are signed with the new key.
    assert_eq!(get(&after, local(&signed_before), &[]).await.status, 200);
    let signed_after =
        yaml_url(&get(&after, feed, &[("authorization", &bearer(&keyring.bob))]).await);
    assert_ne!(signed_after, signed_before);
    assert_eq!(get(&after, local(&signed_after), &[]).await.status, 200);
    assert_eq!(
        get(&before, local(&signed_after), &[]).await.status,
        StatusCode::FORBIDDEN,
        "the old node does not know the new key"
    );
    // The old key retired: its URLs are refused.
    let retired = App::build_with_clock(
        fx.config.clone(),
        keyring.secrets(&fx, &keyring.tokens(), &new_key),
        clock.clone(),
    )
    .expect("state");
    let retired = release_edge::app(retired);
    let reply = get(&retired, local(&signed_before), &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&reply), "invalid_signature");
    assert_eq!(get(&retired, local(&signed_after), &[]).await.status, 200);
}

#[tokio::test]
async fn wrong_tokens_and_forged_signatures_slow_their_address_down() {
    let keyring = Keyring::new();
    let clock = Clock::manual();
    let fx = store();
    let router = router_on(&fx, &keyring, &clock);
    let feed = BETA_FEED;
    let object = format!("/releases/v2.0.0-beta.1/{BETA_FILE}");
    // Five wrong credentials are free (tokens on the feed, forged signatures on the object).
    for i in 0..5 {
        let reply = if i % 2 == 0 {
            get(&router, feed, &[("authorization", &bearer(&secret()))]).await
        } else {
            get(&router, &format!("{object}?sig=1.{}", "A".repeat(43)), &[]).await
        };
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "attempt {i}");
    }
    // Missing credentials and a public channel are not failures, nor slowed.
    assert_eq!(
        get(&router, feed, &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&router, "/update/linux/x64/1.0.0/latest-linux.yml", &[])
            .await
            .status,
        200
    );
    let sixth = get(&router, feed, &[("authorization", &bearer(&secret()))]).await;
    assert_eq!(sixth.status, StatusCode::FORBIDDEN);
    // Now even the right token waits: it is not compared before the wait is over.
    let waiting = get(&router, feed, &[("authorization", &bearer(&keyring.alice))]).await;
    assert_eq!(waiting.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&waiting), "too_many_attempts");
    assert_eq!(waiting.header("retry-after"), "1");
    assert_eq!(
        get(&router, "/update/linux/x64/1.0.0/latest-linux.yml", &[])
            .await
            .status,
        200,
        "the public channel is not held back"
    );
    clock.advance(Duration::from_secs(1));
    let admitted = get(&router, feed, &[("authorization", &bearer(&keyring.alice))]).await;
    assert_eq!(admitted.status, 200);
    // The right token forgot the failures: the next wrong one is free again.
    let wrong = get(&router, feed, &[("authorization", &bearer(&secret()))]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&router, feed, &[("authorization", &bearer(&keyring.alice))])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_bad_access_setup_is_refused_at_start_without_printing_a_token() {
    let keyring = Keyring::new();
    let fx = store();
    let build = |tokens: Option<&str>, key: Option<&str>| {
        let secrets = Secrets {
            access_tokens: tokens.map(|t| SecretString::from(t.to_owned())),
            url_signing_key: key.map(|k| SecretString::from(k.to_owned())),
            ..fx.secrets()
        };
        App::build(fx.config.clone(), secrets)
            .err()
            .map(|e| format!("{e:#}"))
    };
    let tokens = keyring.tokens();
    for (tokens, key, expect) in [
        (
            Some(tokens.as_str()),
            None,
            "RELEASE_EDGE_URL_SIGNING_KEY is required",
        ),
        (Some(tokens.as_str()), Some("too-short"), "key 1 is 9 bytes"),
        (
            Some(&*format!("latest:alice:{}", keyring.alice)),
            Some(keyring.key.as_str()),
            "latest:alice is for channel latest, which is not in access.private_channels",
        ),
        (
            Some(&*format!("beta-{}", keyring.alice)),
            Some(keyring.key.as_str()),
            "entry 1 is not `channel:name:token`",
        ),
    ] {
        let err = build(tokens, key).unwrap_or_else(|| panic!("{expect}: accepted"));
        assert!(err.contains(expect), "{err}");
        assert!(
            !err.contains(&keyring.alice) && !err.contains(&keyring.key),
            "{err}"
        );
    }
    assert_eq!(build(Some(&keyring.tokens()), Some(&keyring.key)), None);
}

#[test]
fn tokens_never_reach_the_log_and_their_holders_do() {
    let keyring = Keyring::new();
    let fx = store();
    let server = BinaryServer::spawn(
        fx.root(),
        &[
            (
                "RELEASE_EDGE_ACCESS__PRIVATE_CHANNELS",
                "[\"beta\", \"acme\"]",
            ),
            ("RELEASE_EDGE_ACCESS_TOKENS", &keyring.tokens()),
            ("RELEASE_EDGE_URL_SIGNING_KEY", &keyring.key),
        ],
    );
    let client = reqwest::blocking::Client::new();
    let feed = server.url(&format!("{BETA_FEED}?token={}", keyring.alice));
    let reply = client.get(&feed).send().expect("feed");
    assert_eq!(reply.status(), 200);
    let body = reply.text().expect("body");
    let yaml: serde_norway::Value = serde_norway::from_str(&body).expect("yaml");
    let url = yaml["files"][0]["url"].as_str().expect("url").to_owned();
    let sig = url.split_once("?sig=").expect("signed").1.to_owned();
    let object = server.url(&format!("/releases/v2.0.0-beta.1/{BETA_FILE}?sig={sig}"));
    assert_eq!(client.get(&object).send().expect("object").status(), 200);
    let wrong = client
        .get(server.url(BETA_FEED))
        .bearer_auth(&keyring.bob)
        .send()
        .expect("feed");
    assert_eq!(wrong.status(), 200);

    // The log: wait for the three request lines.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = server.logged("request");
        if lines.len() >= 3 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let all = lines.iter().map(Value::to_string).collect::<String>();
    for secret in [&keyring.alice, &keyring.bob, &keyring.key] {
        assert!(!all.contains(secret.as_str()), "a secret in the log: {all}");
    }
    assert!(
        !all.contains(&sig),
        "a signed URL's signature in the log: {all}"
    );
    assert!(
        all.contains("token=REDACTED") && all.contains("sig=REDACTED"),
        "{all}"
    );
    assert!(
        all.contains("beta:alice") && all.contains("beta:bob") && all.contains("signed-url"),
        "{all}"
    );
}

// ---- real clients over TCP ----------------------------------------------------------

/// A server over `fx` on a free port (public_url pointing at it), with `tokens` and the
/// keyring's key, on `clock`.
async fn serve(fx: &mut Fixture, keyring: &Keyring, tokens: &str, clock: &Clock) -> TestServer {
    crate::support::on_free_port(&mut fx.config);
    private_config(&mut fx.config);
    let secrets = keyring.secrets(fx, tokens, &keyring.key);
    let state = App::build_with_clock(fx.config.clone(), secrets, clock.clone()).expect("state");
    TestServer::serve(state).await
}

/// The first artifact URL (signed) of `server`'s `beta-linux.yml`, asked for with `token`.
pub(crate) async fn beta_url(server: &TestServer, token: &str) -> String {
    let body = reqwest::Client::new()
        .get(server.url(BETA_FEED))
        .bearer_auth(token)
        .send()
        .await
        .expect("feed")
        .text()
        .await
        .expect("body");
    let yaml: serde_norway::Value = serde_norway::from_str(&body).expect("yaml");
    yaml["files"][0]["url"].as_str().expect("url").to_owned()
}

/// A beta release of two AppImages (1.0.0 running, 2.0.0-beta.1 offered on `beta` only).
fn beta_store(
    old: &Artifact,
    new: &Artifact,
    old_name: &str,
    new_name: &str,
    feed_file: &str,
) -> Fixture {
    let feed = builder_yml("2.0.0-beta.1", new_name, &new.info);
    let mut fx = Fixture::new()
        .file(&format!("releases/latest/{feed_file}"), &feed)
        .file(&format!("releases/v2.0.0-beta.1/{feed_file}"), &feed)
        .file(&format!("releases/v2.0.0-beta.1/{new_name}"), &new.bytes)
        .file(&format!("releases/v1.0.0/{old_name}"), &old.bytes);
    for (version, name, artifact) in [("1.0.0", old_name, old), ("2.0.0-beta.1", new_name, new)] {
        if let Some(map) = &artifact.blockmap {
            fx = fx.file(&format!("releases/v{version}/{name}.blockmap"), map);
        }
    }
    fx.config.access.private_channels = vec!["beta".into()];
    fx
}

/// Runs electron-updater (`updater`: appimage or nsis) at 1.0.0 on the beta channel.
async fn electron_updater(
    server: &TestServer,
    updater: &str,
    feed: &str,
    old: (&str, &[u8]),
    headers: Option<Value>,
    differential: bool,
) -> (crate::electron_updater::NodeRun, tempfile::TempDir) {
    let client = scratch();
    let old_file = client.path().join(old.0);
    std::fs::write(&old_file, old.1).expect("the running app");
    let mut config = serde_json::json!({
        "updater": updater,
        "feedUrl": server.url(feed),
        "channel": "beta",
        "version": "1.0.0",
        "workDir": client.path(),
        "oldFile": old_file,
        "differential": differential,
        "expectVersion": "2.0.0-beta.1",
    });
    if let Some(headers) = headers {
        config["requestHeaders"] = headers;
    }
    (harness(&["update", &config.to_string()]).await, client)
}

fn auth_header(token: &str) -> Option<Value> {
    Some(serde_json::json!({ "Authorization": format!("Bearer {token}") }))
}

/// The requests of a harness run to `/releases/*`.
fn release_exchanges(result: &Value) -> Vec<&Value> {
    result["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/releases/"))
        })
        .collect()
}

/// An electron-updater run whose check the server refused with `status`: a clean failure
/// naming it, and no request for an artifact.
fn refused(run: &crate::electron_updater::NodeRun, status: &str) {
    let result = run.json();
    assert!(!run.success && result["ok"] == false, "{result:#}");
    let message = result["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(status), "{status} in {message}");
    assert!(release_exchanges(&result).is_empty(), "{result:#}");
}

/// electron-updater from a private channel: the full download with the token in
/// `requestHeaders` (electron-updater sends it with the feed request and every download);
/// without a token, and with a revoked one, a clean failure naming the status, nothing
/// downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electron_updater_updates_from_a_private_channel_and_fails_cleanly_without_a_token() {
    require_client();
    const OLD: &str = "Sample-App-1.0.0.AppImage";
    const NEW: &str = "Sample-App-2.0.0-beta.1.AppImage";
    let (old, new) =
        build_appimages(&random_bytes(61, 1024 * 1024), &random_bytes(62, 1_500_000)).await;
    let keyring = Keyring::new();
    let mut fx = beta_store(&old, &new, OLD, NEW, "beta-linux.yml");
    let both = format!("beta:alice:{},beta:bob:{}", keyring.alice, keyring.bob);
    let server = serve(&mut fx, &keyring, &both, &Clock::system()).await;
    let feed = "/update/linux/x64/1.0.0";

    let (run, client) = electron_updater(
        &server,
        "appimage",
        feed,
        (OLD, &old.bytes),
        auth_header(&keyring.alice),
        false,
    )
    .await;
    let result = update_succeeded(&run, client.path(), (NEW, &new.bytes), false);
    let artifact = release_exchanges(&result);
    assert!(
        !artifact.is_empty()
            && artifact.iter().all(|e| {
                e["status"] == 200
                    && e["path"].as_str().is_some_and(|p| {
                        p.starts_with(&format!("/releases/v2.0.0-beta.1/{NEW}?sig="))
                    })
            }),
        "the signed URL of the feed, downloaded: {artifact:#?}"
    );

    // No token: the check fails with the server's 401, nothing is downloaded.
    let (run, _client) =
        electron_updater(&server, "appimage", feed, (OLD, &old.bytes), None, false).await;
    refused(&run, "401");

    // bob's token revoked (the server restarted without it): 403.
    drop(server);
    let server = serve(
        &mut fx,
        &keyring,
        &format!("beta:alice:{}", keyring.alice),
        &Clock::system(),
    )
    .await;
    let (run, _client) = electron_updater(
        &server,
        "appimage",
        feed,
        (OLD, &old.bytes),
        auth_header(&keyring.bob),
        false,
    )
    .await;
    refused(&run, "403");
}

/// electron-updater's differential downloads from a private channel: the AppImage's
/// embedded block map with the token in the feed URL (`?token=`, which electron-updater
/// carries to every artifact URL), and NSIS's separate block maps with the token in
/// `requestHeaders` (the old block map's URL is derived from the new artifact's: the token
/// opens it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electron_updater_downloads_differentially_from_a_private_channel() {
    require_client();
    let keyring = Keyring::new();
    let tokens = format!("beta:alice:{}", keyring.alice);
    let (old_raw, new_raw, changed) = changed_content();

    const OLD: &str = "Sample-App-1.0.0.AppImage";
    const NEW: &str = "Sample-App-2.0.0-beta.1.AppImage";
    let (old, new) = build_appimages(&old_raw, &new_raw).await;
    let mut fx = beta_store(&old, &new, OLD, NEW, "beta-linux.yml");
    let server = serve(&mut fx, &keyring, &tokens, &Clock::system()).await;
    let feed = format!("/update/linux/x64/1.0.0?token={}", keyring.alice);
    let (run, client) =
        electron_updater(&server, "appimage", &feed, (OLD, &old.bytes), None, true).await;
    assert_differential(&run, client.path(), NEW, &new, changed);

    const OLD_EXE: &str = "Sample-App-Setup-1.0.0.exe";
    const NEW_EXE: &str = "Sample-App-Setup-2.0.0-beta.1.exe";
    let old = artifact(OLD_EXE, &old_raw, BlockMap::Separate).await;
    let new = artifact(NEW_EXE, &new_raw, BlockMap::Separate).await;
    let mut fx = beta_store(&old, &new, OLD_EXE, NEW_EXE, "beta.yml");
    let server = serve(&mut fx, &keyring, &tokens, &Clock::system()).await;
    let (run, client) = electron_updater(
        &server,
        "nsis",
        "/update/win32/x64/1.0.0",
        (OLD_EXE, &old.bytes),
        auth_header(&keyring.alice),
        true,
    )
    .await;
    let result = assert_differential(&run, client.path(), NEW_EXE, &new, changed);
    let maps: Vec<&str> = release_exchanges(&result)
        .into_iter()
        .filter(|e| e["status"] == 200)
        .filter_map(|e| e["path"].as_str())
        .filter(|p| p.contains(".blockmap"))
        .collect();
    assert_eq!(maps.len(), 2, "both block maps: {result:#}");
}

/// A differential download that succeeded, rebuilt byte for byte, with only a fraction
/// sent and the changed blocks in `multipart/byteranges`.
fn assert_differential(
    run: &crate::electron_updater::NodeRun,
    client: &std::path::Path,
    name: &str,
    new: &Artifact,
    changed: usize,
) -> Value {
    let result = update_succeeded(run, client, (name, &new.bytes), true);
    let sent: u64 = release_exchanges(&result)
        .iter()
        .filter(|e| e["path"].as_str().is_some_and(|p| !p.contains(".blockmap")))
        .filter_map(|e| e["bytes"].as_u64())
        .sum();
    assert!(
        sent >= changed as u64 && sent < new.info.size / 4,
        "{sent} bytes for a differential download of {}",
        new.info.size
    );
    assert!(
        release_exchanges(&result).iter().any(|e| e["status"] == 206
            && e["contentType"]
                .as_str()
                .is_some_and(|c| c.starts_with("multipart/byteranges"))),
        "{result:#}"
    );
    result
}

/// The Tauri client (cargo-packager-updater) from a private channel: the token in the
/// endpoint's query, the download from the signed URL of the answer with no header; the
/// token as a header instead; without a token and with a revoked one, the check fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tauri_client_updates_from_a_private_channel_with_a_signed_url() {
    const NAME: &str = "App-2.0.0-beta.1.AppImage";
    let keys = Keys::new();
    let bytes = pattern(150_000 + 3);
    let mut fx = Fixture::new()
        .release("2.0.0-beta.1", "beta-linux.yml", &[(NAME, &bytes)], true)
        .file(
            &format!("releases/v2.0.0-beta.1/{NAME}.sig"),
            keys.sign(NAME, &bytes),
        );
    let keyring = Keyring::new();
    let server = serve(
        &mut fx,
        &keyring,
        &format!("beta:alice:{}", keyring.alice),
        &Clock::system(),
    )
    .await;
    let endpoint = |query: &str| {
        format!(
            "{}/update/{{{{target}}}}/{{{{arch}}}}/{{{{current_version}}}}?channel=beta{query}",
            server.url("")
        )
    };
    let check = |endpoint: String, token: Option<String>| {
        let pubkey = keys.pubkey();
        blocking(move || {
            let config = cargo_packager_updater::Config {
                endpoints: vec![endpoint.parse().expect("endpoint")],
                pubkey,
                ..Default::default()
            };
            let exe = std::env::temp_dir().join("release-edge-private-not-installed.AppImage");
            let mut builder = cargo_packager_updater::UpdaterBuilder::new(
                "1.0.0".parse().expect("semver"),
                config,
            )
            .target("linux")
            .executable_path(exe)
            .timeout(LIMIT);
            if let Some(token) = token {
                builder = builder
                    .header("Authorization", format!("Bearer {token}"))
                    .expect("header");
            }
            let update = builder.build().expect("updater").check()?;
            let update = update.expect("an update from 1.0.0");
            let downloaded = update.download()?;
            Ok::<_, cargo_packager_updater::Error>((update.download_url.to_string(), downloaded))
        })
    };
    let (url, downloaded) = check(endpoint(&format!("&token={}", keyring.alice)), None)
        .await
        .expect("check, download, verify with the token in the query");
    assert!(
        url.contains(&format!("/releases/v2.0.0-beta.1/{NAME}?sig=")),
        "{url}"
    );
    assert!(downloaded == bytes, "the beta, verified");
    let (_, downloaded) = check(endpoint(""), Some(keyring.alice.clone()))
        .await
        .expect("with the token as a header");
    assert!(downloaded == bytes);

    let route = "/update/{platform}/{arch}/{version}";
    let refused = |status: &str| {
        server
            .state
            .metrics
            .http_requests
            .with_label_values(&[route, "GET", status])
            .get()
    };
    assert!(check(endpoint(""), None).await.is_err(), "no token");
    assert_eq!(refused("401"), 1);
    assert!(
        check(endpoint(&format!("&token={}", keyring.bob)), None)
            .await
            .is_err(),
        "a token not (or no longer) in RELEASE_EDGE_ACCESS_TOKENS"
    );
    assert_eq!(refused("403"), 1);
}

/// `curl -C -` resumes a download of a private artifact from its signed URL; once the URL
/// expired the resume is refused and the partial file is left as it was; a fresh URL from
/// the feed resumes it. aria2c fetches the signed URL in eight segments. Without a
/// signature, or with a revoked token, both fail and write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_aria2c_download_a_private_artifact_from_its_signed_url() {
    require_program("curl");
    require_program("aria2c");
    const NAME: &str = "App-2.0.0-beta.1.AppImage";
    const LEN: usize = 12 * 1024 * 1024 + 321;
    let data = pattern(LEN);
    let mut fx = Fixture::new().release("2.0.0-beta.1", "beta-linux.yml", &[(NAME, &data)], true);
    let keyring = Keyring::new();
    let clock = Clock::manual();
    let server = serve(
        &mut fx,
        &keyring,
        &format!("beta:alice:{}", keyring.alice),
        &clock,
    )
    .await;
    let signed_url = || beta_url(&server, &keyring.alice);
    let url = signed_url().await;
    let dir = scratch();
    let out = dir.path().join(NAME);

    // A first, slow attempt, interrupted part-way.
    interrupted_curl(&out, &url).await;
    let partial = read(&out).len();
    assert!(partial > 0 && partial < LEN);

    let resume = |url: String| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-g", "--fail", "-C", "-", "-o"])
            .arg(&out)
            .args(["-w", "%{http_code} %{size_download}"])
            .arg(url);
        run(cmd, Duration::from_secs(30))
    };
    // The URL expired meanwhile (the laptop slept): refused, the partial file untouched.
    clock.advance(URL_TTL + WINDOW);
    let refused = resume(url.clone()).await;
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stdout).starts_with("403"),
        "{}",
        describe(&refused)
    );
    assert_eq!(
        read(&out).len(),
        partial,
        "nothing of the object was written"
    );
    // A fresh URL from the feed resumes where it stopped.
    let fresh = signed_url().await;
    assert_ne!(fresh, url);
    let resumed = resume(fresh.clone()).await;
    assert!(resumed.status.success(), "{}", describe(&resumed));
    assert_eq!(
        String::from_utf8_lossy(&resumed.stdout),
        format!("206 {}", LEN - partial)
    );
    assert!(read(&out) == data, "the resumed file is the artifact");

    // aria2c: eight segments, all on the signed URL.
    let aria = |url: &str, name: &str| run(aria2c(dir.path(), name, url), Duration::from_secs(60));
    let partial_before = server
        .state
        .metrics
        .http_requests
        .with_label_values(&["/releases/{*path}", "GET", "206"])
        .get();
    let output = aria(&fresh, "segments.AppImage").await;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        read(dir.path().join("segments.AppImage")) == data,
        "aria2c's file"
    );
    let segments = server
        .state
        .metrics
        .http_requests
        .with_label_values(&["/releases/{*path}", "GET", "206"])
        .get()
        - partial_before;
    assert!(segments > 1, "{segments} range requests");

    // Without a signature, or with a revoked token instead (bob's, no longer in
    // RELEASE_EDGE_ACCESS_TOKENS: in the query, or as a header): refused, nothing written.
    let unsigned = fresh.split_once('?').expect("signed").0;
    let in_query = format!("{unsigned}?token={}", keyring.bob);
    let header = format!("Authorization: {}", bearer(&keyring.bob));
    let refusals = [
        (unsigned, None, "401"),
        (in_query.as_str(), None, "403"),
        (unsigned, Some(header.as_str()), "403"),
    ];
    for (i, (url, header, status)) in refusals.into_iter().enumerate() {
        let out = dir.path().join(format!("curl-refused-{i}"));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-g", "--fail", "-o"])
            .arg(&out)
            .args(["-w", "%{http_code}"]);
        if let Some(header) = header {
            cmd.args(["-H", header]);
        }
        cmd.arg(url);
        let output = run(cmd, Duration::from_secs(30)).await;
        assert!(!output.status.success(), "{}", describe(&output));
        assert_eq!(String::from_utf8_lossy(&output.stdout), status, "{url}");
        assert_eq!(file_len(&out), 0, "{url}");
    }
    for (i, (url, header, _)) in refusals.into_iter().enumerate() {
        let name = format!("aria2c-refused-{i}");
        let mut cmd = aria2c(dir.path(), &name, url);
        if let Some(header) = header {
            cmd.arg(format!("--header={header}"));
        }
        let output = run(cmd, Duration::from_secs(60)).await;
        assert!(!output.status.success(), "{}", describe(&output));
        assert_eq!(file_len(&dir.path().join(&name)), 0, "{url}");
    }
}
