//! Test support: fixture stores built on disk, the router driven in-process, and servers
//! on real TCP (in-process, or the real binary for signals).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use release_edge::clock::Clock;
use release_edge::config::{Config, Secrets};
use release_edge::server::Server;
use release_edge::{App, AppState};
use sha2::{Digest, Sha512};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// Deterministic, non-repeating-looking bytes: every 8-byte word tells where it came from.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut word = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            &word
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_right(17)
                .to_le_bytes(),
        );
        word += 1;
    }
    out.truncate(len);
    out
}

/// The channel file electron-builder writes for `version`: each of `files` (name, bytes)
/// with its sha512 and size (`blockMapSize` on the first when given), the first also as
/// `path`/`sha512`, and a `releaseDate`.
pub fn channel_yml(version: &str, files: &[(&str, &[u8])], first_block_map: Option<u64>) -> String {
    let sha =
        |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes));
    let mut yaml = format!("version: {version}\nfiles:\n");
    for (i, (name, bytes)) in files.iter().enumerate() {
        yaml.push_str(&format!(
            "  - url: {name}\n    sha512: {}\n    size: {}\n",
            sha(bytes),
            bytes.len()
        ));
        if let (0, Some(block_map)) = (i, first_block_map) {
            yaml.push_str(&format!("    blockMapSize: {block_map}\n"));
        }
    }
    yaml.push_str(&format!(
        "path: {}\nsha512: {}\nreleaseDate: '2026-11-01T12:00:00.000Z'\n",
        files[0].0,
        sha(files[0].1)
    ));
    yaml
}

/// A store with files, and the config that serves it: a local directory, or a bucket of a
/// real S3 server (s3s-fs) whose objects are files under [`Fixture::root`].
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config: Config,
    root: PathBuf,
    /// The S3 server, when the store is a bucket.
    pub s3: Option<S3Server>,
}

/// The bucket every S3 fixture uses.
pub const BUCKET: &str = "releases-bucket";

impl Fixture {
    /// An empty filesystem store.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("releases")).expect("mkdir releases");
        let mut config = Config::default();
        config.store.root = dir.path().to_path_buf();
        config.listen = "127.0.0.1:0".parse().expect("addr");
        let root = dir.path().to_path_buf();
        Self {
            dir,
            config,
            root,
            s3: None,
        }
    }

    /// An empty bucket on a real S3 server (s3s-fs, in-process, on 127.0.0.1), path-style,
    /// with keys made at run time. Must be called inside a Tokio runtime.
    pub fn s3() -> Self {
        let mut fx = Self::new();
        let server = S3Server::start(fx.dir.path());
        fx.root = fx.dir.path().join(BUCKET);
        std::fs::create_dir_all(fx.root.join("releases")).expect("mkdir bucket");
        fx.config.store.kind = release_edge::config::StoreKind::S3;
        fx.config.store.bucket = Some(BUCKET.into());
        fx.config.store.endpoint = Some(server.endpoint.clone());
        fx.config.store.force_path_style = true;
        fx.s3 = Some(server);
        fx
    }

    /// The repository's sample releases (`samples/`), copied: what a new user serves first.
    pub fn samples(self) -> Self {
        copy_tree(
            &repo_root().join("samples/releases"),
            &self.root.join("releases"),
        );
        self
    }

    /// Both kinds, for tests that must hold for every store.
    pub fn both() -> [Self; 2] {
        [Self::new(), Self::s3()]
    }

    /// `fs` or `s3`, for assertion messages.
    pub fn kind(&self) -> &'static str {
        if self.s3.is_some() { "s3" } else { "fs" }
    }

    /// The secrets a server for this fixture needs (the S3 server's keys).
    pub fn secrets(&self) -> Secrets {
        Secrets {
            s3_credentials: self.s3.as_ref().map(S3Server::credentials),
            ..Secrets::default()
        }
    }

    /// Adds a file at `key` (relative to the store root).
    pub fn file(self, key: &str, content: impl AsRef<[u8]>) -> Self {
        self.write(key, content);
        self
    }

    /// Writes (or rewrites) a file.
    pub fn write(&self, key: &str, content: impl AsRef<[u8]>) {
        let path = self.root.join(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write fixture");
    }

    /// `version` as `publish` leaves it: each of `files` under `releases/v{version}/` with
    /// the channel file `channel_file` listing them beside, and, when `current`, that channel
    /// file in `releases/latest/` too.
    pub fn release(
        self,
        version: &str,
        channel_file: &str,
        files: &[(&str, &[u8])],
        current: bool,
    ) -> Self {
        let yml = channel_yml(version, files, None);
        let mut fx = self.file(&format!("releases/v{version}/{channel_file}"), &yml);
        for (name, bytes) in files {
            fx = fx.file(&format!("releases/v{version}/{name}"), bytes);
        }
        if current {
            fx = fx.file(&format!("releases/latest/{channel_file}"), &yml);
        }
        fx
    }

    /// A sparse-free large file of `len` pattern bytes.
    pub fn large(self, key: &str, len: usize) -> Self {
        self.file(key, pattern(len))
    }

    /// Where the store's keys are files: the fs root, or the bucket's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state(&self) -> AppState {
        App::build(self.config.clone(), self.secrets()).expect("app state")
    }

    pub fn router(&self) -> axum::Router {
        release_edge::app(self.state())
    }

    /// The state on `clock` (a manual one: the test moves time instead of sleeping).
    pub fn state_on(&self, clock: &Clock) -> AppState {
        App::build_with_clock(self.config.clone(), self.secrets(), clock.clone())
            .expect("app state")
    }
}

/// A finished in-process response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("ascii header")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The body as YAML, of a `200`.
    pub fn yaml(&self) -> serde_norway::Value {
        assert_eq!(
            self.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        serde_norway::from_slice(&self.body).expect("YAML body")
    }
}

/// Sends one request through the router (no network).
pub async fn send(router: &axum::Router, req: Request<Body>) -> Reply {
    let response = router.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET path` with extra headers.
pub async fn get(router: &axum::Router, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(router, "GET", path, headers).await
}

pub async fn request(
    router: &axum::Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    send(router, builder.body(Body::empty()).expect("request")).await
}

/// Waits until `done` holds (bounded: 10 s), for what happens behind an answer.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GETs `path` until `done` holds for the reply (bounded: 10 s), and returns that reply.
/// A manifest past its TTL is answered once more from the cache while it revalidates in
/// the background, so the new content shows on a later request.
pub async fn get_until(
    router: &axum::Router,
    path: &str,
    mut done: impl FnMut(&Reply) -> bool,
) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(router, path, &[]).await;
        if done(&reply) {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never served what was expected; last: {} {:?}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Puts `config` on a free port of 127.0.0.1 (bound, read and released) and points
/// `public_url` at it, for clients that follow the absolute URLs the server writes. Returns
/// the public URL.
pub fn on_free_port(config: &mut Config) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("free port address");
    drop(listener);
    config.listen = addr;
    config.public_url = format!("http://{addr}");
    config.public_url.clone()
}

/// A real S3 server (the `s3s-fs` crate: S3's wire protocol, SigV4 auth, objects as files)
/// on 127.0.0.1, in this process.
pub struct S3Server {
    pub endpoint: String,
    access_key: String,
    secret_key: String,
    handle: JoinHandle<()>,
    log: Arc<Mutex<Vec<S3Request>>>,
}

/// One request the S3 server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Request {
    pub method: String,
    /// Path and query (`/releases-bucket/releases/v1/a.exe?uploadId=...`).
    pub target: String,
    pub range: Option<String>,
    pub if_match: Option<String>,
}

impl S3Server {
    /// Serves the buckets (directories) under `root`.
    pub fn start(root: &Path) -> Self {
        use s3s::auth::SimpleAuth;
        use s3s::service::S3ServiceBuilder;
        let access_key = format!("test-{:016x}", fastrand::u64(..));
        let secret_key = format!("{:032x}", fastrand::u128(..));
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs root");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(
            access_key.clone(),
            secret_key.clone(),
        ));
        let service = builder.build();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind s3");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("s3 addr");
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
        let log = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&log);
        // s3s-fs honours `If-Match` and `If-None-Match` on PutObject, but checks them before
        // it writes, without a lock: two concurrent conditional PUTs of one key can both pass.
        // S3 and R2 decide and write atomically (the loser gets 412, or 409
        // ConditionalRequestConflict). Conditional PUTs are therefore run one at a time here,
        // as S3 runs them; what release-edge sends is the same either way.
        let conditional = Arc::new(tokio::sync::Mutex::new(()));
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let entry = S3Request {
                    method: req.method().to_string(),
                    target: req
                        .uri()
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    range: header("range"),
                    if_match: header("if-match"),
                };
                if let Ok(mut log) = recorded.lock() {
                    log.push(entry);
                }
                let service = service.clone();
                let is_conditional_put = req.method() == http::Method::PUT
                    && (req.headers().contains_key("if-match")
                        || req.headers().contains_key("if-none-match"));
                let conditional = Arc::clone(&conditional);
                async move {
                    let _one_at_a_time = match is_conditional_put {
                        true => Some(conditional.lock().await),
                        false => None,
                    };
                    hyper::service::Service::call(&service, req).await
                }
            });
        let handle = tokio::spawn(async move {
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            // Connections live in this set: stopping the server (aborting this task) drops
            // them too, so pooled client connections fail like those of a dead server.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                    .into_owned();
                connections.spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Self {
            endpoint: format!("http://{addr}"),
            access_key,
            secret_key,
            handle,
            log,
        }
    }

    /// Stops the server: its port refuses connections and open ones are closed.
    pub fn stop(&self) {
        self.handle.abort();
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<S3Request> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The keys, as a client is given them.
    pub fn credentials(&self) -> aws_sdk_s3::config::Credentials {
        aws_sdk_s3::config::Credentials::new(&self.access_key, &self.secret_key, None, None, "test")
    }

    /// The environment a `release-edge` process needs to reach this server through the
    /// standard AWS chain.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("RELEASE_EDGE_STORE__KIND", "s3".into()),
            ("RELEASE_EDGE_STORE__BUCKET", BUCKET.into()),
            ("RELEASE_EDGE_STORE__ENDPOINT", self.endpoint.clone()),
            ("RELEASE_EDGE_STORE__FORCE_PATH_STYLE", "true".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// A server on a real TCP port, in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        Self::start_with(config, Secrets::default()).await
    }

    /// As [`TestServer::start`], with secrets (a fixture's S3 keys).
    pub async fn start_with(config: Config, secrets: Secrets) -> Self {
        Self::serve(App::build(config, secrets).expect("state")).await
    }

    /// Serves a state built by the test (on a manual clock, say).
    pub async fn serve(state: AppState) -> Self {
        let server = Server::bind(state.clone()).await.expect("bind");
        let addr = server.local_addr().expect("addr");
        let metrics_addr = server.metrics_addr();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            metrics_addr,
            state,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Triggers graceful shutdown and returns the task that completes when it is done.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().expect("running")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

/// The real `release-edge serve` binary, configured through the environment.
pub struct BinaryServer {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line it wrote to stderr (JSON log lines), as they come.
    log: Arc<Mutex<Vec<String>>>,
}

impl BinaryServer {
    /// Spawns the binary on a free port with `env` overrides and waits until it listens.
    pub fn spawn(root: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_release-edge"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RELEASE_EDGE_LISTEN", "127.0.0.1:0")
            .env("RELEASE_EDGE_STORE__ROOT", root)
            .env("RELEASE_EDGE_LOG__FORMAT", "json")
            .env("RELEASE_EDGE_LOG__LEVEL", "info")
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn release-edge");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(listen) = v.get("listen").and_then(|l| l.as_str())
                {
                    let _ = tx.send(listen.parse::<SocketAddr>().expect("listen addr"));
                    sent = true;
                }
                if let Ok(mut log) = kept.lock() {
                    log.push(line);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("release-edge did not report its address within 20 s");
        Self { child, addr, log }
    }

    /// The JSON log lines written so far whose `message` is `message`.
    pub fn logged(&self, message: &str) -> Vec<serde_json::Value> {
        let lines = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        lines
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|v| v.get("message").and_then(|m| m.as_str()) == Some(message))
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "release-edge did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to completion on the blocking pool, so that servers on this runtime (the
/// stand-ins it talks to) keep answering meanwhile.
pub async fn output(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run the command"))
        .await
        .expect("blocking task")
}

/// A scratch directory for client downloads.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Reads a whole file.
pub fn read(path: impl Into<PathBuf>) -> Vec<u8> {
    std::fs::read(path.into()).expect("read file")
}

/// Requires an external program: the suite fails (never skips) when it is missing, because
/// `.ci/run` installs every one of them.
pub fn require_program(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is required by this test (installed by .ci/run: apt-get install curl aria2)"
    );
}

/// The repository's root (where `Cargo.toml` is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the directory tree `from` into `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A router on `fx`'s store with the admin API on, and the `Authorization` value of its one
/// token (made at run time).
pub fn admin_router(fx: &Fixture) -> (axum::Router, String) {
    let token = format!("{:032x}", fastrand::u128(..));
    let secrets = Secrets {
        admin_tokens: release_edge::config::AdminToken::parse_list(&format!("alice:{token}")),
        ..fx.secrets()
    };
    let state = App::build(fx.config.clone(), secrets).expect("state");
    (release_edge::app(state), format!("Bearer {token}"))
}

/// The entry named `name` (by `key`) of the JSON list `list`.
pub fn entry<'a>(list: &'a serde_json::Value, key: &str, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .find(|e| e[key] == name)
        .unwrap_or_else(|| panic!("no {key} {name} in {list}"))
}

/// `GET /admin/releases` with `auth`, which must answer `200`: its JSON body.
pub async fn admin_releases(router: &axum::Router, auth: &str) -> serde_json::Value {
    let reply = get(router, "/admin/releases", &[("authorization", auth)]).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// A router on `fx`'s store with `channel` private, and a token of it (made at run time).
pub fn private_router(fx: &mut Fixture, channel: &str) -> (axum::Router, String) {
    let token = format!("{:032x}", fastrand::u128(..));
    let key = format!("{:032x}", fastrand::u128(..));
    fx.config.access.private_channels = vec![channel.to_owned()];
    let secrets = Secrets {
        access_tokens: Some(secrecy::SecretString::from(format!(
            "{channel}:tester:{token}"
        ))),
        url_signing_key: Some(secrecy::SecretString::from(key)),
        ..fx.secrets()
    };
    let state = App::build(fx.config.clone(), secrets).expect("state");
    (release_edge::app(state), token)
}
