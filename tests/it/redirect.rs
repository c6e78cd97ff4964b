//! `store.downloads = "redirect"` (SPEC §2.7) against the in-process S3 server (s3s-fs,
//! which checks presigned SigV4 query authentication: expiry, signature, the signed host):
//! artifacts answer `302` to a presigned URL and the client gets the exact bytes from the
//! bucket, ranges and resumes included; several ranges, `HEAD`, conditional requests and
//! manifests stay with release-edge; a private artifact is redirected only after its
//! signature was checked.

use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use release_edge::App;
use release_edge::config::Downloads;
use secrecy::SecretString;

use crate::clients::{describe, run};
use crate::electron_updater::{
    appimage_app, build_appimages, changed_content, channel_file as builder_yml, require_client,
    run_update, update_succeeded,
};
use crate::support::{
    BUCKET, Fixture, TestServer, on_free_port, pattern, read, require_program, scratch,
};

const EXE: &str = "App Setup 1.1.0.exe";
const EXE_URL: &str = "/releases/v1.1.0/App%20Setup%201.1.0.exe";
const ROUTE: &str = "/releases/{*path}";

/// A client that does not follow redirects, to look at them.
fn no_follow() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `GET url` with `headers`, not following redirects: status, headers, body.
async fn fetch(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = no_follow().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let reply = request.send().await.expect("request");
    let status = reply.status().as_u16();
    let headers = reply.headers().clone();
    let body = reply.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

fn location(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("location")
        .expect("a Location")
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn requests(server: &TestServer, status: &str) -> u64 {
    server
        .state
        .metrics
        .http_requests
        .with_label_values(&[ROUTE, "GET", status])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_redirected_to_the_bucket_and_clients_get_the_exact_bytes() {
    require_program("curl");
    let data = pattern(3 * 1024 * 1024 + 77);
    let mut fx = Fixture::s3().release("1.1.0", "latest.yml", &[(EXE, &data)], true);
    fx.config.store.downloads = Downloads::Redirect;
    on_free_port(&mut fx.config);
    let server = TestServer::start_with(fx.config.clone(), fx.secrets()).await;
    let s3 = fx.s3.as_ref().expect("bucket");
    let url = server.url(EXE_URL);

    // The redirect: a presigned GET of that object, for 15 min + a window, the download's
    // name for the browser, shareable for half the guaranteed life.
    let (status, headers, body) = fetch(&url, &[]).await;
    assert_eq!(status, 302);
    assert!(body.is_empty());
    let presigned = location(&headers);
    let object = format!(
        "{}/{BUCKET}/releases/v1.1.0/App%20Setup%201.1.0.exe?",
        s3.endpoint
    );
    assert!(presigned.starts_with(&object), "{presigned}");
    for part in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Expires=1125",
        "X-Amz-SignedHeaders=host",
        "X-Amz-Signature=",
        "response-content-disposition=attachment",
    ] {
        assert!(presigned.contains(part), "{part} in {presigned}");
    }
    assert_eq!(headers["cache-control"], "public, max-age=450");
    let (_, again, _) = fetch(&url, &[]).await;
    assert_eq!(location(&again), presigned, "one URL per window, made once");

    // curl follows it: the whole file, one range, a resume — the bucket's bytes.
    let dir = scratch();
    let curl = |args: &[&str], out: &str| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-g", "--fail", "-L"])
            .args(args)
            .arg("-o")
            .arg(dir.path().join(out))
            .args(["-w", "%{http_code} %{num_redirects}"])
            .arg(&url);
        run(cmd, Duration::from_secs(30))
    };
    let whole = curl(&[], "whole").await;
    assert!(whole.status.success(), "{}", describe(&whole));
    assert_eq!(String::from_utf8_lossy(&whole.stdout), "200 1");
    assert!(read(dir.path().join("whole")) == data);
    let range = curl(&["-r", "1000000-1999999"], "range").await;
    assert_eq!(
        String::from_utf8_lossy(&range.stdout),
        "206 1",
        "{}",
        describe(&range)
    );
    assert!(read(dir.path().join("range")) == data[1_000_000..2_000_000]);
    std::fs::write(dir.path().join("resumed"), &data[..1_234_567]).expect("partial file");
    let resumed = curl(&["-C", "-"], "resumed").await;
    assert_eq!(
        String::from_utf8_lossy(&resumed.stdout),
        "206 1",
        "{}",
        describe(&resumed)
    );
    assert!(
        read(dir.path().join("resumed")) == data,
        "resumed from the bucket"
    );
    // The bucket served them: presigned GETs with the clients' ranges.
    let target = format!("/{BUCKET}/releases/v1.1.0/App%20Setup%201.1.0.exe?");
    let from_bucket: Vec<Option<String>> = s3
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.target.starts_with(&target))
        .filter(|r| r.target.contains("X-Amz-Signature="))
        .map(|r| r.range)
        .collect();
    assert_eq!(
        from_bucket,
        [
            None,
            Some("bytes=1000000-1999999".into()),
            Some("bytes=1234567-".into())
        ]
    );
    assert_eq!(requests(&server, "302"), 5);
    assert_eq!(
        requests(&server, "200") + requests(&server, "206"),
        0,
        "no byte from us"
    );

    // What the bucket cannot answer as we would stays here: several ranges, HEAD, a 304,
    // a 416; and manifests are always ours.
    let (status, headers, body) = fetch(&url, &[("range", "bytes=0-9, 100-109")]).await;
    assert_eq!(status, 206);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/byteranges")
    );
    assert!(body.windows(10).any(|w| w == &data[100..110]));
    let head = no_follow().head(&url).send().await.expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        data.len().to_string().as_str()
    );
    let etag = head.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(fetch(&url, &[("if-none-match", &etag)]).await.0, 304);
    assert_eq!(fetch(&url, &[("range", "bytes=99999999-")]).await.0, 416);
    // A resume whose `If-Range` no longer matches gets the whole object, from here (a store
    // that ignores `If-Range` would send the range); one that matches goes to the bucket.
    let (status, headers, body) = fetch(
        &url,
        &[("range", "bytes=100-"), ("if-range", "\"not-the-etag\"")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers.get("location").is_none());
    assert!(body == data, "the whole object");
    let (status, _, _) = fetch(&url, &[("range", "bytes=100-"), ("if-range", &etag)]).await;
    assert_eq!(status, 302);
    for manifest in ["/releases/v1.1.0/latest.yml", "/releases/latest/latest.yml"] {
        let (status, _, body) = fetch(&server.url(manifest), &[]).await;
        assert_eq!(status, 200, "{manifest}");
        assert!(body.starts_with(b"version: 1.1.0"));
    }
    assert_eq!(
        fetch(&server.url("/releases/v1.1.0/missing.exe"), &[])
            .await
            .0,
        404
    );

    // The bucket checks the presigned URL: a changed signature, or the query of one object
    // on another's path, is refused (403) with none of the object.
    let (prefix, signature) = presigned
        .rsplit_once("X-Amz-Signature=")
        .expect("signature");
    let flipped = format!(
        "{prefix}X-Amz-Signature={}{}",
        &signature[..signature.len() - 1],
        if signature.ends_with('0') { '1' } else { '0' }
    );
    let (status, _, body) = fetch(&flipped, &[]).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let query = presigned.split_once('?').expect("query").1;
    let other = format!(
        "{}/{BUCKET}/releases/v1.1.0/latest.yml?{query}",
        s3.endpoint
    );
    let (status, _, body) = fetch(&other, &[]).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
}

/// electron-updater in redirect mode: the full download follows the `302` to the bucket
/// (sha512 checked by electron-updater); the differential download's multi-range requests
/// are answered here and its single-range read of the block map goes to the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electron_updater_follows_the_redirect_in_full_and_differential_downloads() {
    require_client();
    const OLD: &str = "Sample-App-1.0.0.AppImage";
    const NEW: &str = "Sample-App-1.1.0.AppImage";
    let (old_raw, new_raw, _) = changed_content();
    let (old, new) = build_appimages(&old_raw, &new_raw).await;
    let feed = builder_yml("1.1.0", NEW, &new.info);
    let mut fx = Fixture::s3()
        .file("releases/latest/latest-linux.yml", &feed)
        .file(&format!("releases/v1.1.0/{NEW}"), &new.bytes)
        .file(&format!("releases/v1.0.0/{OLD}"), &old.bytes);
    fx.config.store.downloads = Downloads::Redirect;
    on_free_port(&mut fx.config);
    let server = TestServer::start_with(fx.config.clone(), fx.secrets()).await;
    let s3 = fx.s3.as_ref().expect("bucket");

    for differential in [false, true] {
        let (run, client) = run_update(&server, appimage_app(&old.bytes), differential).await;
        let result = update_succeeded(&run, client.path(), (NEW, &new.bytes), differential);
        let exchanges = result["exchanges"].as_array().expect("exchanges");
        let redirected = exchanges.iter().filter(|e| e["status"] == 302).count();
        let bucket = exchanges
            .iter()
            .filter(|e| {
                e["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("X-Amz-Signature="))
            })
            .count();
        assert!(redirected >= 1 && bucket == redirected, "{exchanges:#?}");
        if differential {
            assert!(
                exchanges.iter().any(|e| e["status"] == 206
                    && e["contentType"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("multipart/byteranges"))
                    && e["path"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("/releases/"))),
                "the multi-range requests answered here: {exchanges:#?}"
            );
        }
    }
    let presigned_gets = s3
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("X-Amz-Signature="))
        .count();
    assert!(presigned_gets >= 2, "{presigned_gets}");
}

/// A private artifact in redirect mode: refused without its signature before the bucket
/// is asked anything about it; with it, a `302` no shared cache keeps, to its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_artifact_is_redirected_only_with_its_signature() {
    require_program("curl");
    const NAME: &str = "App-2.0.0-beta.1.AppImage";
    let data = pattern(700_000);
    let mut fx = Fixture::s3().release("2.0.0-beta.1", "beta-linux.yml", &[(NAME, &data)], true);
    fx.config.store.downloads = Downloads::Redirect;
    fx.config.access.private_channels = vec!["beta".into()];
    on_free_port(&mut fx.config);
    let token = format!("{:032x}", fastrand::u128(..));
    let secrets = release_edge::config::Secrets {
        access_tokens: Some(SecretString::from(format!("beta:alice:{token}"))),
        url_signing_key: Some(SecretString::from(format!("{:032x}", fastrand::u128(..)))),
        ..fx.secrets()
    };
    let server = TestServer::serve(App::build(fx.config.clone(), secrets).expect("state")).await;
    let s3 = fx.s3.as_ref().expect("bucket");
    let object = format!("/releases/v2.0.0-beta.1/{NAME}");

    let (status, headers, body) = fetch(&server.url(&object), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED.as_u16());
    assert!(headers.get("location").is_none());
    assert!(String::from_utf8_lossy(&body).contains("token_required"));
    let asked: Vec<_> = s3
        .requests()
        .into_iter()
        .filter(|r| r.target.contains(NAME))
        .collect();
    assert!(asked.is_empty(), "the bucket was asked about it: {asked:?}");

    let signed = crate::private::beta_url(&server, &token).await;
    // Tampered (its expiry moved on): refused, no redirect, the bucket still not asked.
    let (object_url, sig) = signed.split_once("?sig=").expect("signed");
    let (expires, mac) = sig.split_once('.').expect("expires.mac");
    let expires: u64 = expires.parse().expect("unix time");
    let tampered = format!("{object_url}?sig={}.{mac}", expires + 86_400);
    let (status, headers, body) = fetch(&tampered, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN.as_u16());
    assert!(headers.get("location").is_none());
    assert!(String::from_utf8_lossy(&body).contains("invalid_signature"));
    assert!(!s3.requests().iter().any(|r| r.target.contains(NAME)));

    let (status, headers, _) = fetch(&signed, &[]).await;
    assert_eq!(status, 302);
    assert_eq!(headers["cache-control"], "private, no-store");
    let dir = scratch();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-g", "--fail", "-L", "-r", "100000-", "-o"])
        .arg(dir.path().join("part"))
        .args(["-w", "%{http_code} %{num_redirects}"])
        .arg(&signed);
    let output = run(cmd, Duration::from_secs(30)).await;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "206 1",
        "{}",
        describe(&output)
    );
    assert!(read(dir.path().join("part")) == data[100_000..]);
}
