//! Every layer of the public router, in one ordered function (outermost first).

use std::any::Any;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::Method;
use http_body::{Frame, SizeHint};
use prometheus::IntCounter;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tracing::{Instrument, Span};

use crate::error::AppError;
use crate::metrics::Served;
use crate::state::AppState;

/// Route label for requests that matched no route (bounded: never the raw path).
const UNMATCHED: &str = "unmatched";

/// Wraps `router` in the server's layers.
pub fn apply(router: Router<AppState>, state: AppState) -> Router<AppState> {
    let timeout = state.config.server.request_timeout;
    router.layer(
        ServiceBuilder::new()
            // An id first, so that every later layer and every log line can carry it; a
            // client- or proxy-supplied `x-request-id` is kept.
            .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
            // Echo the id so that a user's bug report can quote it.
            .layer(PropagateRequestIdLayer::x_request_id())
            // One span per request with route and id (every log line inside carries them),
            // an access-log line, and the request metrics; outside catch-panic, so that a
            // panic counts as the 500 it becomes. One layer for the three: they need the
            // same facts, and a streamed body is wrapped once.
            .layer(from_fn_with_state(state, observe))
            // A panicking handler answers 500 JSON instead of dropping the connection.
            .layer(CatchPanicLayer::custom(panic_response))
            // Bound the time to response headers; streaming bodies are bounded by the
            // connection idle timeout instead (server.rs), so large downloads may run long.
            .layer(from_fn_with_state(timeout, request_timeout)),
    )
}

/// 128 random bits as hex: as unique as a UUID v4, without a `getrandom` system call per
/// request.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<RequestId> {
        http::HeaderValue::from_str(&format!("{:032x}", fastrand::u128(..)))
            .ok()
            .map(RequestId::new)
    }
}

fn request_span(req: &Request) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str);
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %req.method(), route, request_id = id, uri = %req.uri())
}

/// Methods are a label: unknown ones fold into `other` so that no client adds series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

async fn observe(State(app): State<AppState>, req: Request, next: Next) -> Response {
    // `MatchedPath` is an `Arc<str>`: cloning it allocates nothing.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let method = method_label(req.method());
    let span = request_span(&req);
    let start = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    tracing::info!(
        parent: &span,
        status = response.status().as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    let metrics = &app.metrics;
    metrics
        .http_duration
        .with_label_values(&[route])
        .observe(elapsed.as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[route, method, response.status().as_str()])
        .inc();
    let counter = metrics.response_bytes.with_label_values(&[route]);
    let served = response.extensions().get::<Served>().map(|s| {
        metrics
            .served_bytes
            .with_label_values(&[s.origin, s.kind.as_str()])
    });
    response.map(|body| {
        Body::new(CountingBody {
            inner: body,
            counter,
            served,
        })
    })
}

async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => AppError::RequestTimeout(limit).into_response(),
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("panic");
    AppError::Internal(format!("handler panicked: {message}")).into_response()
}

pin_project_lite::pin_project! {
    /// Counts body bytes into `release_edge_response_bytes_total` as they are sent, and
    /// into `release_edge_served_bytes_total` when the handler said what the body is.
    struct CountingBody {
        #[pin]
        inner: Body,
        counter: IntCounter,
        served: Option<IntCounter>,
    }
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.counter.inc_by(data.len() as u64);
            if let Some(served) = this.served {
                served.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
