//! nginx's `proxy_cache` in front of the real server, with deploy/cdn/nginx/release-edge.conf
//! as shipped (only its listen address, upstream and cache directory swapped for the test's):
//! `nginx -t`, then a feed and a ranged artifact pulled through it — MISS, HIT, revalidation —
//! checked by `X-Cache-Status`, status and bytes, and by what reached the origin.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use release_edge::AppState;

use crate::support::{Fixture, TestServer, channel_yml, on_free_port, pattern};

const FEED_ROUTE: &str = "/update/{platform}/{arch}/{version}/{file}";
const FEED_URL: &str = "/update/linux/x64/1.0.0/latest-linux.yml";
const RELEASES_ROUTE: &str = "/releases/{*path}";
const ARTIFACT_KEY: &str = "releases/v1.1.0/App-1.1.0.AppImage";
const ARTIFACT_URL: &str = "/releases/v1.1.0/App-1.1.0.AppImage";
const SPACED_KEY: &str = "releases/v1.1.0/App Setup 1.1.0.exe";
const SPACED_URL: &str = "/releases/v1.1.0/App%20Setup%201.1.0.exe";
/// Three 1 MiB slices and a bit of a fourth.
const ARTIFACT_LEN: usize = 3 * 1024 * 1024 + 1234;
const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/cdn/nginx/release-edge.conf"
);

fn nginx_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("nginx is not installed (scripts/test.sh installs it)");
}

/// A real nginx on 127.0.0.1, running the shipped config in front of `origin`.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(origin: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Workers run as nobody when the master is root: they must reach the cache.
        let mut perms = std::fs::metadata(dir.path()).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(dir.path(), perms).expect("chmod");
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let shipped = std::fs::read_to_string(SHIPPED).expect("read the shipped nginx config");
        let site = [
            ("listen 80;", format!("listen {addr};")),
            ("server 127.0.0.1:8080;", format!("server {origin};")),
            (
                "/var/cache/nginx/release-edge",
                dir.path().join("cache").display().to_string(),
            ),
        ]
        .into_iter()
        .fold(shipped, |conf, (from, to)| {
            assert_eq!(conf.matches(from).count(), 1, "`{from}` in {SHIPPED}");
            conf.replace(from, &to)
        });
        std::fs::write(dir.path().join("release-edge.conf"), site).expect("write site");
        let d = dir.path().display();
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/release-edge.conf;\n}}\n"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main).expect("write nginx.conf");

        let test = run_nginx(dir.path(), &conf, &["-t"]);
        assert!(
            test.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&test.stderr)
        );
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s: {}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn run_nginx(dir: &Path, conf: &Path, args: &[&str]) -> Output {
    Command::new(nginx_binary())
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run nginx")
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One answer through the edge.
struct Reply {
    status: u16,
    cache: Option<String>,
    etag: Option<String>,
    content_range: Option<String>,
    content_type: String,
    body: Vec<u8>,
}

async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let client = reqwest::Client::new();
    let mut request = client.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("request through nginx");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, cache, etag, content_range) = (
        response.status().as_u16(),
        header("x-cache-status"),
        header("etag"),
        header("content-range"),
    );
    let content_type = header("content-type").unwrap_or_default();
    let body = response.bytes().await.expect("body").to_vec();
    Reply {
        status,
        cache,
        etag,
        content_range,
        content_type,
        body,
    }
}

fn answered(state: &AppState, route: &str, status: &str) -> u64 {
    state
        .metrics
        .http_requests
        .with_label_values(&[route, "GET", status])
        .get()
}

/// Every request the origin answered, whatever its route and status.
fn all_requests(state: &AppState) -> u64 {
    use prometheus::core::Collector;
    state
        .metrics
        .http_requests
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

async fn origin_and_edge(manifest_max_age: u64) -> (Fixture, TestServer, Nginx) {
    let artifact = pattern(ARTIFACT_LEN);
    let mut fx = Fixture::new()
        .file(ARTIFACT_KEY, &artifact)
        .file(SPACED_KEY, &artifact)
        .file(
            "releases/latest/latest-linux.yml",
            channel_yml("1.1.0", &[("App-1.1.0.AppImage", &artifact)], None),
        );
    on_free_port(&mut fx.config);
    fx.config.cache.manifest_max_age = manifest_max_age;
    let server = TestServer::start(fx.config.clone()).await;
    let nginx = tokio::task::spawn_blocking({
        let origin = server.addr;
        move || Nginx::start(origin)
    })
    .await
    .expect("start nginx");
    (fx, server, nginx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_is_cached_then_revalidated_with_the_origin() {
    // max-age=1: the entry expires a second after it is stored.
    let (_fx, origin, edge) = origin_and_edge(1).await;
    let state = &origin.state;
    let direct = get(&origin.url(FEED_URL), &[]).await;
    assert_eq!(direct.status, 200);
    let etag = direct.etag.clone().expect("the origin's ETag");
    let served_before = answered(state, FEED_ROUTE, "200");

    let miss = get(&edge.url(FEED_URL), &[]).await;
    assert_eq!((miss.status, miss.cache.as_deref()), (200, Some("MISS")));
    assert_eq!(miss.body, direct.body);
    assert_eq!(miss.etag.as_deref(), Some(etag.as_str()));

    let hit = get(&edge.url(FEED_URL), &[]).await;
    assert_eq!((hit.status, hit.cache.as_deref()), (200, Some("HIT")));
    assert_eq!(hit.body, direct.body);
    // electron-updater's cache buster is not part of the key.
    let busted = get(&edge.url(&format!("{FEED_URL}?noCache=1a2b3c")), &[]).await;
    assert_eq!((busted.status, busted.cache.as_deref()), (200, Some("HIT")));
    assert_eq!(busted.body, direct.body);
    // A client that has the feed is answered 304 by the edge itself.
    let not_modified = get(&edge.url(FEED_URL), &[("if-none-match", &etag)]).await;
    assert_eq!(
        (not_modified.status, not_modified.cache.as_deref()),
        (304, Some("HIT"))
    );
    assert!(not_modified.body.is_empty());
    assert_eq!(answered(state, FEED_ROUTE, "200"), served_before + 1);
    assert_eq!(answered(state, FEED_ROUTE, "304"), 0);

    // Once expired, the edge serves its copy while it revalidates in the background with
    // If-None-Match: the origin answers 304 (no body), and the entry is fresh again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let reply = get(&edge.url(FEED_URL), &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, direct.body, "the feed changed through the edge");
        let status = reply.cache.expect("X-Cache-Status");
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if answered(state, FEED_ROUTE, "304") >= 1 && status == "HIT" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no revalidation within 10 s; X-Cache-Status went {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // STALE: served from the cache while the background update revalidates.
    assert!(
        seen.iter().any(|s| s == "STALE"),
        "the expired entry was not served stale while revalidating: {seen:?}"
    );
    // The revalidation cost the origin 304s only, never the body again.
    assert_eq!(answered(state, FEED_ROUTE, "200"), served_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ranged_artifact_is_cached_in_slices() {
    let (_fx, origin, edge) = origin_and_edge(300).await;
    let state = &origin.state;
    let artifact = pattern(ARTIFACT_LEN);
    // Across the first two slice boundaries: three slices, each a range from the origin.
    let (first, last) = (1_048_000usize, 2_098_000usize);
    let range = format!("bytes={first}-{last}");

    let miss = get(&edge.url(ARTIFACT_URL), &[("range", &range)]).await;
    assert_eq!((miss.status, miss.cache.as_deref()), (206, Some("MISS")));
    assert_eq!(
        miss.content_range.as_deref(),
        Some(format!("bytes {first}-{last}/{ARTIFACT_LEN}").as_str())
    );
    assert!(miss.body == artifact[first..=last], "MISS: bytes differ");
    assert_eq!(
        answered(state, RELEASES_ROUTE, "206"),
        3,
        "one origin range per slice"
    );
    assert_eq!(answered(state, RELEASES_ROUTE, "200"), 0);

    let hit = get(&edge.url(ARTIFACT_URL), &[("range", &range)]).await;
    assert_eq!((hit.status, hit.cache.as_deref()), (206, Some("HIT")));
    assert!(hit.body == artifact[first..=last], "HIT: bytes differ");
    // Another range inside the cached slices, and a suffix range: the origin is not asked.
    let inside = get(&edge.url(ARTIFACT_URL), &[("range", "bytes=0-99")]).await;
    assert_eq!((inside.status, inside.cache.as_deref()), (206, Some("HIT")));
    assert!(inside.body == artifact[..100]);
    assert_eq!(answered(state, RELEASES_ROUTE, "206"), 3);

    // The whole file: the missing fourth slice is fetched, the others come from the cache.
    let whole = get(&edge.url(ARTIFACT_URL), &[]).await;
    assert_eq!(whole.status, 200);
    assert!(whole.body == artifact, "whole body differs");
    assert_eq!(answered(state, RELEASES_ROUTE, "206"), 4);
    let again = get(&edge.url(ARTIFACT_URL), &[("range", "bytes=-1234")]).await;
    assert_eq!((again.status, again.cache.as_deref()), (206, Some("HIT")));
    assert!(again.body == artifact[ARTIFACT_LEN - 1234..]);
    assert_eq!(answered(state, RELEASES_ROUTE, "206"), 4);
    assert_eq!(answered(state, RELEASES_ROUTE, "200"), 0);

    // electron-updater's differential download: several ranges (ascending), one multipart
    // answer. nginx cannot build it from slices; the origin does.
    let ranges = "bytes=0-9, 2000000-2000009";
    let direct = get(&origin.url(ARTIFACT_URL), &[("range", ranges)]).await;
    let multi = get(&edge.url(ARTIFACT_URL), &[("range", ranges)]).await;
    assert_eq!((multi.status, multi.cache.as_deref()), (206, None));
    assert!(
        multi
            .content_type
            .starts_with("multipart/byteranges; boundary="),
        "{}",
        multi.content_type
    );
    assert_eq!(multi.body.len(), direct.body.len());
    let parts = [&artifact[..10], &artifact[2_000_000..2_000_010]];
    let at = |part: &[u8]| multi.body.windows(part.len()).position(|w| w == part);
    let (first_at, second_at) = (at(parts[0]), at(parts[1]));
    assert!(
        matches!((first_at, second_at), (Some(a), Some(b)) if a < b),
        "parts missing or out of order: {first_at:?} {second_at:?}"
    );
    assert_eq!(
        answered(state, RELEASES_ROUTE, "206"),
        6,
        "both went to the origin"
    );

    // A file name electron-updater percent-encodes survives the detour to the origin.
    let spaced = get(&edge.url(SPACED_URL), &[("range", ranges)]).await;
    assert_eq!(spaced.status, 206);
    assert!(spaced.content_type.starts_with("multipart/byteranges"));
    assert!(
        spaced
            .body
            .windows(10)
            .any(|w| w == &artifact[2_000_000..2_000_010])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_is_never_cached_and_metrics_stay_private() {
    let (_fx, origin, edge) = origin_and_edge(300).await;
    let state = &origin.state;
    let before = all_requests(state);
    let direct = get(&origin.url("/admin/releases"), &[]).await;
    for _ in 0..2 {
        let reply = get(&edge.url("/admin/releases"), &[]).await;
        assert_eq!(reply.status, direct.status);
        assert_eq!(reply.cache, None, "/admin/ went through the cache");
    }
    assert_eq!(
        all_requests(state),
        before + 3,
        "each request reached the origin"
    );

    let metrics = get(&edge.url("/metrics"), &[]).await;
    assert_eq!(metrics.status, 404);
    assert_eq!(get(&origin.url("/metrics"), &[]).await.status, 200);
}
