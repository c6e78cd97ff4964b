//! A real Tauri-protocol client (cargo-packager-updater) against the JSON feed, with minisign signatures.
//!
//! The client is Tauri's updater logic as a standalone crate: it fills `{{target}}`,
//! `{{arch}}` and `{{current_version}}` into the endpoint, asks for JSON, takes `204` for
//! "up to date", parses the single-platform body, downloads `url` and verifies the minisign
//! signature (`signature` is the base64 of the `.sig` file text, `pubkey` the base64 of the
//! public key file text). Nothing is installed: only check, download and verify.
//!
//! The client is blocking (reqwest's blocking client), so it runs on a blocking thread while
//! the server runs on the test's runtime; every client step is bounded by [`LIMIT`].

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cargo_packager_updater::{
    Config as UpdaterConfig, Error, Update, UpdateFormat, UpdaterBuilder,
};
use sha2::{Digest, Sha512};

use crate::support::{Fixture, TestServer, on_free_port, pattern, read};

/// The longest any client step (check or download) may take.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);

/// Tauri's endpoint template, as an app would configure it.
const ENDPOINT: &str = "/update/{{target}}/{{arch}}/{{current_version}}";

/// `releaseDate` of the fixture release, and the same instant as a Unix timestamp.
const RELEASE_DATE: &str = "2026-03-14T09:26:53.589Z";
const RELEASE_UNIX: i64 = 1_773_480_413;

const APPIMAGE: &str = "App-1.1.0.AppImage";

/// A minisign key pair made for one test; no key material lives in the repository.
pub(crate) struct Keys(minisign::KeyPair);

impl Keys {
    pub(crate) fn new() -> Self {
        Self(minisign::KeyPair::generate_unencrypted_keypair().expect("minisign key pair"))
    }

    /// What an app embeds as `pubkey`: the base64 of the public key file's text.
    pub(crate) fn pubkey(&self) -> String {
        let text = self.0.pk.to_box().expect("public key box").into_string();
        BASE64.encode(text)
    }

    /// What the Tauri bundler writes as `{artifact}.sig`: the base64 of the minisign
    /// signature file's text.
    pub(crate) fn sign(&self, name: &str, bytes: &[u8]) -> String {
        let trusted = format!("timestamp:{RELEASE_UNIX}\tfile:{name}");
        let signature = minisign::sign(
            Some(&self.0.pk),
            &self.0.sk,
            Cursor::new(bytes),
            Some(&trusted),
            Some("signature from tauri secret key"),
        )
        .expect("minisign signature");
        BASE64.encode(signature.into_string())
    }
}

/// electron-builder's `latest-linux.yml` for one AppImage.
fn channel_file(version: &str, name: &str, bytes: &[u8]) -> String {
    let sha512 = BASE64.encode(Sha512::digest(bytes));
    let size = bytes.len();
    format!(
        "version: {version}\n\
         files:\n  - url: {name}\n    sha512: {sha512}\n    size: {size}\n    blockMapSize: 321\n\
         path: {name}\n\
         sha512: {sha512}\n\
         releaseNotes: Faster startup.\n\
         releaseDate: '{RELEASE_DATE}'\n"
    )
}

/// A store with release 1.1.0 for Linux: the AppImage, its `.sig` (made with `signer`) and
/// the channel file; a server on a free port serving it.
async fn electron_release(signer: &Keys, artifact: &[u8]) -> (Fixture, TestServer, String) {
    let mut fx = Fixture::new()
        .file(&format!("releases/v1.1.0/{APPIMAGE}"), artifact)
        .file(
            &format!("releases/v1.1.0/{APPIMAGE}.sig"),
            signer.sign(APPIMAGE, artifact),
        )
        .file(
            "releases/latest/latest-linux.yml",
            channel_file("1.1.0", APPIMAGE, artifact),
        );
    let public_url = on_free_port(&mut fx.config);
    let server = TestServer::start(fx.config.clone()).await;
    assert_eq!(
        server.url(""),
        public_url,
        "the server listens where public_url says"
    );
    (fx, server, public_url)
}

/// The client an app at `current` would run, with Tauri's endpoint template. `always`:
/// a version comparator that takes any answered release as an update, so that `None` can
/// only mean the server answered `204` (a `200` with an equal version would otherwise also
/// give `None`).
fn updater(
    endpoint: String,
    current: &str,
    pubkey: String,
    always: bool,
) -> cargo_packager_updater::Updater {
    let config = UpdaterConfig {
        endpoints: vec![endpoint.parse().expect("endpoint URL")],
        pubkey,
        ..Default::default()
    };
    // Never installed to: the tests stop after download + verify.
    let exe: PathBuf = std::env::temp_dir().join("release-edge-tauri-test-not-installed.AppImage");
    let mut builder = UpdaterBuilder::new(current.parse().expect("semver"), config)
        .target("linux")
        .executable_path(exe)
        .timeout(LIMIT);
    if always {
        builder = builder.version_comparator(|_, _| true);
    }
    builder.build().expect("updater")
}

/// Runs a blocking client step off the runtime, bounded by [`LIMIT`].
pub(crate) async fn blocking<T: Send + 'static>(step: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::time::timeout(
        LIMIT + Duration::from_secs(5),
        tokio::task::spawn_blocking(step),
    )
    .await
    .expect("client step within the time limit")
    .expect("client thread")
}

async fn check(
    endpoint: String,
    current: &str,
    pubkey: String,
    always: bool,
) -> cargo_packager_updater::Result<Option<Update>> {
    let updater = updater(endpoint, current, pubkey, always);
    blocking(move || updater.check()).await
}

async fn download(update: &Update) -> cargo_packager_updater::Result<Vec<u8>> {
    let update = update.clone();
    blocking(move || update.download()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_downloads_and_verifies_the_appimage_update() {
    let keys = Keys::new();
    let artifact = pattern(96 * 1024 + 17);
    let (fx, _server, public_url) = electron_release(&keys, &artifact).await;

    let update = check(
        format!("{public_url}{ENDPOINT}"),
        "1.0.0",
        keys.pubkey(),
        false,
    )
    .await
    .expect("update check")
    .expect("1.0.0 is offered an update");
    assert_eq!(update.version, "1.1.0");
    assert_eq!(update.current_version, "1.0.0");
    let date = update.date.expect("pub_date");
    assert_eq!(date.unix_timestamp(), RELEASE_UNIX);
    assert_eq!(date.millisecond(), 589);
    assert_eq!(update.body.as_deref(), Some("Faster startup."));
    assert_eq!(
        update.download_url.as_str(),
        format!("{public_url}/releases/v1.1.0/{APPIMAGE}")
    );
    assert!(
        matches!(update.format, UpdateFormat::AppImage),
        "format {:?}",
        update.format
    );
    let sig_file = read(fx.root().join(format!("releases/v1.1.0/{APPIMAGE}.sig")));
    assert_eq!(
        update.signature.as_bytes(),
        sig_file,
        "signature is the .sig file's text"
    );

    let bytes = download(&update)
        .await
        .expect("download and minisign verification");
    assert_eq!(bytes.len(), artifact.len());
    assert!(bytes == artifact, "the downloaded bytes are the fixture's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_up_to_date_client_gets_204() {
    let keys = Keys::new();
    let artifact = pattern(8 * 1024);
    let (_fx, _server, public_url) = electron_release(&keys, &artifact).await;

    // With a comparator that takes any answered release as an update, `None` can only be a
    // `204` (an error status would be `Err(ReleaseNotFound)`).
    for endpoint in [
        format!("{public_url}{ENDPOINT}"),
        // Tauri apps may send the version with a leading `v`.
        format!("{public_url}/update/{{{{target}}}}/{{{{arch}}}}/v{{{{current_version}}}}"),
    ] {
        for current in ["1.1.0", "1.2.0"] {
            let answer = check(endpoint.clone(), current, keys.pubkey(), true)
                .await
                .unwrap_or_else(|e| panic!("update check from {current} at {endpoint}: {e}"));
            assert!(
                answer.is_none(),
                "{endpoint}: {current} is up to date, got {answer:?}"
            );
        }
        // The same client from 1.0.0 does get the release: the `None`s above were 204s.
        let answer = check(endpoint.clone(), "1.0.0", keys.pubkey(), true)
            .await
            .unwrap_or_else(|e| panic!("update check from 1.0.0 at {endpoint}: {e}"));
        assert_eq!(answer.expect("update from 1.0.0").version, "1.1.0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_from_another_key_fails_verification() {
    let trusted = Keys::new();
    let attacker = Keys::new();
    let artifact = pattern(32 * 1024 + 5);
    let (_fx, _server, public_url) = electron_release(&attacker, &artifact).await;

    let update = check(
        format!("{public_url}{ENDPOINT}"),
        "1.0.0",
        trusted.pubkey(),
        false,
    )
    .await
    .expect("update check")
    .expect("1.0.0 is offered an update");
    assert_eq!(update.version, "1.1.0");
    match download(&update).await {
        Err(Error::Minisign(_)) => {}
        Err(other) => panic!("expected a minisign verification error, got {other}"),
        Ok(bytes) => panic!(
            "a signature from another key was accepted ({} bytes)",
            bytes.len()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tauri_static_manifest_drives_the_client() {
    const NAME: &str = "App_1.2.0_amd64.AppImage";
    let keys = Keys::new();
    let artifact = pattern(64 * 1024 + 3);
    let other = pattern(1024);
    let manifest = serde_json::json!({
        "version": "v1.2.0",
        "notes": "Static manifest notes",
        "pub_date": "2026-04-01T12:00:00Z",
        "platforms": {
            "linux-x86_64": { "signature": keys.sign(NAME, &artifact), "url": NAME },
            "darwin-aarch64": {
                "signature": keys.sign("App_aarch64.app.tar.gz", &other),
                "url": "App_aarch64.app.tar.gz"
            }
        }
    });
    let mut fx = Fixture::new()
        .file(&format!("releases/v1.2.0/{NAME}"), &artifact)
        .file("releases/v1.2.0/App_aarch64.app.tar.gz", &other)
        .file(
            "releases/latest/latest.json",
            serde_json::to_vec_pretty(&manifest).expect("json"),
        )
        // An older electron-builder channel file beside it: the manifest's entry wins.
        .file(&format!("releases/v1.1.0/{APPIMAGE}"), &other)
        .file(
            "releases/latest/latest-linux.yml",
            channel_file("1.1.0", APPIMAGE, &other),
        );
    let public_url = on_free_port(&mut fx.config);
    let _server = TestServer::start(fx.config.clone()).await;

    let update = check(
        format!("{public_url}{ENDPOINT}"),
        "1.0.0",
        keys.pubkey(),
        false,
    )
    .await
    .expect("update check")
    .expect("1.0.0 is offered an update");
    assert_eq!(update.version, "1.2.0");
    assert_eq!(
        update.date.expect("pub_date").unix_timestamp(),
        1_775_044_800
    );
    assert_eq!(update.body.as_deref(), Some("Static manifest notes"));
    assert_eq!(
        update.download_url.as_str(),
        format!("{public_url}/releases/v1.2.0/{NAME}"),
        "the relative url is resolved against public_url and the version"
    );
    assert!(
        matches!(update.format, UpdateFormat::AppImage),
        "format {:?}",
        update.format
    );
    assert_eq!(
        update.signature,
        manifest["platforms"]["linux-x86_64"]["signature"]
            .as_str()
            .expect("signature")
    );
    let bytes = download(&update)
        .await
        .expect("download and minisign verification");
    assert!(
        bytes == artifact,
        "the downloaded bytes are the manifest's AppImage"
    );

    for current in ["1.2.0", "1.3.0-beta.1"] {
        let answer = check(
            format!("{public_url}{ENDPOINT}"),
            current,
            keys.pubkey(),
            true,
        )
        .await
        .expect("update check");
        assert!(answer.is_none(), "{current} is up to date, got {answer:?}");
    }
}

/// The Tauri-protocol client under the release policy, changed through the admin API:
/// a halted release is not offered (`204`); resumed, it is; yanked, the release before it
/// is offered, downloaded and verified; a required update (extra `required` and
/// `minimum_version` fields in the body) is still a body the client takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_obeys_halt_resume_yank_and_required_updates() {
    let keys = Keys::new();
    let builds: Vec<(&str, Vec<u8>)> = vec![
        ("1.1.0", pattern(40 * 1024 + 1)),
        ("1.2.0", pattern(48 * 1024 + 7)),
    ];
    let mut fx = Fixture::new();
    for (version, bytes) in &builds {
        let name = format!("App-{version}.AppImage");
        let feed = channel_file(version, &name, bytes);
        fx = fx
            .file(&format!("releases/v{version}/{name}"), bytes)
            .file(
                &format!("releases/v{version}/{name}.sig"),
                keys.sign(&name, bytes),
            )
            .file(&format!("releases/v{version}/latest-linux.yml"), &feed);
        if *version == "1.2.0" {
            fx = fx.file("releases/latest/latest-linux.yml", &feed);
        }
    }
    let public_url = on_free_port(&mut fx.config);
    let token = format!("{:032x}", fastrand::u128(..));
    let secrets = release_edge::config::Secrets {
        admin_tokens: release_edge::config::AdminToken::parse_list(&format!("ops:{token}")),
        ..fx.secrets()
    };
    let _server = TestServer::start_with(fx.config.clone(), secrets).await;
    let endpoint = format!("{public_url}{ENDPOINT}");
    let admin = |path: &'static str, body: serde_json::Value| {
        let url = format!("{public_url}{path}");
        let token = token.clone();
        async move {
            let reply = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("admin request");
            assert_eq!(reply.status(), 200, "{path}: {:?}", reply.text().await);
        }
    };
    let offered = |current: &'static str| {
        let (endpoint, pubkey) = (endpoint.clone(), keys.pubkey());
        async move {
            check(endpoint, current, pubkey, true)
                .await
                .unwrap_or_else(|e| panic!("update check from {current}: {e}"))
        }
    };
    let fetched = |update: Update, version: &str| {
        let want = builds
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, b)| b.clone())
            .expect("build");
        async move {
            let bytes = download(&update)
                .await
                .expect("download and minisign verification");
            assert!(bytes == want, "the verified download is {}", update.version);
        }
    };

    let update = offered("1.1.0").await.expect("1.2.0 offered");
    assert_eq!(update.version, "1.2.0");

    admin("/admin/channels/latest/halt", serde_json::Value::Null).await;
    // The comparator takes any answered release: `None` is the server's 204.
    assert!(
        offered("1.1.0").await.is_none(),
        "halted: nothing for 1.1.0"
    );
    let update = offered("1.0.0").await.expect("the previous release");
    assert_eq!(update.version, "1.1.0");

    admin("/admin/channels/latest/resume", serde_json::Value::Null).await;
    let update = offered("1.1.0").await.expect("resumed");
    assert_eq!(update.version, "1.2.0");
    fetched(update, "1.2.0").await;

    admin(
        "/admin/versions/1.2.0/yank",
        serde_json::json!({ "reason": "crashes on start" }),
    )
    .await;
    assert!(
        offered("1.1.0").await.is_none(),
        "yanked: nothing for 1.1.0"
    );
    assert!(offered("1.2.0").await.is_none(), "nor for its own users");
    let update = offered("1.0.0").await.expect("the previous release");
    assert_eq!(update.version, "1.1.0");
    fetched(update, "1.1.0").await;

    admin("/admin/versions/1.2.0/unyank", serde_json::Value::Null).await;
    let policy = reqwest::Client::new()
        .get(format!("{public_url}/admin/channels/latest/policy"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("policy");
    let etag = policy.headers()["etag"].to_str().expect("etag").to_owned();
    let put = reqwest::Client::new()
        .put(format!("{public_url}/admin/channels/latest/policy"))
        .bearer_auth(&token)
        .header("if-match", etag)
        .json(&serde_json::json!({ "minimum_version": "1.1.0" }))
        .send()
        .await
        .expect("put policy");
    assert_eq!(put.status(), 200);
    let update = offered("1.0.0").await.expect("a required update");
    assert_eq!(update.version, "1.2.0");
    fetched(update, "1.2.0").await;
}
