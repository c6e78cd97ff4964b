//! The S3 store against a real S3 server (s3s-fs, in-process): what reaches the bucket, how
//! S3 failures are answered, and publish/rollback into a bucket through the real binary and
//! the standard AWS credential chain.

use std::process::Stdio;
use std::time::{Duration, Instant};

use release_edge::clock::Clock;

use crate::publish::{cli, failed_with, ok, publish, rollback};
use crate::support::{BUCKET, Fixture, get, pattern};

const BIG: &str = "releases/v1.2.0/App-1.2.0.AppImage";
const BIG_URL: &str = "/releases/v1.2.0/App-1.2.0.AppImage";

fn object_target(key: &str) -> String {
    format!("/{BUCKET}/{key}")
}

#[tokio::test]
async fn metadata_is_cached_and_every_range_is_a_ranged_get_in_order() {
    let fx = Fixture::s3().large(BIG, 400_000);
    let router = fx.router();
    let s3 = fx.s3.as_ref().expect("s3 fixture");
    let data = pattern(400_000);
    for (a, b) in [(0usize, 99usize), (1000, 1999), (399_000, 399_999)] {
        let reply = get(&router, BIG_URL, &[("range", &format!("bytes={a}-{b}"))]).await;
        assert_eq!(reply.status, 206);
        assert_eq!(reply.body.as_ref(), &data[a..=b]);
    }
    let multi = get(
        &router,
        BIG_URL,
        &[("range", "bytes=300000-300009, 10-19, 5000-5001")],
    )
    .await;
    assert_eq!(
        multi.status, 200,
        "backwards ranges: the whole body, in one GET"
    );
    let multi = get(
        &router,
        BIG_URL,
        &[("range", "bytes=10-19, 5000-5001, 300000-300009")],
    )
    .await;
    assert_eq!(multi.status, 206);
    // The client gets exactly its three parts, in its order...
    let boundary = multi
        .header("content-type")
        .rsplit_once("boundary=")
        .map(|(_, b)| b.to_owned())
        .expect("boundary");
    let mut expected = Vec::new();
    for (i, (a, b)) in [(10usize, 19usize), (5000, 5001), (300_000, 300_009)]
        .into_iter()
        .enumerate()
    {
        let lead = if i == 0 { "" } else { "\r\n" };
        expected.extend_from_slice(
            format!(
                "{lead}--{boundary}\r\nContent-Type: application/vnd.appimage\r\nContent-Range: bytes {a}-{b}/400000\r\n\r\n"
            )
            .as_bytes(),
        );
        expected.extend_from_slice(&data[a..=b]);
    }
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert!(
        multi.body[..] == expected[..],
        "exact parts in request order"
    );

    let requests = s3.requests();
    let path =
        |r: &&crate::support::S3Request| r.target.split('?').next().unwrap_or_default().to_owned();
    let on_key: Vec<_> = requests
        .iter()
        .filter(|r| path(r) == object_target(BIG))
        .collect();
    let heads = on_key.iter().filter(|r| r.method == "HEAD").count();
    assert_eq!(
        heads, 1,
        "a burst of range requests HEADs the object once: {on_key:#?}"
    );
    let gets: Vec<Option<&str>> = on_key
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.range.as_deref())
        .collect();
    assert_eq!(
        gets,
        [
            Some("bytes=0-99"),
            Some("bytes=1000-1999"),
            Some("bytes=399000-399999"),
            Some("bytes=0-399999"),
            Some("bytes=10-5001"),
            Some("bytes=300000-300009"),
        ],
        "single ranges are ranged GETs; a multipart's ranges within 256 KiB of each other share one"
    );
    let etag = multi.header("etag").to_owned();
    assert!(
        on_key
            .iter()
            .filter(|r| r.method == "GET")
            .all(|r| r.if_match.as_deref() == Some(etag.as_str())),
        "every read is pinned to the version whose metadata was served"
    );
}

#[tokio::test]
async fn s3_failures_have_their_http_meaning() {
    // Wrong credentials: S3 answers 403; to a client that is the store being unavailable.
    let mut fx = Fixture::s3().large(BIG, 1000);
    let good = fx.router();
    assert_eq!(get(&good, BIG_URL, &[]).await.status, 200);
    let mut secrets = fx.secrets();
    secrets.s3_credentials = Some(aws_sdk_s3::config::Credentials::new(
        "someone-else",
        "wrong-secret",
        None,
        None,
        "test",
    ));
    let denied =
        release_edge::app(release_edge::App::build(fx.config.clone(), secrets).expect("state"));
    let reply = get(&denied, BIG_URL, &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"], "store_unavailable");
    assert_eq!(reply.header("retry-after"), "5");

    // A missing key is a 404.
    let missing = get(&good, "/releases/v1.2.0/none.exe", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");

    // Nothing listening: unavailable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    fx.config.store.endpoint = Some(format!("http://{port}"));
    fx.config.store.max_attempts = 1;
    let refused = get(&fx.router(), BIG_URL, &[]).await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);

    // Accepts, never answers: the first-byte timeout makes it a 504.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    fx.config.store.endpoint = Some(format!("http://{}", silent.local_addr().expect("addr")));
    fx.config.store.first_byte_timeout = Duration::from_millis(300);
    let start = Instant::now();
    let slow = get(&fx.router(), BIG_URL, &[]).await;
    assert_eq!(slow.status, 504);
    assert_eq!(slow.json()["error"], "store_timeout");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(silent);
}

/// An electron-builder output folder for Linux (`latest-linux.yml`), as publish.rs makes them.
fn dist(version: &str, files: &[(&str, Vec<u8>)]) -> crate::publish::Dist {
    crate::publish::Dist::new(version, "latest-linux.yml", files)
}

// The CLI runs as a child process and waits synchronously; the S3 server in this process
// needs a worker thread of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_uploads_large_files_in_parts_and_rollback_works_on_s3() {
    let mut fx = Fixture::s3();
    fx.config.cache.object_ttl = Duration::ZERO;
    let v1 = dist("1.0.0", &[("App-1.0.0.AppImage", pattern(5000))]);
    let out = publish(&fx, &v1, "1.0.0");
    ok(&out);
    let big = pattern(40 << 20);
    let v2 = dist("1.1.0", &[("App-1.1.0.AppImage", big.clone())]);
    let out = publish(&fx, &v2, "1.1.0");
    ok(&out);

    let s3 = fx.s3.as_ref().expect("s3");
    let parts = s3
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PUT"
                && r.target.contains("App-1.1.0.AppImage")
                && r.target.contains("partNumber=")
        })
        .count();
    assert_eq!(parts, 3, "40 MiB in 16 MiB parts");
    let clock = Clock::manual();
    let state = fx.state_on(&clock);
    let router = release_edge::app(state.clone());
    let reply = get(&router, "/releases/v1.1.0/App-1.1.0.AppImage", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.as_ref() == big.as_slice(),
        "the multipart upload reassembles byte for byte"
    );
    let feed = get(&router, "/update/linux/x64/1.0.0/latest-linux.yml", &[]).await;
    assert!(String::from_utf8_lossy(&feed.body).starts_with("version: 1.1.0"));

    // Same bytes again: nothing uploaded; other bytes under the same name: refused.
    let again = publish(&fx, &v2, "1.1.0");
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 uploaded, 1 already there"));
    let tampered = dist("1.1.0", &[("App-1.1.0.AppImage", pattern(1234))]);
    let refused = publish(&fx, &tampered, "1.1.0");
    failed_with(&refused, "refusing to overwrite");

    let back = rollback(&fx, "latest", "1.0.0");
    ok(&back);
    clock.advance(fx.config.cache.manifest_ttl);
    let feed_path = "/update/linux/x64/0.1.0/latest-linux.yml";
    get(&router, feed_path, &[]).await;
    state.manifests.settled().await;
    let feed = get(&router, feed_path, &[]).await;
    assert!(String::from_utf8_lossy(&feed.body).starts_with("version: 1.0.0"));
    let missing = rollback(&fx, "latest", "0.9.0");
    failed_with(&missing, "no channel files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_killed_mid_multipart_leaves_the_bucket_serving_the_old_release() {
    let mut fx = Fixture::s3();
    fx.config.cache.object_ttl = Duration::ZERO;
    let v1 = dist("1.0.0", &[("App-1.0.0.AppImage", pattern(5000))]);
    let out = publish(&fx, &v1, "1.0.0");
    ok(&out);

    let v2 = dist("1.1.0", &[("App-1.1.0.AppImage", pattern(96 << 20))]);
    let mut child = cli(&fx)
        .args(["publish", "--version", "1.1.0"])
        .arg(v2.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn publish");
    let s3 = fx.s3.as_ref().expect("s3");
    let start = Instant::now();
    let caught = loop {
        if s3
            .requests()
            .iter()
            .any(|r| r.target.contains("partNumber=2"))
        {
            child.kill().expect("kill");
            break true;
        }
        if child.try_wait().expect("try_wait").is_some()
            || start.elapsed() > Duration::from_secs(60)
        {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let _ = child.wait();
    assert!(caught, "killed during the multipart upload");

    let router = fx.router();
    assert_eq!(
        get(&router, "/releases/v1.1.0/App-1.1.0.AppImage", &[])
            .await
            .status,
        404,
        "an unfinished upload is invisible"
    );
    let feed = get(&router, "/update/linux/x64/0.1.0/latest-linux.yml", &[]).await;
    assert!(String::from_utf8_lossy(&feed.body).starts_with("version: 1.0.0"));
    assert_eq!(
        get(&router, "/releases/v1.0.0/App-1.0.0.AppImage", &[])
            .await
            .body
            .as_ref(),
        pattern(5000).as_slice()
    );
}
