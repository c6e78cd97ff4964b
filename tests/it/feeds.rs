//! `/update/...` and `/latest` in-process: every point of SPEC §2.2 and §2.3.

use std::time::Duration;

use release_edge::clock::Clock;
use release_edge::release::rollout;
use serde_norway::Value;

use crate::support::{Fixture, Reply, channel_yml, get, pattern};

const PUBLIC: &str = "https://dl.example.com";
const MAC_SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
const WIN_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const JSON: (&str, &str) = ("accept", "application/json");

/// Writes a release the way electron-builder lays it out: artifacts under
/// `releases/v{version}/`, channel files there and (when `current`) under `releases/latest/`.
struct ReleaseBuilder<'a> {
    fx: &'a Fixture,
    version: &'a str,
    extra: String,
}

impl<'a> ReleaseBuilder<'a> {
    fn new(fx: &'a Fixture, version: &'a str) -> Self {
        Self {
            fx,
            version,
            extra: String::new(),
        }
    }

    fn extra(mut self, yaml: &str) -> Self {
        self.extra.push_str(yaml);
        self
    }

    /// Writes `files` and the channel file `channel_file` listing them.
    fn channel(&self, channel_file: &str, files: &[&str]) -> &Self {
        let contents: Vec<Vec<u8>> = (0..files.len())
            .map(|i| pattern(1000 + i * 37 + self.version.len()))
            .collect();
        for (name, bytes) in files.iter().zip(&contents) {
            self.fx
                .write(&format!("releases/v{}/{name}", self.version), bytes);
        }
        let listed: Vec<(&str, &[u8])> = files
            .iter()
            .zip(&contents)
            .map(|(name, bytes)| (*name, bytes.as_slice()))
            .collect();
        let yaml = channel_yml(self.version, &listed, Some(123)) + &self.extra;
        self.fx
            .write(&format!("releases/v{}/{channel_file}", self.version), &yaml);
        self.fx
            .write(&format!("releases/latest/{channel_file}"), &yaml);
        self
    }

    fn signature(&self, file: &str, sig: &str) -> &Self {
        self.fx
            .write(&format!("releases/v{}/{file}.sig", self.version), sig);
        self
    }
}

fn fixture() -> Fixture {
    let mut fx = Fixture::new();
    fx.config.public_url = PUBLIC.into();
    ReleaseBuilder::new(&fx, "1.1.0")
        .extra("releaseNotes: Faster startup.\n")
        .channel(
            "latest-mac.yml",
            &[
                "App-1.1.0-arm64-mac.zip",
                "App-1.1.0-mac.zip",
                "App-1.1.0-arm64.dmg",
                "App-1.1.0.dmg",
            ],
        )
        .channel("latest.yml", &["App Setup 1.1.0.exe"])
        .channel(
            "latest-linux.yml",
            &["App-1.1.0.AppImage", "app_1.1.0_amd64.deb"],
        )
        .channel("latest-linux-arm64.yml", &["App-1.1.0-arm64.AppImage"])
        .signature("App-1.1.0-arm64-mac.zip", "untrusted comment: sig\nRWQ=\n");
    ReleaseBuilder::new(&fx, "1.2.0-beta.1").channel(
        "beta-mac.yml",
        &[
            "App-1.2.0-beta.1-universal-mac.zip",
            "App-1.2.0-beta.1-universal.dmg",
        ],
    );
    fx.write(
        "releases/latest/RELEASES",
        "E3F67244E4166A65310C816221A12685C83F8E6F App-1.0.0-full.nupkg 600725\n\
         0D777EA94C612E8BF1EA7379164CAEFBA6E24463 App-1.1.0-delta.nupkg 6030\n\
         85F4D657F8424DD437D1B33CC4511EA7AD86B1A7 App-1.1.0-full.nupkg 600752\n",
    );
    fx
}

fn yaml(body: &[u8]) -> Value {
    serde_norway::from_slice(body).expect("YAML body")
}

#[tokio::test]
async fn electron_updater_generic_feed_has_absolute_urls_and_keeps_the_rest() {
    let fx = fixture();
    let router = fx.router();
    let reply = get(
        &router,
        "/update/linux/x64/1.0.0/latest-linux.yml?noCache=1x2y",
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/yaml");
    assert_eq!(
        reply.header("cache-control"),
        "public, max-age=300, stale-while-revalidate=60, stale-if-error=86400"
    );
    assert_eq!(reply.header("vary"), "Accept");
    let served = yaml(&reply.body);
    let stored =
        yaml(&std::fs::read(fx.root().join("releases/latest/latest-linux.yml")).expect("read"));
    assert_eq!(
        served["files"][0]["url"],
        "https://dl.example.com/releases/v1.1.0/App-1.1.0.AppImage"
    );
    assert_eq!(
        served["files"][1]["url"],
        "https://dl.example.com/releases/v1.1.0/app_1.1.0_amd64.deb"
    );
    assert_eq!(
        served["path"],
        "https://dl.example.com/releases/v1.1.0/App-1.1.0.AppImage"
    );
    for key in ["version", "sha512", "releaseDate"] {
        assert_eq!(served[key], stored[key], "{key}");
    }
    for field in ["sha512", "size", "blockMapSize"] {
        assert_eq!(
            served["files"][0][field], stored["files"][0][field],
            "{field}"
        );
    }
    let text = String::from_utf8_lossy(&reply.body);
    assert!(
        text.contains("releaseDate: '2026-11-01T12:00:00.000Z'"),
        "quoted as written: {text}"
    );

    let etag = reply.header("etag").to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"));
    let again = get(
        &router,
        "/update/linux/x64/1.0.0/latest-linux.yml",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), etag);

    // The file name picks the channel file, even for an up-to-date client: never a 204.
    let beta = get(
        &router,
        "/update/darwin/arm64/1.2.0-beta.1/beta-mac.yml",
        &[],
    )
    .await;
    assert_eq!(beta.status, 200);
    assert_eq!(yaml(&beta.body)["version"], "1.2.0-beta.1");
    let names = get(&router, "/update/win32/x64/1.0.0/latest.yml", &[]).await;
    assert_eq!(
        yaml(&names.body)["path"],
        "https://dl.example.com/releases/v1.1.0/App%20Setup%201.1.0.exe"
    );
}

#[tokio::test]
async fn bare_feed_url_without_json_is_the_platform_channel_file() {
    let fx = fixture();
    let router = fx.router();
    let mac = get(&router, "/update/darwin/arm64/1.0.0", &[]).await;
    assert_eq!(mac.status, 200);
    assert_eq!(
        yaml(&mac.body)["files"].as_sequence().map(Vec::len),
        Some(4)
    );
    let arm = get(&router, "/update/linux/arm64/1.0.0", &[("accept", "*/*")]).await;
    assert_eq!(
        yaml(&arm.body)["path"],
        "https://dl.example.com/releases/v1.1.0/App-1.1.0-arm64.AppImage"
    );
    let up_to_date = get(&router, "/update/win32/x64/9.0.0", &[]).await;
    assert_eq!(up_to_date.status, 200, "YAML answers are never 204");
}

#[tokio::test]
async fn json_protocol_for_squirrel_mac_and_tauri() {
    let fx = fixture();
    let router = fx.router();
    let reply = get(&router, "/update/darwin/arm64/1.0.0", &[JSON]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.header("vary"), "Accept");
    let body = reply.json();
    assert_eq!(
        body,
        serde_json::json!({
            "version": "1.1.0",
            "notes": "Faster startup.",
            "pub_date": "2026-11-01T12:00:00.000Z",
            "url": "https://dl.example.com/releases/v1.1.0/App-1.1.0-arm64-mac.zip",
            "signature": "untrusted comment: sig\nRWQ=",
            "format": "app",
        })
    );
    assert!(
        body.get("name").is_none(),
        "Tauri rejects `name` beside `version`"
    );

    let cases = [
        ("/update/mac/x64/1.0.0", "App-1.1.0-mac.zip", "app"),
        ("/update/darwin/x86_64/v1.0.0", "App-1.1.0-mac.zip", "app"),
        (
            "/update/windows/x86_64/1.0.0",
            "App%20Setup%201.1.0.exe",
            "nsis",
        ),
        (
            "/update/linux/x86_64/1.0.0",
            "App-1.1.0.AppImage",
            "appimage",
        ),
        (
            "/update/linux/aarch64/1.0.0",
            "App-1.1.0-arm64.AppImage",
            "appimage",
        ),
        (
            "/update/darwin/aarch64/1.1.0-beta.3",
            "App-1.1.0-arm64-mac.zip",
            "app",
        ),
    ];
    for (path, file, format) in cases {
        let reply = get(&router, path, &[JSON]).await;
        assert_eq!(reply.status, 200, "{path}");
        let body = reply.json();
        assert_eq!(
            body["url"],
            format!("https://dl.example.com/releases/v1.1.0/{file}"),
            "{path}"
        );
        assert_eq!(body["format"], format, "{path}");
        // Only the arm64 zip has a `.sig` beside it in the store.
        let signature = (file == "App-1.1.0-arm64-mac.zip")
            .then(|| serde_json::json!("untrusted comment: sig\nRWQ="));
        assert_eq!(body.get("signature").cloned(), signature, "{path}");
    }
    // The answers made before are kept with the release, one per platform and arch: asked
    // again after the others, arm64 gets its own bytes and ETag back.
    let again = get(&router, "/update/darwin/arm64/1.0.0", &[JSON]).await;
    assert_eq!(again.body, reply.body);
    assert_eq!(again.header("etag"), reply.header("etag"));
    assert!(again.header("etag").starts_with('"'));

    for path in [
        "/update/darwin/arm64/1.1.0",
        "/update/darwin/arm64/v1.1.0",
        "/update/darwin/arm64/2.0.0",
        "/update/darwin/arm64/1.1.0+build.7",
    ] {
        let reply = get(&router, path, &[JSON]).await;
        assert_eq!(reply.status, 204, "{path}");
        assert!(reply.body.is_empty());
    }

    // A universal build serves both arches when there is no arch-specific one.
    let beta = get(&router, "/update/darwin/arm64/1.1.0?channel=beta", &[JSON]).await;
    assert_eq!(
        beta.json()["url"],
        "https://dl.example.com/releases/v1.2.0-beta.1/App-1.2.0-beta.1-universal-mac.zip"
    );
    let beta = get(&router, "/update/darwin/x64/1.1.0?channel=beta", &[JSON]).await;
    assert_eq!(beta.json()["version"], "1.2.0-beta.1");
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_value() {
    let fx = fixture();
    let router = fx.router();
    let cases = [
        ("/update/darwin/arm64/1.0", "invalid_version", "1.0"),
        ("/update/darwin/arm64/latest", "invalid_version", "latest"),
        ("/update/beos/x64/1.0.0", "invalid_platform", "beos"),
        ("/update/linux/sparc/1.0.0", "invalid_arch", "sparc"),
        (
            "/update/linux/x64/1.0.0?channel=Beta!",
            "invalid_channel",
            "Beta!",
        ),
        ("/latest?platform=beos", "invalid_platform", "beos"),
        ("/latest/linux/mips", "invalid_arch", "mips"),
        ("/latest?format=iso", "invalid_format", "iso"),
    ];
    for (path, code, value) in cases {
        let reply = get(&router, path, &[JSON]).await;
        assert_eq!(reply.status, 400, "{path}");
        let body = reply.json();
        assert_eq!(body["error"], code, "{path}");
        assert!(
            body["message"].as_str().unwrap_or_default().contains(value),
            "{path}: {body}"
        );
    }
    let missing = get(&router, "/update/linux/x64/1.0.0/nightly-linux.yml", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no_release");
    let not_a_feed = get(&router, "/update/linux/x64/1.0.0/passwd", &[]).await;
    assert_eq!(not_a_feed.status, 404);
}

#[tokio::test]
async fn tauri_static_manifest_is_preferred_when_it_has_the_platform() {
    let fx = fixture();
    fx.write(
        "releases/latest/latest.json",
        r#"{"version":"1.1.0","notes":"Tauri notes","pub_date":"2026-11-02T08:00:00Z",
            "platforms":{"linux-x86_64":{"signature":"TAURI-SIG","url":"App_1.1.0_amd64.AppImage.tar.gz"}}}"#,
    );
    let router = fx.router();
    let body = get(&router, "/update/linux/x86_64/1.0.0", &[JSON])
        .await
        .json();
    assert_eq!(
        body["url"],
        "https://dl.example.com/releases/v1.1.0/App_1.1.0_amd64.AppImage.tar.gz"
    );
    assert_eq!(body["signature"], "TAURI-SIG");
    assert_eq!(body["pub_date"], "2026-11-02T08:00:00Z");
    assert_eq!(
        get(&router, "/update/linux/x86_64/1.1.0", &[JSON])
            .await
            .status,
        204
    );
    // No entry for this platform in the Tauri manifest: the channel file answers.
    let mac = get(&router, "/update/darwin/aarch64/1.0.0", &[JSON])
        .await
        .json();
    assert_eq!(
        mac["url"],
        "https://dl.example.com/releases/v1.1.0/App-1.1.0-arm64-mac.zip"
    );
}

#[tokio::test]
async fn staged_rollout_is_decided_by_client_id_deterministically() {
    let fx = fixture();
    ReleaseBuilder::new(&fx, "1.1.0")
        .extra("stagingPercentage: 30\n")
        .channel("latest-linux.yml", &["App-1.1.0.AppImage"]);
    let router = fx.router();
    let mut inside = 0;
    for i in 0..60 {
        let id = format!("client-{i}");
        let want = rollout::in_rollout(&id, "1.1.0", 30.0);
        let by_query = get(
            &router,
            &format!("/update/linux/x64/1.0.0?id={id}"),
            &[JSON],
        )
        .await;
        let by_header = get(
            &router,
            "/update/linux/x64/1.0.0",
            &[JSON, ("x-client-id", &id)],
        )
        .await;
        let by_staging = get(
            &router,
            "/update/linux/x64/1.0.0",
            &[JSON, ("x-user-staging-id", &id)],
        )
        .await;
        for reply in [&by_query, &by_header, &by_staging] {
            assert_eq!(reply.status, if want { 200 } else { 204 }, "{id}");
            assert!(
                reply.header("cache-control").starts_with("private"),
                "per-client answer"
            );
        }
        inside += usize::from(want);
    }
    assert!(
        (5..=35).contains(&inside),
        "about 30% of 60 in the rollout: {inside}"
    );
    // ?id= wins over the headers.
    let (a, b) = (0..100)
        .map(|i| format!("c{i}"))
        .fold((None, None), |(inn, out), id| {
            if rollout::in_rollout(&id, "1.1.0", 30.0) {
                (inn.or(Some(id)), out)
            } else {
                (inn, out.or(Some(id)))
            }
        });
    let (inn, out) = (a.expect("one inside"), b.expect("one outside"));
    let reply = get(
        &router,
        &format!("/update/linux/x64/1.0.0?id={inn}"),
        &[JSON, ("x-client-id", &out)],
    )
    .await;
    assert_eq!(reply.status, 200);
    // electron-updater decides itself: the YAML passes stagingPercentage through.
    let feed = get(
        &router,
        "/update/linux/x64/1.0.0/latest-linux.yml",
        &[("x-client-id", &out)],
    )
    .await;
    assert_eq!(yaml(&feed.body)["stagingPercentage"], 30);
}

#[tokio::test]
async fn squirrel_windows_releases_with_absolute_package_urls() {
    let fx = fixture();
    let router = fx.router();
    let reply = get(
        &router,
        "/update/win32/x64/1.0.0/RELEASES?id=App&localVersion=1.0.0&arch=amd64",
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(
        String::from_utf8_lossy(&reply.body),
        "E3F67244E4166A65310C816221A12685C83F8E6F https://dl.example.com/releases/v1.0.0/App-1.0.0-full.nupkg 600725\n\
         0D777EA94C612E8BF1EA7379164CAEFBA6E24463 https://dl.example.com/releases/v1.1.0/App-1.1.0-delta.nupkg 6030\n\
         85F4D657F8424DD437D1B33CC4511EA7AD86B1A7 https://dl.example.com/releases/v1.1.0/App-1.1.0-full.nupkg 600752\n"
    );
}

#[tokio::test]
async fn latest_redirects_to_the_right_installer() {
    let fx = fixture();
    let router = fx.router();
    let base = "https://dl.example.com/releases/v1.1.0";
    // (path, headers, file, cacheable)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, bool);
    let cases: Vec<Case> = vec![
        (
            "/latest",
            vec![("user-agent", MAC_SAFARI)],
            format!("{base}/App-1.1.0.dmg"),
            false,
        ),
        (
            "/latest",
            vec![
                ("user-agent", MAC_SAFARI),
                ("sec-ch-ua-platform", "\"macOS\""),
                ("sec-ch-ua-arch", "\"arm\""),
            ],
            format!("{base}/App-1.1.0-arm64.dmg"),
            false,
        ),
        (
            "/latest",
            vec![("user-agent", WIN_CHROME)],
            format!("{base}/App%20Setup%201.1.0.exe"),
            false,
        ),
        (
            "/latest",
            vec![
                ("sec-ch-ua-platform", "\"Windows\""),
                ("sec-ch-ua-arch", "\"x86\""),
                ("sec-ch-ua-bitness", "\"64\""),
            ],
            format!("{base}/App%20Setup%201.1.0.exe"),
            false,
        ),
        (
            "/latest",
            vec![("user-agent", IPHONE)],
            format!("{base}/App-1.1.0.AppImage"),
            false,
        ),
        (
            "/latest",
            vec![],
            format!("{base}/App-1.1.0.AppImage"),
            true,
        ),
        (
            "/latest/mac/arm64",
            vec![],
            format!("{base}/App-1.1.0-arm64.dmg"),
            true,
        ),
        (
            "/latest/osx/x86_64",
            vec![("user-agent", WIN_CHROME)],
            format!("{base}/App-1.1.0.dmg"),
            true,
        ),
        (
            "/latest/macos/aarch64?format=zip",
            vec![],
            format!("{base}/App-1.1.0-arm64-mac.zip"),
            true,
        ),
        (
            "/latest?platform=win&arch=x64",
            vec![],
            format!("{base}/App%20Setup%201.1.0.exe"),
            true,
        ),
        (
            "/latest/linux/x64?format=deb",
            vec![],
            format!("{base}/app_1.1.0_amd64.deb"),
            true,
        ),
        (
            "/latest/linux/arm64",
            vec![],
            format!("{base}/App-1.1.0-arm64.AppImage"),
            true,
        ),
        (
            "/latest/darwin/arm64?channel=beta",
            vec![],
            "https://dl.example.com/releases/v1.2.0-beta.1/App-1.2.0-beta.1-universal.dmg".into(),
            true,
        ),
    ];
    for (path, headers, location, cacheable) in cases {
        for method in ["GET", "HEAD"] {
            let reply = crate::support::request(&router, method, path, &headers).await;
            assert_eq!(reply.status, 302, "{method} {path} {headers:?}");
            assert_eq!(reply.header("location"), location, "{path} {headers:?}");
            assert_eq!(
                reply.header("cache-control"),
                if cacheable {
                    "public, max-age=300"
                } else {
                    "no-store"
                },
                "{path} {headers:?}"
            );
            assert_eq!(
                reply.header("vary"),
                "User-Agent, Sec-CH-UA-Platform, Sec-CH-UA-Arch"
            );
            assert!(reply.header("accept-ch").contains("Sec-CH-UA-Arch"));
        }
    }
}

#[tokio::test]
async fn latest_404_lists_what_is_available() {
    let fx = fixture();
    let router = fx.router();
    let reply = get(&router, "/latest/win/arm64", &[]).await;
    assert_eq!(reply.status, 404);
    let body = reply.json();
    assert_eq!(body["error"], "no_release");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("win32/arm64")
    );
    let available = body["available"].as_array().expect("available");
    assert!(available.iter().any(|a| a["file"] == "App Setup 1.1.0.exe"
        && a["arch"] == "x64"
        && a["platform"] == "win32"));
    assert!(available.iter().any(|a| a["file"] == "App-1.1.0-arm64.dmg"));
    assert!(
        available
            .iter()
            .all(|a| a["file"] != "App-1.1.0.dmg.blockmap")
    );
    let msi = get(&router, "/latest/win?format=msi", &[]).await;
    assert_eq!(msi.status, 404);
}

#[tokio::test]
async fn two_hundred_concurrent_cold_checks_read_the_store_once() {
    let fx = fixture();
    let state = fx.state();
    let router = release_edge::app(state.clone());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("/update/linux/x64/1.0.{i}/latest-linux.yml");
            get(&router, &path, &[]).await.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), 200);
    }
    let reads = |outcome: &str| {
        state
            .metrics
            .origin_requests
            .with_label_values(&["store", outcome])
            .get()
    };
    assert_eq!(
        reads("ok"),
        1,
        "one store read for 200 concurrent cold checks"
    );
    // And one of the channel's release policy (there is none: `not_found`, then the
    // default policy is cached like a manifest).
    assert_eq!(reads("not_found"), 1);
    assert_eq!(reads("error"), 0);
    let lookups = |result: &str| {
        state
            .metrics
            .cache_lookups
            .with_label_values(&["manifest", result])
            .get()
    };
    // The channel file and the policy: each one miss, then 199 hits.
    assert_eq!(lookups("miss"), 2);
    assert_eq!(lookups("hit"), 2 * 199);
    assert_eq!(
        state
            .metrics
            .update_checks
            .with_label_values(&["electron-updater", "linux", "x64", "update"])
            .get(),
        200
    );

    // A channel that does not exist is remembered as missing, too.
    for _ in 0..5 {
        get(&router, "/update/linux/x64/1.0.0/nightly-linux.yml", &[]).await;
    }
    assert_eq!(reads("not_found"), 2, "the policy above, and nightly once");
}

#[tokio::test]
async fn manifests_are_revalidated_after_the_ttl() {
    let mut fx = fixture();
    fx.config.cache.manifest_ttl = Duration::from_secs(60);
    fx.config.cache.object_ttl = Duration::ZERO;
    let clock = Clock::manual();
    let state = fx.state_on(&clock);
    let router = release_edge::app(state.clone());
    let path = "/update/linux/x64/1.0.0/latest-linux.yml";
    let version = |reply: Reply| yaml(&reply.body)["version"].clone();
    assert_eq!(version(get(&router, path, &[]).await), "1.1.0");
    ReleaseBuilder::new(&fx, "1.2.0").channel("latest-linux.yml", &["App-1.2.0.AppImage"]);
    clock.advance(Duration::from_secs(59));
    assert_eq!(
        version(get(&router, path, &[]).await),
        "1.1.0",
        "still fresh"
    );
    // Two loads: the channel file and the channel's policy.
    assert_eq!(state.manifests.loads(), 2, "no origin read within the TTL");
    clock.advance(Duration::from_secs(1));
    // Past the TTL the cached copy answers at once while it is revalidated behind it...
    assert_eq!(
        version(get(&router, path, &[]).await),
        "1.1.0",
        "stale while revalidating"
    );
    // ...and the revalidated one follows.
    state.manifests.settled().await;
    assert_eq!(
        state.manifests.loads(),
        4,
        "both revalidated behind the answer"
    );
    assert_eq!(version(get(&router, path, &[]).await), "1.2.0");
}

#[tokio::test]
async fn a_failing_store_gets_the_last_good_manifest() {
    let mut fx = fixture();
    fx.config.cache.object_ttl = Duration::ZERO;
    fx.config.store.timeout = Duration::from_millis(300);
    let clock = Clock::manual();
    let state = fx.state_on(&clock);
    let router = release_edge::app(state.clone());
    let path = "/update/linux/x64/1.0.0/latest-linux.yml";
    let good = get(&router, path, &[]).await;
    assert_eq!(good.status, 200);
    // The same channel file read straight through /releases (electron-updater pointed at
    // the bucket layout).
    let raw_path = "/releases/latest/latest-linux.yml";
    let raw = get(&router, raw_path, &[]).await;
    assert_eq!(raw.status, 200);
    // A FIFO in place of the manifest: opening it blocks, so the store times out.
    let manifest = fx.root().join("releases/latest/latest-linux.yml");
    std::fs::remove_file(&manifest).expect("rm");
    let status = std::process::Command::new("mkfifo")
        .arg(&manifest)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    clock.advance(fx.config.cache.manifest_ttl);
    let stale = get(&router, path, &[]).await;
    assert_eq!(stale.status, 200, "the update check does not fail");
    assert_eq!(stale.body, good.body);
    assert_eq!(
        state
            .metrics
            .cache_lookups
            .with_label_values(&["manifest", "stale"])
            .get(),
        2,
        "the channel file and the channel's policy, both past the TTL"
    );
    // The revalidation behind that answer timed out; answers go on from the last good copy.
    let timeouts = || {
        state
            .metrics
            .origin_requests
            .with_label_values(&["store", "timeout"])
            .get()
    };
    state.manifests.settled().await;
    assert_eq!(timeouts(), 1);
    let again = get(&router, path, &[]).await;
    assert_eq!((again.status.as_u16(), &again.body), (200, &good.body));
    assert_eq!(
        state.metrics.fallback.with_label_values(&["stale"]).get(),
        1,
        "served as a fallback once the revalidation had failed"
    );
    // Read straight through /releases, the channel file is its last good copy too.
    let raw_stale = get(&router, raw_path, &[]).await;
    assert_eq!(raw_stale.status, 200, "{:?}", raw_stale.body);
    assert_eq!(raw_stale.body, raw.body);
    assert_eq!(raw_stale.header("etag"), raw.header("etag"));
    assert_eq!(
        state.metrics.fallback.with_label_values(&["stale"]).get(),
        2
    );
    // Release the blocked open so that the runtime can shut down.
    let writer = std::thread::spawn(move || {
        let _ = std::fs::OpenOptions::new().write(true).open(&manifest);
    });
    writer.join().expect("writer");
}

#[tokio::test]
async fn downloads_are_counted_once_per_download_with_bounded_labels() {
    let fx = fixture();
    let state = fx.state();
    let router = release_edge::app(state.clone());
    let path = "/releases/v1.2.0-beta.1/App-1.2.0-beta.1-universal.dmg";
    assert_eq!(get(&router, path, &[]).await.status, 200);
    assert_eq!(
        get(&router, path, &[("range", "bytes=0-99")]).await.status,
        206
    );
    assert_eq!(
        get(&router, path, &[("range", "bytes=100-")]).await.status,
        206,
        "a later segment"
    );
    assert_eq!(
        get(&router, "/releases/v1.1.0/latest-mac.yml", &[])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&router, "/releases/v9.9.9/App-9.9.9.dmg", &[])
            .await
            .status,
        404
    );
    let count = |labels: [&str; 4]| state.metrics.downloads.with_label_values(&labels).get();
    assert_eq!(count(["beta", "1.2.0-beta.1", "darwin", "universal"]), 2);
    let text = state.metrics.render();
    assert!(
        !text.contains("9.9.9"),
        "versions not in the store never become labels"
    );
    assert!(!text.contains("latest-mac"), "manifests are not downloads");
}
