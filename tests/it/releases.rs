//! `GET|HEAD /releases/*` in-process: every point of SPEC §2.1, asserted on bytes and headers.

use std::time::Duration;

use axum::Router;
use axum::routing::get as get_route;
use release_edge::clock::Clock;

use crate::support::{Fixture, get, pattern, request, send};

const EXE: &str = "releases/v1.2.0/App Setup 1.2.0.exe";
const EXE_URL: &str = "/releases/v1.2.0/App%20Setup%201.2.0.exe";
const BIG: &str = "releases/v1.2.0/App-1.2.0.AppImage";
const BIG_URL: &str = "/releases/v1.2.0/App-1.2.0.AppImage";
const BIG_LEN: usize = 300_000;
const MANIFEST: &str = "releases/latest/latest.yml";
const MANIFEST_BODY: &str = "version: 1.2.0\npath: App Setup 1.2.0.exe\n";

fn fixture() -> Fixture {
    with_files(Fixture::new())
}

/// The same objects in each kind of store: every behaviour of `/releases` must hold for both.
fn fixtures() -> [Fixture; 2] {
    Fixture::both().map(with_files)
}

fn with_files(fx: Fixture) -> Fixture {
    fx.file(EXE, pattern(5_000))
        .large(BIG, BIG_LEN)
        .file(MANIFEST, MANIFEST_BODY)
        .file("releases/v1.2.0/Ünïcödé App.dmg", b"dmg bytes")
}

/// Splits a `multipart/byteranges` body the way electron-updater's DataSplitter reads it:
/// `--boundary` first, headers to the blank line, then exactly the expected part lengths.
fn split_multipart(body: &[u8], boundary: &str, lengths: &[usize]) -> Vec<(String, Vec<u8>)> {
    let mut parts = Vec::new();
    let mut pos = 0;
    let first = format!("--{boundary}");
    assert!(
        body.starts_with(first.as_bytes()),
        "body starts with the boundary"
    );
    pos += first.len();
    for &len in lengths {
        let rest = &body[pos..];
        let blank = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("part headers end");
        let head = String::from_utf8(rest[..blank].to_vec()).expect("ascii headers");
        let start = pos + blank + 4;
        parts.push((head, body[start..start + len].to_vec()));
        pos = start + len;
        let delimiter = format!("\r\n--{boundary}");
        assert_eq!(&body[pos..pos + delimiter.len()], delimiter.as_bytes());
        pos += delimiter.len();
    }
    assert_eq!(&body[pos..], b"--\r\n", "close delimiter ends the body");
    parts
}

/// `bytes=a-b, c-d, ...` as electron-updater writes it (comma and space).
fn ranges_header(ranges: &[(usize, usize)]) -> String {
    let specs: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    format!("bytes={}", specs.join(", "))
}

fn boundary_of(content_type: &str) -> String {
    let (_, boundary) = content_type
        .rsplit_once("; boundary=")
        .expect("boundary is the last parameter");
    assert!(!boundary.contains(';'));
    boundary.to_owned()
}

#[tokio::test]
async fn whole_object_with_every_header() {
    for fx in fixtures() {
        let router = fx.router();
        let reply = get(&router, EXE_URL, &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.as_ref(), pattern(5_000).as_slice());
        assert_eq!(reply.header("accept-ranges"), "bytes");
        assert_eq!(reply.header("content-length"), "5000");
        assert_eq!(
            reply.header("content-type"),
            "application/vnd.microsoft.portable-executable"
        );
        assert_eq!(
            reply.header("content-disposition"),
            "attachment; filename=\"App Setup 1.2.0.exe\""
        );
        assert_eq!(
            reply.header("cache-control"),
            "public, max-age=31536000, immutable"
        );
        let etag = reply.header("etag");
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34,
            "{etag}"
        );
        let modified = httpdate::parse_http_date(reply.header("last-modified")).expect("date");
        let age = std::time::SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default();
        assert!(age < Duration::from_secs(600));
        assert!(!reply.header("x-request-id").is_empty());
    }
}

#[tokio::test]
async fn manifests_get_the_manifest_cache_policy() {
    for mut fx in fixtures() {
        fx.config.cache.manifest_max_age = 120;
        let reply = get(
            &fx.router(),
            "/releases/latest/latest.yml?noCache=1a2b",
            &[],
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.as_ref(), MANIFEST_BODY.as_bytes());
        assert_eq!(reply.header("content-type"), "application/yaml");
        assert_eq!(
            reply.header("cache-control"),
            "public, max-age=120, stale-while-revalidate=60, stale-if-error=86400"
        );
        assert!(reply.headers.get("content-disposition").is_none());
    }
}

#[tokio::test]
async fn head_has_the_headers_of_get_and_no_body() {
    for fx in fixtures() {
        let router = fx.router();
        let full = get(&router, BIG_URL, &[]).await;
        let head = request(&router, "HEAD", BIG_URL, &[("range", "bytes=0-9")]).await;
        assert_eq!(head.status, 200, "Range is defined for GET only");
        assert!(head.body.is_empty());
        for name in [
            "content-length",
            "etag",
            "last-modified",
            "content-type",
            "cache-control",
        ] {
            assert_eq!(head.header(name), full.header(name), "{name}");
        }
        assert_eq!(head.header("content-length"), BIG_LEN.to_string());
    }
}

#[tokio::test]
async fn percent_encoded_non_ascii_names() {
    for fx in fixtures() {
        let router = fx.router();
        let reply = get(
            &router,
            "/releases/v1.2.0/%C3%9Cn%C3%AFc%C3%B6d%C3%A9%20App.dmg",
            &[],
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.as_ref(), b"dmg bytes");
        assert_eq!(
            reply.header("content-disposition"),
            "attachment; filename=\"_n_c_d__App.dmg\"; filename*=UTF-8''%C3%9Cn%C3%AFc%C3%B6d%C3%A9%20App.dmg"
        );
    }
}

#[tokio::test]
async fn single_suffix_and_open_ranges() {
    for fx in fixtures() {
        let router = fx.router();
        let data = pattern(BIG_LEN);
        let cases = [
            ("bytes=0-99", 0, 99),
            ("bytes=70000-200000", 70_000, 200_000),
            ("bytes=-500", BIG_LEN - 500, BIG_LEN - 1),
            ("bytes=299990-", BIG_LEN - 10, BIG_LEN - 1),
            ("bytes=299990-999999999", BIG_LEN - 10, BIG_LEN - 1),
            ("bytes=-999999", 0, BIG_LEN - 1),
        ];
        for (range, start, end) in cases {
            let reply = get(&router, BIG_URL, &[("range", range)]).await;
            assert_eq!(reply.status, 206, "{range}");
            assert_eq!(
                reply.header("content-range"),
                format!("bytes {start}-{end}/{BIG_LEN}"),
                "{range}"
            );
            assert_eq!(
                reply.header("content-length"),
                (end - start + 1).to_string()
            );
            assert_eq!(reply.body.as_ref(), &data[start..=end], "{range}");
            assert_eq!(reply.header("etag").len(), 34);
        }
    }
}

#[tokio::test]
async fn unsatisfiable_range_is_416_with_json_and_content_range() {
    for fx in fixtures() {
        let router = fx.router();
        for range in ["bytes=300000-", "bytes=400000-400010, 500000-", "bytes=-0"] {
            let reply = get(&router, BIG_URL, &[("range", range)]).await;
            assert_eq!(reply.status, 416, "{range}");
            assert_eq!(reply.header("content-range"), format!("bytes */{BIG_LEN}"));
            assert_eq!(reply.json()["error"], "range_not_satisfiable");
        }
    }
}

#[tokio::test]
async fn malformed_range_is_ignored() {
    for fx in fixtures() {
        let router = fx.router();
        for range in [
            "bytes=abc",
            "bytes=5-1",
            "chunks=0-1",
            "bytes 0-1",
            "bytes=0-1;2-3",
        ] {
            let reply = get(&router, EXE_URL, &[("range", range)]).await;
            assert_eq!(reply.status, 200, "{range}");
            assert_eq!(reply.body.len(), 5_000);
            assert!(reply.headers.get("content-range").is_none());
        }
    }
}

#[tokio::test]
async fn multiple_ranges_are_multipart_in_request_order() {
    for fx in fixtures() {
        let router = fx.router();
        let data = pattern(BIG_LEN);
        let wanted = [
            (0usize, 9usize),
            (10, 10),
            (70_000, 140_000),
            (299_000, 299_999),
        ];
        let header = ranges_header(&wanted);
        let reply = get(&router, BIG_URL, &[("range", &header)]).await;
        assert_eq!(reply.status, 206);
        assert!(reply.headers.get("content-range").is_none());
        let ct = reply.header("content-type");
        assert!(ct.starts_with("multipart/byteranges; boundary="), "{ct}");
        let boundary = boundary_of(ct);
        assert_eq!(
            reply.header("content-length"),
            reply.body.len().to_string(),
            "fixed Content-Length equals the body"
        );
        let lengths: Vec<usize> = wanted.iter().map(|(a, b)| b - a + 1).collect();
        let parts = split_multipart(&reply.body, &boundary, &lengths);
        for ((head, bytes), (a, b)) in parts.iter().zip(wanted) {
            assert!(
                head.contains("Content-Type: application/vnd.appimage"),
                "{head}"
            );
            assert!(
                head.contains(&format!("Content-Range: bytes {a}-{b}/{BIG_LEN}")),
                "{head}"
            );
            assert_eq!(bytes.as_slice(), &data[a..=b]);
        }
    }
}

#[tokio::test]
async fn a_thousand_ranges_like_electron_updater() {
    for fx in fixtures() {
        let router = fx.router();
        let data = pattern(BIG_LEN);
        let wanted: Vec<(usize, usize)> = (0..1000).map(|i| (i * 297, i * 297 + 150)).collect();
        let header = ranges_header(&wanted);
        let reply = get(&router, BIG_URL, &[("range", &header)]).await;
        assert_eq!(reply.status, 206);
        let boundary = boundary_of(reply.header("content-type"));
        let lengths: Vec<usize> = wanted.iter().map(|(a, b)| b - a + 1).collect();
        let parts = split_multipart(&reply.body, &boundary, &lengths);
        assert_eq!(parts.len(), 1000);
        for ((_, bytes), (a, b)) in parts.iter().zip(&wanted) {
            assert_eq!(bytes.as_slice(), &data[*a..=*b]);
        }
    }
}

#[tokio::test]
async fn too_many_overlapping_or_backwards_ranges_get_the_whole_body() {
    for fx in fixtures() {
        let router = fx.router();
        let too_many = format!(
            "bytes={}",
            (0..1025)
                .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
                .collect::<Vec<_>>()
                .join(",")
        );
        for range in [
            too_many.as_str(),
            "bytes=0-100, 50-150",
            "bytes=1000-2000, 0-10",
        ] {
            let reply = get(&router, BIG_URL, &[("range", range)]).await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body.len(), BIG_LEN);
        }
    }
}

#[tokio::test]
async fn conditional_requests() {
    for fx in fixtures() {
        let router = fx.router();
        let first = get(&router, EXE_URL, &[]).await;
        let etag = first.header("etag").to_owned();
        let modified = first.header("last-modified").to_owned();

        let not_modified = get(&router, EXE_URL, &[("if-none-match", &etag)]).await;
        assert_eq!(not_modified.status, 304);
        assert!(not_modified.body.is_empty());
        assert_eq!(not_modified.header("etag"), etag);
        assert_eq!(
            not_modified.header("cache-control"),
            "public, max-age=31536000, immutable"
        );

        let by_date = get(&router, EXE_URL, &[("if-modified-since", &modified)]).await;
        assert_eq!(by_date.status, 304);

        let other = get(&router, EXE_URL, &[("if-none-match", "\"something-else\"")]).await;
        assert_eq!(other.status, 200);
        assert_eq!(other.body.len(), 5_000);

        let failed = get(&router, EXE_URL, &[("if-match", "\"something-else\"")]).await;
        assert_eq!(failed.status, 412);
        assert_eq!(failed.json()["error"], "precondition_failed");
        let passed = get(&router, EXE_URL, &[("if-match", &etag)]).await;
        assert_eq!(passed.status, 200);

        let resumed = get(
            &router,
            EXE_URL,
            &[("range", "bytes=100-"), ("if-range", &etag)],
        )
        .await;
        assert_eq!(resumed.status, 206);
        assert_eq!(resumed.body.as_ref(), &pattern(5_000)[100..]);
        let by_date = get(
            &router,
            EXE_URL,
            &[("range", "bytes=100-"), ("if-range", &modified)],
        )
        .await;
        assert_eq!(by_date.status, 206);
        let stale = get(
            &router,
            EXE_URL,
            &[("range", "bytes=100-"), ("if-range", "\"old-version\"")],
        )
        .await;
        assert_eq!(stale.status, 200, "If-Range mismatch: the whole new body");
        assert_eq!(stale.body.len(), 5_000);
    }
}

#[tokio::test]
async fn etag_follows_content_once_the_object_ttl_is_over() {
    let mut fx = fixture();
    fx.config.cache.object_ttl = Duration::from_secs(30);
    let clock = Clock::manual();
    let router = release_edge::app(fx.state_on(&clock));
    let before = get(&router, "/releases/latest/latest.yml", &[]).await;
    fx.write(MANIFEST, "version: 1.3.0\npath: App Setup 1.3.0.exe\n");
    // Within the TTL the store's last answer is reused: same bytes, same ETag.
    let reused = get(&router, "/releases/latest/latest.yml", &[]).await;
    assert_eq!(reused.body, before.body);
    assert_eq!(reused.header("etag"), before.header("etag"));
    clock.advance(Duration::from_secs(30));
    let after = get(
        &router,
        "/releases/latest/latest.yml",
        &[("if-none-match", before.header("etag"))],
    )
    .await;
    assert_eq!(after.status, 200, "a changed file no longer matches");
    assert_ne!(after.header("etag"), before.header("etag"));
    assert!(after.body.starts_with(b"version: 1.3.0"));
}

#[tokio::test]
async fn traversal_is_refused_before_the_store_and_nothing_outside_is_served() {
    let fx = fixture();
    // A secret beside the store root, and a symlink inside the store that points at it.
    let secret_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(secret_dir.path().join("secret.txt"), "TOP SECRET").expect("write");
    std::os::unix::fs::symlink(
        secret_dir.path().join("secret.txt"),
        fx.root().join("releases/v1.2.0/link.exe"),
    )
    .expect("symlink");
    let router = fx.router();
    let bad = [
        "/releases/../Cargo.toml",
        "/releases/%2e%2e/%2e%2e/etc/passwd",
        "/releases/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/releases/v1.2.0/..%2f..%2f..%2fetc%2fpasswd",
        "/releases/%252e%252e/etc/passwd",
        "/releases/v1.2.0%5c..%5c..%5cx",
        "/releases/v1.2.0/a%00.exe",
        "/releases/v1.2.0/a%0d%0aSet-Cookie:x",
        "/releases/v1.2.0//x",
        "/releases/%ff",
    ];
    for path in bad {
        let reply = get(&router, path, &[]).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(reply.json()["error"], "invalid_path", "{path}");
        assert!(!reply.body.windows(10).any(|w| w == b"TOP SECRET"));
    }
    let long = format!("/releases/v1/{}", "a".repeat(2000));
    assert_eq!(get(&router, &long, &[]).await.status, 400);

    let escaped = get(&router, "/releases/v1.2.0/link.exe", &[]).await;
    assert_eq!(escaped.status, 404);
    assert!(!escaped.body.windows(10).any(|w| w == b"TOP SECRET"));
}

#[tokio::test]
async fn errors_are_json() {
    for fx in fixtures() {
        let router = fx.router();
        let missing = get(&router, "/releases/v9.9.9/none.exe", &[]).await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.json()["error"], "not_found");
        assert_eq!(missing.header("cache-control"), "no-store");
        if fx.kind() == "fs" {
            // A directory is not an object (S3 has no directories to ask for).
            let directory = get(&router, "/releases/v1.2.0", &[]).await;
            assert_eq!(directory.status, 404);
        }
        let route = get(&router, "/nothing-here", &[]).await;
        assert_eq!(route.status, 404);
        assert_eq!(route.json()["error"], "not_found");
        let method = request(&router, "DELETE", EXE_URL, &[]).await;
        assert_eq!(method.status, 405);
        assert_eq!(method.json()["error"], "method_not_allowed");
        assert_eq!(method.header("allow"), "GET, HEAD");
    }
}

#[tokio::test]
async fn metrics_count_by_matched_route() {
    for fx in fixtures() {
        let router = fx.router();
        get(&router, EXE_URL, &[]).await;
        get(&router, "/releases/latest/latest.yml", &[]).await;
        get(&router, "/releases/v9/missing", &[]).await;
        get(&router, "/random/path/1", &[]).await;
        let text =
            String::from_utf8(get(&router, "/metrics", &[]).await.body.to_vec()).expect("utf8");
        assert!(text.contains(
        "release_edge_http_requests_total{method=\"GET\",route=\"/releases/{*path}\",status=\"200\"} 2"
    ), "{text}");
        assert!(text.contains(
        "release_edge_http_requests_total{method=\"GET\",route=\"/releases/{*path}\",status=\"404\"} 1"
    ));
        assert!(text.contains(
            "release_edge_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1"
        ));
        let missing_body = r#"{"error":"not_found","message":"no object at releases/v9/missing"}"#;
        let bytes = 5_000 + MANIFEST_BODY.len() + missing_body.len();
        assert!(
            text.contains(&format!(
                "release_edge_response_bytes_total{{route=\"/releases/{{*path}}\"}} {bytes}"
            )),
            "{text}"
        );
        assert!(text.contains(
            "release_edge_http_request_duration_seconds_count{route=\"/releases/{*path}\"} 3"
        ));
        assert!(
            !text.contains("random/path"),
            "raw paths never become labels"
        );
        assert!(text.contains("release_edge_inflight_downloads 0"));
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let fx = fixture();
    let router = fx.router();
    let health = get(&router, "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    let ready = get(&router, "/readyz", &[]).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");

    // A store whose root disappeared is not ready once the last good probe is stale.
    let gone = Fixture::new();
    let clock = Clock::manual();
    let router = release_edge::app(gone.state_on(&clock));
    assert_eq!(get(&router, "/readyz", &[]).await.status, 200);
    std::fs::remove_dir_all(gone.root()).expect("rm root");
    assert_eq!(
        get(&router, "/readyz", &[]).await.status,
        200,
        "within the readiness interval the last probe stands"
    );
    clock.advance(gone.config.server.readiness_interval);
    let not_ready = get(&router, "/readyz", &[]).await;
    assert_eq!(not_ready.status, 503);
    assert_eq!(not_ready.json()["error"], "not_ready");
}

async fn boom() -> &'static str {
    panic!("kaboom")
}

#[tokio::test]
async fn a_panicking_handler_answers_500_json() {
    let fx = fixture();
    let state = fx.state();
    let boom: Router<release_edge::AppState> = Router::new().route("/boom", get_route(boom));
    let router = release_edge::middleware::apply(boom, state.clone()).with_state(state);
    let reply = send(
        &router,
        http::Request::get("/boom")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"], "internal");
    assert!(
        !String::from_utf8_lossy(&reply.body).contains("kaboom"),
        "opaque to clients"
    );
}
