//! Operators' view, end to end: the real `release-edge` binary scraped by a real Prometheus
//! (Debian's `prometheus`) with the repository's scrape config and alert rules. Update checks
//! from several client versions, downloads, a GitHub-only channel; then the store's host goes
//! away and GitHub rate-limits. Every query of the committed Grafana dashboard and every alert
//! expression returns data, every metric they name is in the server's `/metrics`, and the
//! alerts for that failure fire.
//!
//! The alert rules are loaded with every `for:` shortened to [`TEST_FOR`] (the repository's
//! 1 to 15 minutes would make this test that long); the test asserts, from Prometheus's own
//! rules API, that the expressions it evaluates are exactly the repository's.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use crate::github_standin::{GitHubStandIn, ReleaseSpec};
use crate::support::{BinaryServer, Fixture, channel_yml, pattern, require_program};

/// The operator's files, as committed.
const OBSERVABILITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/observability");

/// `for:` of every alert in the test's copy of the rules.
const TEST_FOR: &str = "2s";

/// What Grafana puts in for the dashboard's variables here (as `dashboard.py --rules` does for
/// promtool): every job and instance, a rate window of many scrapes, the test's whole run.
const GRAFANA_VARIABLES: [(&str, &str); 4] = [
    ("$__rate_interval", "1m"),
    ("$__range", "10m"),
    ("$job", ".*"),
    ("$instance", ".*"),
];

/// The alerts the induced failure (the store unreachable, GitHub rate-limiting) must fire.
const INDUCED: [&str; 6] = [
    "ReleaseEdgeNotReady",
    "ReleaseEdgeStoreCircuitOpen",
    "ReleaseEdgeStoreErrors",
    "ReleaseEdgeServingStale",
    "ReleaseEdgeGitHubRateLimited",
    "ReleaseEdgeHigh5xxRatio",
];

/// Alerts that nothing here may fire: no CDN is configured, and update checks never stop.
/// (`ReleaseEdgeSlowResponses` is left out: a stall of this shared machine could fire it.)
const QUIET: [&str; 2] = ["ReleaseEdgeCdnPurgesFailing", "ReleaseEdgeNoUpdateChecks"];

/// Client versions that send update checks; 0.9.0 is not in the store.
const CLIENT_VERSIONS: [&str; 4] = ["1.0.0", "1.1.0", "1.2.0", "0.9.0"];

const MAC_ZIP: &str = "App-1.2.0-mac.zip";
const ALPHA: &str = "1.3.0-alpha.1";
const ALPHA_ZIP: &str = "App-1.3.0-alpha.1-mac.zip";

/// Longest the whole failure phase may take to fire every induced alert.
const ALERT_DEADLINE: Duration = Duration::from_secs(120);

/// One alerting rule of `alerts.yml`.
struct Rule {
    name: String,
    expr: String,
}

fn read_observability(name: &str) -> String {
    std::fs::read_to_string(Path::new(OBSERVABILITY).join(name))
        .unwrap_or_else(|e| panic!("read deploy/observability/{name}: {e}"))
}

/// The alerting rules of the repository's `alerts.yml`.
fn alert_rules() -> Vec<Rule> {
    let doc: Yaml = serde_norway::from_str(&read_observability("alerts.yml")).expect("alerts.yml");
    let mut rules = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            rules.push(Rule {
                name: rule["alert"].as_str().expect("alert name").to_owned(),
                expr: rule["expr"].as_str().expect("expr").to_owned(),
            });
        }
    }
    rules
}

/// `alerts.yml` with every `for:` set to [`TEST_FOR`] and nothing else changed.
fn rules_for_test() -> String {
    let mut doc: Yaml =
        serde_norway::from_str(&read_observability("alerts.yml")).expect("alerts.yml");
    for group in doc["groups"].as_sequence_mut().expect("groups") {
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            assert!(rule.get("for").is_some(), "every alert has a `for:`");
            rule["for"] = Yaml::from(TEST_FOR);
        }
    }
    serde_norway::to_string(&doc).expect("render rules")
}

/// (panel title, query with Grafana's variables filled in) of every query of the committed
/// dashboard.
fn dashboard_queries() -> Vec<(String, String)> {
    let board: Json = serde_json::from_str(&read_observability("release-edge.dashboard.json"))
        .expect("dashboard");
    let mut queries = Vec::new();
    for panel in board["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let mut expr = target["expr"].as_str().expect("expr").to_owned();
            for (name, value) in GRAFANA_VARIABLES {
                expr = expr.replace(name, value);
            }
            assert!(!expr.contains('$'), "a variable left in {expr}");
            queries.push((panel["title"].as_str().expect("title").to_owned(), expr));
        }
    }
    queries
}

/// Every `release_edge_*` metric name in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("release_edge_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn without_whitespace(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The repository's scrape config, with only what a test must change: one-second
/// intervals, the server's address, the path of the rules.
fn scrape_config(target: SocketAddr, rules: &Path) -> String {
    let mut config: Yaml =
        serde_norway::from_str(&read_observability("prometheus.yml")).expect("prometheus.yml");
    config["global"]["scrape_interval"] = Yaml::from("1s");
    config["global"]["evaluation_interval"] = Yaml::from("1s");
    config["rule_files"] = Yaml::Sequence(vec![Yaml::from(rules.display().to_string())]);
    let jobs = config["scrape_configs"].as_sequence_mut().expect("jobs");
    assert_eq!(jobs.len(), 1, "one scrape job");
    let job = &mut jobs[0];
    assert_eq!(job["job_name"].as_str(), Some("release-edge"));
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    job["scrape_timeout"] = Yaml::from("1s");
    job["static_configs"][0]["targets"] = Yaml::Sequence(vec![Yaml::from(target.to_string())]);
    serde_norway::to_string(&config).expect("render config")
}

/// A TCP proxy in front of the S3 server that can be made to fail: every connection, open or
/// new, is then cut at once, as when the store's host goes away.
struct FlakyProxy {
    endpoint: String,
    state: Arc<Mutex<ProxyState>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    failing: bool,
    connections: Vec<AbortHandle>,
}

impl FlakyProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = shared.lock().expect("proxy state");
                if state.failing {
                    continue; // dropping `client` closes it
                }
                let forward = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                state.connections.push(forward.abort_handle());
            }
        });
        Self {
            endpoint,
            state,
            task,
        }
    }

    fn fail(&self) {
        let mut state = self.state.lock().expect("proxy state");
        state.failing = true;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.fail();
        self.task.abort();
    }
}

/// A Prometheus server on 127.0.0.1, its data in a temporary directory.
struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("alerts.yml");
        std::fs::write(&rules, rules_for_test()).expect("write rules");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, scrape_config(target, &rules)).expect("write config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::new(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.http.get(format!("{}/-/ready", self.url)).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready within 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Json {
        let response = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("Prometheus {path}: {e}"));
        let body: Json = response.json().await.expect("Prometheus JSON");
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// The result vector of an instant query.
    async fn query(&self, expr: &str) -> Vec<Json> {
        let data = self.api("query", &[("query", expr)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of a query that returns one series.
    async fn value(&self, expr: &str) -> f64 {
        let result = self.query(expr).await;
        assert_eq!(result.len(), 1, "{expr}: {result:?}");
        result[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{expr}: {result:?}"))
    }

    /// Names of the alerts in `state` (`firing`, `pending`).
    async fn alerts(&self, state: &str) -> BTreeSet<String> {
        let data = self.api("alerts", &[]).await;
        data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == state)
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits until Prometheus has scraped the server once more (and so evaluated the rules
    /// on new samples): the timestamp of the newest `up` sample moves.
    async fn next_scrape(&self) {
        let last = self.last_scrape().await;
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.last_scrape().await <= last {
            assert!(
                Instant::now() < deadline,
                "no scrape within 15 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn last_scrape(&self) -> f64 {
        // On the selector itself: `timestamp()` of an expression (`up == 1`) is the
        // evaluation time, not the sample's.
        let result = self.query("timestamp(up{job=\"release-edge\"})").await;
        result
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests to the server under test, redirects not followed.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, bytes::Bytes) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        (status, body)
    }

    async fn status(&self, path: &str, headers: &[(&str, &str)]) -> StatusCode {
        self.get(path, headers).await.0
    }

    /// Update checks from every client version: electron-updater on macOS and Windows, the
    /// JSON protocol (Squirrel.Mac), the store's `beta` channel and GitHub's `alpha` channel.
    /// Returns the statuses, in order.
    async fn update_checks(&self) -> Vec<StatusCode> {
        let mut statuses = Vec::new();
        for version in CLIENT_VERSIONS {
            for path in [
                format!("/update/darwin/arm64/{version}/latest-mac.yml"),
                format!("/update/win32/x64/{version}/latest.yml"),
                format!("/update/darwin/arm64/{version}/beta-mac.yml"),
                format!("/update/darwin/arm64/{version}/alpha-mac.yml"),
            ] {
                statuses.push(self.status(&path, &[]).await);
            }
            let json = [("accept", "application/json")];
            statuses.push(
                self.status(&format!("/update/darwin/x64/{version}"), &json)
                    .await,
            );
        }
        statuses
    }
}

/// The store: 1.0.0, 1.1.0 and 1.2.0 (current on `latest` and `beta`), in a bucket.
fn store() -> (Fixture, Vec<u8>) {
    let zip = pattern(200_000);
    let exe = pattern(150_000);
    let mut fx = Fixture::s3();
    for old in ["1.0.0", "1.1.0"] {
        fx = fx.file(
            &format!("releases/v{old}/App-{old}-mac.zip"),
            pattern(1_000),
        );
    }
    let mac = channel_yml("1.2.0", &[(MAC_ZIP, &zip)], None);
    let fx = fx
        .file(&format!("releases/v1.2.0/{MAC_ZIP}"), &zip)
        .file("releases/v1.2.0/App-Setup-1.2.0.exe", &exe)
        .file("releases/latest/latest-mac.yml", &mac)
        .file("releases/latest/beta-mac.yml", &mac)
        .file(
            "releases/latest/latest.yml",
            channel_yml("1.2.0", &[("App-Setup-1.2.0.exe", &exe)], None),
        );
    (fx, zip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_sees_the_dashboard_queries_and_fires_the_alerts() {
    require_program("prometheus");
    let (fx, zip) = store();
    let s3 = fx.s3.as_ref().expect("s3 fixture");
    let upstream: SocketAddr = s3
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("s3 addr");
    let proxy = FlakyProxy::start(upstream).await;

    // GitHub holds a pre-release the store does not: the `alpha` channel.
    let gh = GitHubStandIn::start().await;
    let alpha_zip = pattern(3_000);
    gh.add_release(
        ReleaseSpec::new(&format!("v{ALPHA}"))
            .prerelease()
            .asset(
                "alpha-mac.yml",
                channel_yml(ALPHA, &[(ALPHA_ZIP, &alpha_zip)], None),
            )
            .asset(ALPHA_ZIP, alpha_zip),
    );

    let mut env: Vec<(&str, String)> = s3
        .env()
        .into_iter()
        .map(|(k, v)| {
            if k == "RELEASE_EDGE_STORE__ENDPOINT" {
                (k, proxy.endpoint.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    env.extend([
        // One attempt per request, and a circuit that opens after 20 failures and stays
        // open for the rest of the test.
        ("RELEASE_EDGE_STORE__MAX_ATTEMPTS", "1".to_owned()),
        ("RELEASE_EDGE_STORE__TIMEOUT", "2s".to_owned()),
        ("RELEASE_EDGE_STORE__CIRCUIT_FAILURES", "20".to_owned()),
        ("RELEASE_EDGE_STORE__CIRCUIT_OPEN_FOR", "5m".to_owned()),
        // Manifests and the version listing are revalidated every second; last good
        // copies stand in for 6 s, so that readiness fails within the test.
        ("RELEASE_EDGE_CACHE__MANIFEST_TTL", "1s".to_owned()),
        ("RELEASE_EDGE_CACHE__STALE_IF_ERROR", "6s".to_owned()),
        ("RELEASE_EDGE_SERVER__READINESS_INTERVAL", "1s".to_owned()),
        (
            "RELEASE_EDGE_GITHUB__OWNER",
            GitHubStandIn::OWNER.to_owned(),
        ),
        ("RELEASE_EDGE_GITHUB__REPO", GitHubStandIn::REPO.to_owned()),
        ("RELEASE_EDGE_GITHUB__API_URL", gh.api_url()),
        ("RELEASE_EDGE_GITHUB__REFRESH_INTERVAL", "1s".to_owned()),
        ("RELEASE_EDGE_GITHUB__TIMEOUT", "2s".to_owned()),
        ("RELEASE_EDGE_COST__EGRESS_PER_GIB", "0.09".to_owned()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = BinaryServer::spawn(fx.dir.path(), &env);
    let client = Client {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        base: server.url(""),
    };

    let prometheus = Prometheus::start(server.addr);
    prometheus.wait_ready().await;
    let began = unix_now();

    // The rules Prometheus loaded are the repository's expressions, `for:` aside.
    let rules = alert_rules();
    let loaded = prometheus.api("rules", &[("type", "alert")]).await;
    let loaded: Vec<&Json> = loaded["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect();
    assert_eq!(loaded.len(), rules.len(), "{loaded:?}");
    for (rule, loaded) in rules.iter().zip(&loaded) {
        assert_eq!(loaded["name"], rule.name.as_str());
        assert_eq!(
            without_whitespace(loaded["query"].as_str().expect("query")),
            without_whitespace(&rule.expr),
            "{}: Prometheus evaluates another expression than alerts.yml's",
            rule.name
        );
        assert_eq!(loaded["duration"], 2.0, "{}", rule.name);
    }

    // Healthy traffic, over several scrapes.
    let mut stale_source = None;
    for _ in 0..4 {
        let statuses = client.update_checks().await;
        assert!(
            statuses.iter().all(|s| s.is_success()),
            "healthy update checks: {statuses:?}"
        );
        let (status, body) = client
            .get(&format!("/releases/v1.2.0/{MAC_ZIP}"), &[])
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.as_ref(), zip.as_slice());
        let (status, body) = client
            .get(
                &format!("/releases/v1.2.0/{MAC_ZIP}"),
                &[("range", "bytes=0-99")],
            )
            .await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body.as_ref(), &zip[..100]);
        assert_eq!(
            client
                .status("/releases/v1.1.0/App-1.1.0-mac.zip", &[])
                .await,
            StatusCode::OK
        );
        let (status, manifest) = client.get("/releases/latest/latest-mac.yml", &[]).await;
        assert_eq!(status, StatusCode::OK);
        stale_source = Some(manifest);
        assert_eq!(
            client
                .status(&format!("/releases/v{ALPHA}/{ALPHA_ZIP}"), &[])
                .await,
            StatusCode::FOUND,
            "GitHub's public download link"
        );
        assert_eq!(
            client
                .status("/releases/v9.9.9/App-9.9.9-mac.zip", &[])
                .await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            client.status("/latest/mac/x64?format=zip", &[]).await,
            StatusCode::FOUND
        );
        prometheus.next_scrape().await;
    }
    prometheus.next_scrape().await;
    let kept_manifest = stale_source.expect("a manifest read");

    // Adoption: the versions and channels the store holds, everything else `other`.
    let pairs: BTreeSet<(String, String)> = prometheus
        .query("release_edge_client_versions_total")
        .await
        .iter()
        .map(|s| {
            let label = |name: &str| s["metric"][name].as_str().expect(name).to_owned();
            (label("channel"), label("version"))
        })
        .collect();
    let mut expected = BTreeSet::new();
    for channel in ["latest", "beta", "other"] {
        for version in ["1.0.0", "1.1.0", "1.2.0", "other"] {
            expected.insert((channel.to_owned(), version.to_owned()));
        }
    }
    assert_eq!(pairs, expected, "client_versions series");
    // 1.2.0 checks `latest` three times a round (macOS and Windows YAML, JSON); the very
    // first checks may precede the first listing and count as `other`.
    let current = prometheus
        .value(r#"release_edge_client_versions_total{channel="latest", version="1.2.0"}"#)
        .await;
    assert!(
        current >= 4.0,
        "{current} checks from 1.2.0 on latest: {:?}",
        prometheus.query("release_edge_client_versions_total").await
    );
    // Bytes by origin and kind: the artifacts from the store, the feeds from the cache.
    let served = |origin: &str, kind: &str| {
        format!(r#"release_edge_served_bytes_total{{origin="{origin}", kind="{kind}"}}"#)
    };
    let artifacts = prometheus.value(&served("store", "artifact")).await;
    assert!(
        artifacts >= (4 * (zip.len() + 100 + 1_000)) as f64,
        "artifact bytes {artifacts}"
    );
    assert!(prometheus.value(&served("cache", "manifest")).await > 0.0);
    assert!(prometheus.value(&served("store", "manifest")).await > 0.0);
    assert_eq!(
        prometheus.value("release_edge_egress_cost_per_gib").await,
        0.09
    );
    assert_eq!(prometheus.value("release_edge_ready").await, 1.0);
    let firing = prometheus.alerts("firing").await;
    assert!(firing.is_empty(), "alerts firing while healthy: {firing:?}");

    // The store's host goes away; GitHub's rate limit is spent.
    proxy.fail();
    gh.set_rate_limit(0, 3600);
    let started = Instant::now();
    let mut stale_answers = 0;
    loop {
        client.update_checks().await;
        // An artifact not opened before: its metadata is not cached, so the store is asked.
        let (status, body) = client.get("/releases/v1.0.0/App-1.0.0-mac.zip", &[]).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let error: Json = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(error["error"], "store_unavailable");
        let (status, manifest) = client.get("/releases/latest/latest-mac.yml", &[]).await;
        if status == StatusCode::OK {
            assert_eq!(manifest, kept_manifest, "the last good copy");
            stale_answers += 1;
        }
        let firing = prometheus.alerts("firing").await;
        if INDUCED.iter().all(|a| firing.contains(*a)) {
            break;
        }
        assert!(
            started.elapsed() < ALERT_DEADLINE,
            "after {:?}, firing {firing:?}, pending {:?}; expected {INDUCED:?}\n{}",
            started.elapsed(),
            prometheus.alerts("pending").await,
            prometheus.log()
        );
        prometheus.next_scrape().await;
    }
    assert!(stale_answers > 0, "no answer from the last good copy");
    assert_eq!(prometheus.value("release_edge_ready").await, 0.0);
    assert_eq!(
        prometheus.value("release_edge_store_circuit_open").await,
        1.0
    );
    assert!(prometheus.value(&served("stale", "manifest")).await > 0.0);

    // Nothing fired that should not have.
    let rules_now = prometheus.api("rules", &[("type", "alert")]).await;
    for group in rules_now["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["name"].as_str().expect("name");
            if QUIET.contains(&name) {
                assert_eq!(rule["state"], "inactive", "{name}: {rule}");
            }
        }
    }

    // Every metric the dashboard and the alerts name is one the server exports.
    let exposition = client
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let exported: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{} dashboard queries", queries.len());
    let named = queries
        .iter()
        .map(|(_, expr)| expr.as_str())
        .chain(rules.iter().map(|r| r.expr.as_str()))
        .flat_map(metric_names);
    for name in named {
        assert!(
            exported.contains(name.as_str()),
            "{name} is named by the dashboard or the alerts but the server does not export it"
        );
    }

    // Every dashboard query returns data.
    for (title, expr) in &queries {
        let result = prometheus.query(expr).await;
        assert!(
            !result.is_empty(),
            "dashboard panel {title:?}: no data for {expr}"
        );
    }
    // Every alert expression evaluates, and each metric it reads has series.
    for rule in &rules {
        prometheus.query(&rule.expr).await;
        for name in metric_names(&rule.expr) {
            assert!(
                !prometheus.query(&name).await.is_empty(),
                "{}: no series of {name}",
                rule.name
            );
        }
    }
    if let Some(path) = std::env::var_os(DATA_DUMP) {
        dump_dashboard_data(&prometheus, &queries, began, Path::new(&path)).await;
    }
    drop(server);
}

/// When set, the test writes every dashboard query's results over its run to this file, for
/// `deploy/observability/plot.py` to draw.
const DATA_DUMP: &str = "RELEASE_EDGE_DASHBOARD_DATA";

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Range results of every dashboard query from `start` to now, in the dashboard's order.
async fn dump_dashboard_data(
    prometheus: &Prometheus,
    queries: &[(String, String)],
    start: f64,
    path: &Path,
) {
    let (start, end) = (start.to_string(), unix_now().to_string());
    let mut panels = Vec::new();
    for (title, expr) in queries {
        let data = prometheus
            .api(
                "query_range",
                &[
                    ("query", expr),
                    ("start", &start),
                    ("end", &end),
                    ("step", "1"),
                ],
            )
            .await;
        panels.push(serde_json::json!({"title": title, "expr": expr, "result": data["result"]}));
    }
    let dump = serde_json::json!({"start": start, "end": end, "queries": panels});
    std::fs::write(path, dump.to_string()).expect("write the dashboard data");
}
