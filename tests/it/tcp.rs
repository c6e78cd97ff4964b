//! Real TCP: streaming, client disconnects, timeouts and graceful shutdown.
//!
//! Most tests run the server in-process ([`TestServer`]) so that they can read its metrics
//! directly; the signal tests run the real binary ([`BinaryServer`]). Every wait is bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use release_edge::AppState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{BinaryServer, Fixture, TestServer, pattern};

const BIG_KEY: &str = "releases/v1.0.0/App-1.0.0.AppImage";
const BIG_URL: &str = "/releases/v1.0.0/App-1.0.0.AppImage";
const BIG_LEN: usize = 64 * 1024 * 1024;
const SMALL_KEY: &str = "releases/latest/latest.yml";
const SMALL_URL: &str = "/releases/latest/latest.yml";
const SMALL_BODY: &str = "version: 1.0.0\npath: App-1.0.0.AppImage\n";
/// The matched route of `/releases/*`, as the metrics label it.
const ROUTE: &str = "/releases/{*path}";
const MIB: usize = 1024 * 1024;
/// What a slow client reads at a time: the server's streaming chunk.
const CHUNK: usize = 64 * 1024;
/// Receive buffer of the clients that stall: Linux autotunes it up to `tcp_rmem` max (often
/// 6–32 MiB), which would make "how far ahead did the server read" depend on the machine.
const SMALL_RCVBUF: u32 = 128 * 1024;
/// Bytes that may legitimately be ahead of a stalled client: its receive buffer, the
/// server's send buffer (at most `tcp_wmem` max, 4 MiB by default) and hyper's buffer.
/// Far below the 64 MiB file.
const AHEAD_LIMIT: u64 = 16 * MIB as u64;

/// The 64 MiB artifact, generated once for the whole binary.
fn big() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| pattern(BIG_LEN))
}

fn fixture() -> Fixture {
    Fixture::new()
        .file(BIG_KEY, big())
        .file(SMALL_KEY, SMALL_BODY)
}

fn sent_bytes(state: &AppState) -> u64 {
    state
        .metrics
        .response_bytes
        .with_label_values(&[ROUTE])
        .get()
}

fn inflight(state: &AppState) -> i64 {
    state.metrics.inflight_downloads.get()
}

/// Awaits `fut`, failing the test when it takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {limit:?}"))
}

/// Polls `cond` until it holds, failing the test after `limit`.
async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not true within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the response-bytes counter stops moving (the server is blocked on a full
/// socket) and returns its value.
async fn settled_sent_bytes(state: &AppState) -> u64 {
    let mut last = sent_bytes(state);
    let mut stable = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sent_bytes(state);
        if now == last {
            stable += 1;
            if stable == 4 {
                return now;
            }
        } else {
            stable = 0;
            last = now;
        }
    }
    panic!("response bytes never settled (last {last})");
}

/// Polls until a TCP connect to `addr` is refused: the listener is closed.
async fn wait_refused(addr: SocketAddr) {
    within(Duration::from_secs(5), "listener closed", async {
        loop {
            match TcpStream::connect(addr).await {
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return,
                // Accepted by the kernel just before the listener closed, then reset: try
                // again until the port refuses outright.
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(err) => panic!("connect failed for another reason: {err}"),
                Ok(stream) => drop(stream),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The head of an HTTP/1.1 response.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    fn content_length(&self) -> usize {
        self.header("content-length")
            .parse()
            .expect("numeric Content-Length")
    }
}

/// A hand-driven HTTP/1.1 connection: the test decides exactly when bytes are read.
struct Raw {
    stream: TcpStream,
    /// Bytes read past the last head, not yet handed out.
    pending: Vec<u8>,
}

impl Raw {
    /// Connects, with a fixed receive buffer when `rcvbuf` is set.
    async fn connect(addr: SocketAddr, rcvbuf: Option<u32>) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let stream = within(Duration::from_secs(5), "connect", socket.connect(addr))
            .await
            .expect("connect");
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: release-edge.test\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.stream
            .write_all(req.as_bytes())
            .await
            .expect("send request");
    }

    async fn head(&mut self) -> Head {
        within(Duration::from_secs(5), "response head", async {
            loop {
                if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    let text = String::from_utf8(self.pending[..end].to_vec()).expect("head");
                    self.pending.drain(..end + 4);
                    let mut lines = text.split("\r\n");
                    let status_line = lines.next().expect("status line");
                    let status = status_line
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
                    let headers = lines
                        .map(|line| {
                            let (k, v) = line.split_once(':').expect("header line");
                            (k.trim().to_owned(), v.trim().to_owned())
                        })
                        .collect();
                    return Head { status, headers };
                }
                let mut buf = [0u8; 8192];
                let n = self.stream.read(&mut buf).await.expect("read head");
                assert!(n > 0, "connection closed before the response head");
                self.pending.extend_from_slice(&buf[..n]);
            }
        })
        .await
    }

    /// Reads exactly `len` body bytes (fails the test if the connection ends first).
    async fn body(&mut self, len: usize) -> Vec<u8> {
        // `vec!` zeroes through the allocator: a `resize` loop over 60 MiB in a debug build
        // takes long enough to look like a stalled client to a 1 s idle timeout.
        let mut out = vec![0u8; len];
        let start = self.pending.len().min(len);
        out[..start].copy_from_slice(&self.pending[..start]);
        self.pending.drain(..start);
        self.stream
            .read_exact(&mut out[start..])
            .await
            .expect("body bytes");
        out
    }

    /// Reads until the server closes the connection (EOF or reset); returns how many bytes
    /// came before the close.
    async fn until_closed(&mut self) -> usize {
        let mut total = std::mem::take(&mut self.pending).len();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match self.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_file_streams_byte_identical_without_reading_ahead() {
    let fx = fixture();
    let server = TestServer::start(fx.config.clone()).await;

    // A slow reader: a few chunks, then a pause. The server must stop at what the sockets
    // hold instead of reading the file into memory.
    let mut slow = Raw::connect(server.addr, Some(SMALL_RCVBUF)).await;
    slow.get(BIG_URL, &[]).await;
    let head = slow.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.content_length(), BIG_LEN);
    let first = within(Duration::from_secs(5), "first chunks", slow.body(4 * CHUNK)).await;
    assert_eq!(first, big()[..4 * CHUNK]);
    let ahead = settled_sent_bytes(&server.state).await;
    assert!(
        ahead < AHEAD_LIMIT,
        "server streamed {ahead} bytes to a client that read {} of {BIG_LEN}",
        4 * CHUNK
    );
    assert_eq!(inflight(&server.state), 1);
    let rest = within(
        Duration::from_secs(10),
        "rest of the slow download",
        slow.body(BIG_LEN - 4 * CHUNK),
    )
    .await;
    assert!(rest == big()[4 * CHUNK..], "slow download differs");
    drop(slow);

    // A plain client at full speed.
    let before = sent_bytes(&server.state);
    let client = reqwest::Client::new();
    let body = within(Duration::from_secs(10), "reqwest download", async {
        let response = client
            .get(server.url(BIG_URL))
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.content_length(), Some(BIG_LEN as u64));
        assert_eq!(
            response.headers()["content-length"],
            BIG_LEN.to_string().as_str()
        );
        response.bytes().await.expect("body")
    })
    .await;
    assert_eq!(body.len(), BIG_LEN);
    assert!(body.as_ref() == big(), "downloaded bytes differ");
    assert_eq!(sent_bytes(&server.state) - before, BIG_LEN as u64);
    eventually(Duration::from_secs(5), "inflight back to 0", || {
        inflight(&server.state) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_stops_the_read() {
    let fx = fixture();
    let server = TestServer::start(fx.config.clone()).await;
    let mut raw = Raw::connect(server.addr, Some(SMALL_RCVBUF)).await;
    raw.get(BIG_URL, &[]).await;
    assert_eq!(raw.head().await.status, 200);
    let first = within(Duration::from_secs(5), "first MiB", raw.body(MIB)).await;
    assert_eq!(first, big()[..MIB]);
    assert_eq!(inflight(&server.state), 1);
    drop(raw);

    eventually(Duration::from_secs(5), "inflight back to 0", || {
        inflight(&server.state) == 0
    })
    .await;
    let after_close = sent_bytes(&server.state);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = sent_bytes(&server.state);
    assert_eq!(
        later, after_close,
        "the server kept streaming after the close"
    );
    assert!(
        later < AHEAD_LIMIT,
        "{later} bytes streamed for a client that read 1 MiB and left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_timeout_closes_slowloris() {
    let mut fx = fixture();
    fx.config.server.header_read_timeout = Duration::from_millis(300);
    let server = TestServer::start(fx.config.clone()).await;

    // Half a head, then silence.
    let mut raw = Raw::connect(server.addr, None).await;
    raw.stream
        .write_all(b"GET /releases/x HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    let start = Instant::now();
    let got = within(Duration::from_secs(5), "silent client closed", async {
        let mut got = Vec::new();
        let _ = raw.stream.read_to_end(&mut got).await;
        got
    })
    .await;
    let elapsed = start.elapsed();
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "unexpected answer {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );

    // A head dripped one byte every 50 ms keeps the connection busy (the idle timeout never
    // fires) but never completes: the header deadline is absolute.
    let mut raw = Raw::connect(server.addr, None).await;
    raw.stream
        .write_all(b"GET /releases/x HTTP/1.1\r\nHost: a\r\nX-Drip: ")
        .await
        .expect("write");
    let start = Instant::now();
    within(Duration::from_secs(5), "dripping client closed", async {
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = raw.stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => assert!(
                        buf[..n].starts_with(b"HTTP/1.1 408"),
                        "unexpected answer {:?}",
                        String::from_utf8_lossy(&buf[..n])
                    ),
                },
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    if raw.stream.write_all(b"a").await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed() {
    let mut fx = fixture();
    fx.config.server.idle_timeout = Duration::from_millis(300);
    let server = TestServer::start(fx.config.clone()).await;

    let mut raw = Raw::connect(server.addr, None).await;
    for _ in 0..2 {
        raw.get(SMALL_URL, &[]).await;
        let head = raw.head().await;
        assert_eq!(head.status, 200);
        let body = raw.body(head.content_length()).await;
        assert_eq!(body, SMALL_BODY.as_bytes());
    }
    let start = Instant::now();
    let extra = within(
        Duration::from_secs(5),
        "idle connection closed",
        raw.until_closed(),
    )
    .await;
    let elapsed = start.elapsed();
    assert_eq!(extra, 0, "nothing is sent on an idle connection");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_is_cut_off() {
    let mut fx = fixture();
    fx.config.server.idle_timeout = Duration::from_millis(300);
    let server = TestServer::start(fx.config.clone()).await;

    let mut raw = Raw::connect(server.addr, Some(SMALL_RCVBUF)).await;
    raw.get(BIG_URL, &[]).await;
    assert_eq!(raw.head().await.status, 200);
    eventually(Duration::from_secs(5), "download started", || {
        inflight(&server.state) == 1
    })
    .await;
    // Read nothing more: the server fills the sockets, then nothing moves.
    eventually(Duration::from_secs(5), "stalled download dropped", || {
        inflight(&server.state) == 0
    })
    .await;
    let received = within(
        Duration::from_secs(5),
        "stalled connection closed",
        raw.until_closed(),
    )
    .await;
    assert!(
        received < BIG_LEN,
        "the whole file arrived: connection not cut"
    );
    assert!(sent_bytes(&server.state) < AHEAD_LIMIT);
}

/// A client that reads steadily but slower than the server can send keeps its download.
///
/// 64 KiB every 100 ms is ~640 KiB/s. The idle timeout is 1 s rather than a few hundred ms:
/// on loopback (64 KiB MSS) TCP's receive-window updates alone can leave the wire silent
/// for a few hundred ms while the client reads, even with a perfect server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_but_steady_reader_is_not_cut_off() {
    let mut fx = fixture();
    fx.config.server.idle_timeout = Duration::from_secs(1);
    let server = TestServer::start(fx.config.clone()).await;

    let mut raw = Raw::connect(server.addr, None).await;
    raw.get(BIG_URL, &[]).await;
    assert_eq!(raw.head().await.status, 200);
    let mut got = Vec::with_capacity(BIG_LEN);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            inflight(&server.state),
            1,
            "download cut off after {:?}, {} bytes read",
            start.elapsed(),
            got.len()
        );
        let chunk = within(Duration::from_secs(2), "one chunk", raw.body(CHUNK)).await;
        got.extend_from_slice(&chunk);
    }
    let rest = within(
        Duration::from_secs(10),
        "rest of the download",
        raw.body(BIG_LEN - got.len()),
    )
    .await;
    got.extend_from_slice(&rest);
    assert!(got == big(), "download differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_downloads() {
    let fx = fixture();
    let mut server = TestServer::start(fx.config.clone()).await;
    let mut raw = Raw::connect(server.addr, Some(SMALL_RCVBUF)).await;
    raw.get(BIG_URL, &[]).await;
    let head = raw.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.content_length(), BIG_LEN);
    let mut got = within(Duration::from_secs(5), "first MiB", raw.body(MIB)).await;

    let run = server.begin_shutdown();
    wait_refused(server.addr).await;
    assert!(
        !run.is_finished(),
        "run() returned with a download in flight"
    );
    assert_eq!(inflight(&server.state), 1);

    // Still slow for a while, then the rest.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        got.extend_from_slice(&within(Duration::from_secs(2), "chunk", raw.body(CHUNK)).await);
    }
    assert!(
        !run.is_finished(),
        "run() returned with a download in flight"
    );
    let rest = within(
        Duration::from_secs(10),
        "rest of the download",
        raw.body(BIG_LEN - got.len()),
    )
    .await;
    got.extend_from_slice(&rest);
    assert!(got == big(), "download differs");
    // Keep-alive is over once shutting down: the server closes after the response.
    let extra = within(
        Duration::from_secs(5),
        "connection closed",
        raw.until_closed(),
    )
    .await;
    assert_eq!(extra, 0);
    within(Duration::from_secs(5), "run() after the drain", run)
        .await
        .expect("run task");
    assert_eq!(inflight(&server.state), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_a_stalled_download() {
    let mut fx = fixture();
    fx.config.server.shutdown_grace = Duration::from_millis(500);
    fx.config.server.idle_timeout = Duration::from_secs(60);
    let mut server = TestServer::start(fx.config.clone()).await;
    let mut raw = Raw::connect(server.addr, Some(SMALL_RCVBUF)).await;
    raw.get(BIG_URL, &[]).await;
    assert_eq!(raw.head().await.status, 200);
    let first = within(Duration::from_secs(5), "first MiB", raw.body(MIB)).await;
    assert_eq!(first, big()[..MIB]);

    // The client stalls for good; shutdown must not wait for it past the grace period.
    let start = Instant::now();
    let run = server.begin_shutdown();
    within(Duration::from_secs(5), "run() after the grace period", run)
        .await
        .expect("run task");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(2500),
        "run() returned {elapsed:?} after shutdown began"
    );
    // "Closing remaining connections": the stalled download is dropped and its socket
    // closed, although the client never reads again.
    eventually(
        Duration::from_secs(2),
        "stalled download dropped after the grace",
        || inflight(&server.state) == 0,
    )
    .await;
    let received = within(
        Duration::from_secs(5),
        "stalled connection closed after the grace",
        raw.until_closed(),
    )
    .await;
    assert!(
        MIB + received < BIG_LEN,
        "the stalled download went on to completion after run() returned"
    );
}

/// Sends `signal` to the binary mid-download: the download completes, new connections are
/// refused, and the process exits 0.
async fn signal_drains_and_exits_zero(signal: &str) {
    let fx = fixture();
    let mut server = BinaryServer::spawn(fx.root(), &[]);
    let client = reqwest::Client::new();
    let mut response = within(
        Duration::from_secs(5),
        "response",
        client.get(server.url(BIG_URL)).send(),
    )
    .await
    .expect("download response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(BIG_LEN as u64));
    let mut got = Vec::with_capacity(BIG_LEN);
    within(Duration::from_secs(5), "first MiB", async {
        while got.len() < MIB {
            let chunk = response.chunk().await.expect("chunk").expect("more body");
            got.extend_from_slice(&chunk);
        }
    })
    .await;
    let metrics = within(Duration::from_secs(5), "metrics", async {
        client
            .get(server.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    })
    .await;
    assert!(
        metrics.contains("release_edge_inflight_downloads 1"),
        "the download is not in flight:\n{metrics}"
    );

    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    wait_refused(server.addr).await;

    within(Duration::from_secs(15), "rest of the download", async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Some(chunk) = response.chunk().await.expect("chunk") {
            got.extend_from_slice(&chunk);
        }
    })
    .await;
    assert_eq!(got.len(), BIG_LEN);
    assert!(got == big(), "download differs");
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status after SIG{signal}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_downloads_and_exits_zero() {
    signal_drains_and_exits_zero("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_downloads_and_exits_zero() {
    signal_drains_and_exits_zero("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_stalled_client_exits_after_the_grace() {
    let fx = fixture();
    let mut server = BinaryServer::spawn(
        fx.root(),
        &[
            ("RELEASE_EDGE_SERVER__SHUTDOWN_GRACE", "500ms"),
            ("RELEASE_EDGE_SERVER__IDLE_TIMEOUT", "60s"),
        ],
    );
    let mut raw = Raw::connect(server.addr, Some(SMALL_RCVBUF)).await;
    raw.get(BIG_URL, &[]).await;
    assert_eq!(raw.head().await.status, 200);
    within(Duration::from_secs(5), "first MiB", raw.body(MIB)).await;

    let start = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(5));
    let elapsed = start.elapsed();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(3000),
        "exited {elapsed:?} after SIGTERM"
    );
    let received = within(
        Duration::from_secs(5),
        "connection closed",
        raw.until_closed(),
    )
    .await;
    assert!(MIB + received < BIG_LEN, "the stalled download completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_over_http1_keep_alive_and_h2c() {
    let fx = fixture();
    let server = TestServer::start(fx.config.clone()).await;
    let ranges = [
        (0usize, 99usize),
        (100_000, 1_199_999),
        (BIG_LEN - 10, BIG_LEN - 1),
    ];

    // HTTP/1.1: every range on one connection.
    let mut raw = Raw::connect(server.addr, None).await;
    for (start, end) in ranges {
        raw.get(BIG_URL, &[("Range", &format!("bytes={start}-{end}"))])
            .await;
        let head = raw.head().await;
        assert_eq!(head.status, 206);
        assert_eq!(
            head.header("content-range"),
            format!("bytes {start}-{end}/{BIG_LEN}")
        );
        assert_eq!(head.content_length(), end - start + 1);
        let body = within(
            Duration::from_secs(5),
            "range body",
            raw.body(end - start + 1),
        )
        .await;
        assert!(body == big()[start..=end], "bytes {start}-{end} differ");
    }

    // HTTP/2 cleartext with prior knowledge: concurrent streams on one connection.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let fetches = ranges.map(|(start, end)| {
        let request = client
            .get(server.url(BIG_URL))
            .header("range", format!("bytes={start}-{end}"));
        async move {
            let response = request.send().await.expect("h2 response");
            assert_eq!(response.version(), reqwest::Version::HTTP_2);
            assert_eq!(response.status(), 206);
            assert_eq!(
                response.headers()["content-range"],
                format!("bytes {start}-{end}/{BIG_LEN}").as_str()
            );
            let body = response.bytes().await.expect("h2 body");
            assert!(
                body.as_ref() == &big()[start..=end],
                "bytes {start}-{end} differ"
            );
        }
    });
    let [a, b, c] = fetches;
    within(Duration::from_secs(10), "h2 ranges", async {
        tokio::join!(a, b, c);
    })
    .await;
}
