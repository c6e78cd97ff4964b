//! Listeners and connections: HTTP/1.1 and HTTP/2 (h2c, or h2 over TLS) through hyper,
//! header-read and idle timeouts, and graceful shutdown that lets in-flight downloads finish.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::router;
use crate::state::AppState;
use crate::tls::Tls;

/// hyper's per-connection buffer limit. It bounds both the request head (a 1000-range
/// `Range` header from electron-updater is about 25 KiB) and how much response body hyper
/// queues for a slow reader: with 200 clients on one large file, memory stays small.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// A bound, not yet running server.
pub struct Server {
    state: AppState,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    admin_listener: Option<TcpListener>,
    tls: Option<Tls>,
}

impl Server {
    /// Loads the TLS certificate when `[tls]` is set (an unusable one is refused, naming the
    /// key), then binds `listen` (and `metrics_listen`, `admin_listen` when set).
    pub async fn bind(state: AppState) -> io::Result<Self> {
        let tls = match &state.config.tls {
            Some(config) => Some(Tls::load(config).await.map_err(io::Error::other)?),
            None => None,
        };
        let listener = TcpListener::bind(state.config.listen).await?;
        let metrics_listener = match state.config.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let admin_listener = match state.config.admin_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self {
            state,
            listener,
            metrics_listener,
            admin_listener,
            tls,
        })
    }

    /// The bound public address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound metrics address, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The bound admin address, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting and waits for in-flight
    /// requests for up to `server.shutdown_grace` before returning.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let settings = self.state.config.server.clone();
        let public = router::build(self.state.clone());
        let metrics = router::metrics(self.state.clone());
        let admin = router::admin(self.state.clone());
        let builder = Arc::new(connection_builder(&settings));
        let graceful = GracefulShutdown::new();
        // Connection tasks live in this set, so that when the grace period is over they are
        // really stopped, even when the runtime goes on (tests, embedding).
        let mut connections = tokio::task::JoinSet::new();
        let tls = self.tls.as_ref().map(Tls::acceptor);
        tokio::pin!(shutdown);

        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted.map(|c| (c, &public, tls)),
                // Metrics stay plain HTTP: scraped from inside the network.
                accepted = accept_optional(self.metrics_listener.as_ref()) => {
                    accepted.map(|c| (c, &metrics, None))
                }
                // The admin API is plain HTTP too: keep `admin_listen` inside the network.
                accepted = accept_optional(self.admin_listener.as_ref()) => {
                    accepted.map(|c| (c, &admin, None))
                }
                () = &mut shutdown => break,
            };
            let ((stream, peer), app, tls) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            while connections.try_join_next().is_some() {}
            let conn = Conn {
                builder: &builder,
                graceful: &graceful,
                settings: &settings,
            };
            conn.serve(&mut connections, stream, peer, app.clone(), tls.cloned());
        }

        drop(self.listener);
        drop(self.metrics_listener);
        drop(self.admin_listener);
        tracing::info!(
            grace = ?settings.shutdown_grace,
            "shutting down: no new connections, draining in-flight requests"
        );
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections drained"),
            () = tokio::time::sleep(settings.shutdown_grace) => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
            }
        }
        connections.shutdown().await;
    }
}

async fn accept_optional(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

fn connection_builder(settings: &ServerConfig) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(MAX_BUF_SIZE)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// What every connection is served with.
struct Conn<'a> {
    builder: &'a Arc<Builder<TokioExecutor>>,
    graceful: &'a GracefulShutdown,
    settings: &'a ServerConfig,
}

impl Conn<'_> {
    fn serve(
        &self,
        connections: &mut tokio::task::JoinSet<()>,
        stream: TcpStream,
        peer: SocketAddr,
        app: Router,
        tls: Option<TlsAcceptor>,
    ) {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        // Wake the writer while at most 128 KiB is still unsent, instead of when a third of a
        // send buffer that can grow to megabytes has drained: a slow but live reader then
        // shows progress often enough for the idle timeout, and the kernel holds less per
        // connection.
        if let Err(err) = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(128 * 1024) {
            tracing::debug!(error = %err, "cannot set TCP_NOTSENT_LOWAT");
        }
        // Under TLS the idle timeout still counts the bytes on the socket, handshake included.
        let io = IdleTimeout::new(stream, self.settings.idle_timeout);
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            // Handlers see the peer address (rollout bucketing, trusted proxies).
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
        let builder = Arc::clone(self.builder);
        // Taken now, so that a shutdown during the TLS handshake still waits for (then
        // gracefully closes) this connection.
        let watcher = self.graceful.watcher();
        // A handshake is bounded like a request head: a client that opens a socket and sends
        // nothing holds it no longer than `header_read_timeout`.
        let handshake_timeout = self.settings.header_read_timeout;
        connections.spawn(async move {
            let io = match tls {
                None => Either::Left(io),
                Some(tls) => match tokio::time::timeout(handshake_timeout, tls.accept(io)).await {
                    Ok(Ok(stream)) => Either::Right(stream),
                    Ok(Err(err)) => {
                        tracing::debug!(error = %err, %peer, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            let connection = builder.serve_connection(TokioIo::new(io), service);
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(error = %err, %peer, "connection closed with error");
            }
        });
    }
}

pin_project_lite::pin_project! {
    /// Closes a connection on which no byte has moved, in either direction, for `timeout`:
    /// idle keep-alive connections, half-open peers, and clients that stopped reading a
    /// download all release their socket and buffers. A slow but live client keeps going.
    pub struct IdleTimeout<T> {
        #[pin]
        inner: T,
        deadline: Pin<Box<Sleep>>,
        timeout: Duration,
        last_progress: Instant,
    }
}

impl<T> IdleTimeout<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(now + timeout)),
            timeout,
            last_progress: now,
        }
    }
}

/// Called when the inner I/O is not ready: fails once `timeout` has passed without progress.
///
/// The timer is not moved on every byte (that would be a timer-wheel update per request on a
/// keep-alive connection): it stays armed at its deadline, and when it fires after progress
/// it is re-armed once, for `timeout` after that progress.
fn expired(
    deadline: &mut Pin<Box<Sleep>>,
    last_progress: Instant,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> bool {
    loop {
        if deadline.as_mut().poll(cx).is_pending() {
            return false;
        }
        let due = last_progress + timeout;
        if due <= deadline.deadline() {
            return true;
        }
        deadline.as_mut().reset(due);
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle timeout")
}

impl<T: AsyncRead> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    *this.last_progress = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending if expired(this.deadline, *this.last_progress, *this.timeout, cx) => {
                Poll::Ready(Err(idle_error()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write(cx, buf) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    *this.last_progress = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending if expired(this.deadline, *this.last_progress, *this.timeout, cx) => {
                Poll::Ready(Err(idle_error()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    *this.last_progress = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending if expired(this.deadline, *this.last_progress, *this.timeout, cx) => {
                Poll::Ready(Err(idle_error()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
