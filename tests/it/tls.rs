//! HTTPS on `listen` (`[tls]`) with certificates made at test time (rcgen): curl over TLS,
//! HTTP/2 by ALPN, a renewed certificate picked up live while an open connection keeps
//! working, a bad key refused at start naming `tls.key`, and `release-edge healthcheck`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use release_edge::config::{Secrets, TlsConfig};
use release_edge::server::Server;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::{Fixture, TestServer, require_program, scratch};

const ARTIFACT_KEY: &str = "releases/v1.0.0/App-1.0.0.AppImage";
const ARTIFACT_URL: &str = "/releases/v1.0.0/App-1.0.0.AppImage";

/// A test CA that signs server certificates for `localhost` and 127.0.0.1.
struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

/// A leaf certificate and its key, as PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "release-edge test CA");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Self { params, key, pem }
    }

    /// A server certificate; `label` (its common name) tells one issue from the next.
    fn leaf(&self, label: &str) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, label);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let der = CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("CA PEM");
        roots.add(der).expect("CA root");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// The certificate files a server reads, in their own directory.
struct CertDir {
    dir: tempfile::TempDir,
}

impl CertDir {
    fn new(leaf: &Leaf, ca: &TestCa) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), &ca.pem).expect("write CA");
        let certs = Self { dir };
        certs.install(leaf);
        certs
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("fullchain.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("privkey.pem")
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes a certificate as an ACME client does: each file to a temporary name, then
    /// renamed over the old one (the key first, then the chain).
    fn install(&self, leaf: &Leaf) {
        for (path, pem) in [(self.key(), &leaf.key_pem), (self.cert(), &leaf.cert_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, pem).expect("write PEM");
            std::fs::rename(&tmp, &path).expect("rename PEM");
        }
    }

    fn config(&self, reload_interval: Duration) -> TlsConfig {
        TlsConfig {
            cert: self.cert(),
            key: self.key(),
            reload_interval,
        }
    }
}

fn fixture() -> Fixture {
    Fixture::new()
        .file(ARTIFACT_KEY, crate::support::pattern(300_000))
        .file("releases/latest/latest-linux.yml", "version: 1.0.0\n")
}

async fn tls_server(fx: &Fixture, certs: &CertDir, reload_interval: Duration) -> TestServer {
    let mut config = fx.config.clone();
    config.tls = Some(certs.config(reload_interval));
    TestServer::start_with(config, Secrets::default()).await
}

/// GETs `path` with curl over HTTPS (trusting only the test CA, `localhost` pinned to the
/// server) and `args`; returns curl's `%{http_code} %{http_version}` and the body.
async fn curl(
    addr: SocketAddr,
    ca: &Path,
    args: &'static [&'static str],
    path: &str,
) -> (String, Vec<u8>) {
    require_program("curl");
    let dir = scratch();
    let body = dir.path().join("body");
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", addr.port()))
        .args(args)
        .arg("--output")
        .arg(&body)
        .args(["--write-out", "%{http_code} %{http_version}"])
        .arg(format!("https://localhost:{}{path}", addr.port()))
        .stdin(Stdio::null());
    let out = blocking(move || cmd.output().expect("run curl")).await;
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = std::fs::read(&body).expect("curl's output");
    (String::from_utf8_lossy(&out.stdout).into_owned(), body)
}

/// Runs a blocking client on the blocking pool, so that the server keeps running.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_downloads_over_https_with_http2_and_http11() {
    let fx = fixture();
    let ca = TestCa::new();
    let certs = CertDir::new(&ca.leaf("first"), &ca);
    let server = tls_server(&fx, &certs, Duration::from_secs(10)).await;
    let (addr, ca_path) = (server.addr, certs.ca());

    let expected = crate::support::pattern(300_000);
    let (h2, body) = curl(
        addr,
        &ca_path,
        &["--http2", "--range", "1000-2999"],
        ARTIFACT_URL,
    )
    .await;
    assert_eq!(h2, "206 2");
    assert_eq!(body, &expected[1000..3000]);
    let (h1, body) = curl(
        addr,
        &ca_path,
        &["--http1.1", "--tls-max", "1.2"],
        ARTIFACT_URL,
    )
    .await;
    assert_eq!(h1, "200 1.1");
    assert_eq!(body, expected);

    // Plain HTTP on the TLS port is not served.
    let plain = blocking(move || {
        Command::new("curl")
            .args(["--silent", "--max-time", "5", "--output", "/dev/null"])
            .arg(format!("http://127.0.0.1:{}/healthz", addr.port()))
            .output()
            .expect("run curl")
    })
    .await;
    assert!(
        !plain.status.success(),
        "plain HTTP answered on the TLS port"
    );
}

/// A kept-alive HTTP/1.1 connection over TLS, driven by hand.
struct KeptAlive {
    stream: BufReader<TlsStream<TcpStream>>,
}

impl KeptAlive {
    async fn open(addr: SocketAddr, ca: &TestCa) -> Self {
        let connector = TlsConnector::from(ca.client_config(&[b"http/1.1"]));
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("server name");
        let stream = connector.connect(name, tcp).await.expect("TLS handshake");
        Self {
            stream: BufReader::new(stream),
        }
    }

    /// The leaf certificate the server presented on this connection.
    fn server_cert(&self) -> CertificateDer<'static> {
        let (_, conn) = self.stream.get_ref().get_ref();
        conn.peer_certificates().expect("peer certificates")[0].clone()
    }

    /// GETs `path` on this connection and returns the status and body.
    async fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status line");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            self.stream.read_line(&mut header).await.expect("header");
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("Content-Length");
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.expect("body");
        (status, body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_to_new_connections_while_old_ones_go_on() {
    let fx = fixture();
    let ca = TestCa::new();
    let first = ca.leaf("first issue");
    let certs = CertDir::new(&first, &ca);
    let server = tls_server(&fx, &certs, Duration::from_millis(50)).await;

    let mut old = KeptAlive::open(server.addr, &ca).await;
    assert_eq!(old.server_cert(), first.der);
    let (status, body) = old.get("/releases/latest/latest-linux.yml").await;
    assert_eq!((status, body.as_slice()), (200, &b"version: 1.0.0\n"[..]));

    let renewed = ca.leaf("second issue");
    certs.install(&renewed);
    // The reload is observable only from outside: new handshakes, polled with a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = KeptAlive::open(server.addr, &ca).await;
        if probe.server_cert() == renewed.der {
            break;
        }
        assert_eq!(probe.server_cert(), first.der, "neither certificate served");
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The connection opened before the renewal is still up, on the old certificate.
    let (status, body) = old.get(ARTIFACT_URL).await;
    assert_eq!(status, 200);
    assert_eq!(body, crate::support::pattern(300_000));
    assert_eq!(old.server_cert(), first.der);

    // A renewal caught half-written (the new key beside the old certificate) is not loaded:
    // for ten reload intervals every handshake still succeeds on the renewed certificate.
    // Then the certificate lands and the pair is served.
    let third = ca.leaf("third issue");
    std::fs::write(certs.key(), &third.key_pem).expect("write key only");
    for _ in 0..10 {
        let mut probe = KeptAlive::open(server.addr, &ca).await;
        assert_eq!(probe.get("/healthz").await.0, 200);
        assert_eq!(probe.server_cert(), renewed.der);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(certs.cert(), &third.cert_pem).expect("write certificate");
    let deadline = Instant::now() + Duration::from_secs(10);
    while KeptAlive::open(server.addr, &ca).await.server_cert() != third.der {
        assert!(
            Instant::now() < deadline,
            "the completed renewal was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Environment variables for a `release-edge` process.
type Env = Vec<(&'static str, String)>;

/// Runs `release-edge` with `args`, the environment cleared but for `env`, in `dir`.
fn release_edge(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_release-edge"));
    cmd.args(args)
        .env_clear()
        .current_dir(dir)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run release-edge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_refused_at_start_naming_tls_key() {
    let fx = fixture();
    let ca = TestCa::new();
    let certs = CertDir::new(&ca.leaf("good"), &ca);
    let root = fx.root().to_path_buf();
    let env = |key: &Path| {
        vec![
            ("RELEASE_EDGE_LISTEN", "127.0.0.1:0".to_owned()),
            ("RELEASE_EDGE_STORE__ROOT", root.display().to_string()),
            ("RELEASE_EDGE_TLS__CERT", certs.cert().display().to_string()),
            ("RELEASE_EDGE_TLS__KEY", key.display().to_string()),
        ]
    };

    let garbage = certs.dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .expect("write garbage key");
    let other = certs.dir.path().join("other.pem");
    std::fs::write(&other, ca.leaf("other").key_pem).expect("write other key");
    let missing = certs.dir.path().join("missing.pem");

    for (key, why) in [
        (&garbage, "not a key"),
        (&other, "the key of another certificate"),
        (&missing, "no such file"),
    ] {
        let (dir, env) = (root.clone(), env(key));
        let out = blocking(move || release_edge(&dir, &["serve"], &env)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{why}: {stderr}");
        assert!(
            stderr.contains("invalid `tls.key`") && stderr.contains(&key.display().to_string()),
            "{why}: the error names neither tls.key nor its file: {stderr}"
        );
    }

    // In-process too: Server::bind refuses before binding.
    let mut config = fx.config.clone();
    config.tls = Some(TlsConfig {
        key: other.clone(),
        ..certs.config(Duration::from_secs(10))
    });
    let state = release_edge::App::build(config, Secrets::default()).expect("state");
    let err = Server::bind(state).await.err().expect("bind must fail");
    assert!(err.to_string().contains("invalid `tls.key`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_probes_the_configured_listener() {
    let fx = fixture();
    let ca = TestCa::new();
    let certs = CertDir::new(&ca.leaf("probe"), &ca);
    let plain = TestServer::start(fx.config.clone()).await;
    let tls = tls_server(&fx, &certs, Duration::from_secs(10)).await;
    let root = fx.root().to_path_buf();
    let base = |listen: SocketAddr| {
        vec![
            // The probe asks the loopback when the server listens on every address.
            ("RELEASE_EDGE_LISTEN", format!("0.0.0.0:{}", listen.port())),
            ("RELEASE_EDGE_STORE__ROOT", root.display().to_string()),
        ]
    };
    let mut with_tls = base(tls.addr);
    with_tls.push(("RELEASE_EDGE_TLS__CERT", certs.cert().display().to_string()));
    with_tls.push(("RELEASE_EDGE_TLS__KEY", certs.key().display().to_string()));

    // (what, --path or the default, environment, exit code)
    let cases: [(&str, Option<&str>, Env, i32); 5] = [
        ("plain, default path", None, base(plain.addr), 0),
        ("plain /readyz", Some("/readyz"), base(plain.addr), 0),
        ("https, default path", None, with_tls, 0),
        ("a 404", Some("/nope"), base(plain.addr), 1),
        ("plain HTTP to the TLS port", None, base(tls.addr), 1),
    ];
    for (what, path, env, expected) in cases {
        let dir = root.clone();
        let path = path.map(str::to_owned);
        let out = blocking(move || {
            let mut args = vec!["healthcheck"];
            if let Some(path) = &path {
                args.extend(["--path", path]);
            }
            release_edge(&dir, &args, &env)
        })
        .await;
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Nothing listening: unhealthy, within the timeout.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let (dir, env) = (root.clone(), base(closed));
    let out = blocking(move || release_edge(&dir, &["healthcheck", "--timeout", "2s"], &env)).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("release-edge healthcheck"));
}
