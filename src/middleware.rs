//! Every layer of the public router, in one ordered function (outermost first).

use std::any::Any;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Method};
use http_body::{Frame, SizeHint};
use prometheus::IntCounter;
use tower::{Layer, Service, ServiceBuilder};
use tracing::Instrument;

use crate::error::AppError;
use crate::metrics::{RouteMetrics, Served};
use crate::state::AppState;

/// Route label for requests that matched no route (bounded: never the raw path).
const UNMATCHED: &str = "unmatched";

/// Wraps `router` in the server's layers.
pub fn apply(router: Router<AppState>, state: AppState) -> Router<AppState> {
    router.layer(
        ServiceBuilder::new()
            // One layer for what every request needs around it, in one future (no boxed
            // `Next` per layer): an id (a client's or proxy's `x-request-id` is kept and
            // echoed), a span with route and id that every log line inside carries, the
            // access-log line, the request metrics through handles resolved once per route,
            // and the time limit to response headers (streamed bodies are bounded by the
            // connection idle timeout instead, server.rs), and a panicking handler answered
            // with a 500 JSON body (counted as the 500 it becomes) instead of a dropped
            // connection.
            .layer(ObserveLayer { app: state }),
    )
}

/// See [`apply`].
#[derive(Clone)]
struct ObserveLayer {
    app: AppState,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            app: self.app.clone(),
        }
    }
}

#[derive(Clone)]
struct Observe<S> {
    inner: S,
    app: AppState,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        let app = self.app.clone();
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let route = matched.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        let metrics = app.metrics.route(route);
        let method = method_label(req.method());
        let id = match req.headers().get(REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                req.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            route,
            request_id = id.to_str().unwrap_or("-"),
            uri = %Redacted(req.uri()),
            // Who a private channel let in (`channel:name` of a token, or `signed-url`),
            // recorded by `crate::access`: the log names the holder, never the token.
            access = tracing::field::Empty,
        );
        let limit = app.config.server.request_timeout;
        let inner = &mut self.inner;
        let handler = std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req)));
        Box::pin(async move {
            let response = match handler {
                Ok(future) => {
                    let guarded = AssertUnwindSafe(future)
                        .catch_unwind()
                        .instrument(span.clone());
                    match tokio::time::timeout(limit, guarded).await {
                        Ok(Ok(Ok(response))) => response,
                        Ok(Err(panic)) => panic_response(panic),
                        Err(_) => AppError::RequestTimeout(limit).into_response(),
                    }
                }
                Err(panic) => panic_response(panic),
            };
            let elapsed = start.elapsed();
            tracing::info!(
                parent: &span,
                status = response.status().as_u16(),
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
            metrics.duration.observe(elapsed.as_secs_f64());
            metrics.count(method, response.status());
            let served = response
                .extensions()
                .get::<Served>()
                .map(|served| app.metrics.served(*served));
            let (mut parts, body) = response.into_parts();
            parts.headers.insert(REQUEST_ID, id);
            Ok(Response::from_parts(parts, counted(body, &metrics, served)))
        })
    }
}

const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Query parameters whose values are credentials (a private channel's `token`, a signed
/// URL's `sig`): never written to a log.
const SECRET_PARAMS: [&str; 2] = ["token", "sig"];

/// A URI as the log shows it: the values of [`SECRET_PARAMS`] replaced by `REDACTED`. A
/// query without them is written as it is, with no allocation.
struct Redacted<'a>(&'a http::Uri);

impl std::fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(query) = self.0.query() else {
            return std::fmt::Display::fmt(self.0, f);
        };
        f.write_str(self.0.path())?;
        for (i, pair) in query.split('&').enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            match pair.split_once('=') {
                Some((name, _)) if SECRET_PARAMS.contains(&name) => {
                    write!(f, "{name}=REDACTED")?;
                }
                _ => f.write_str(pair)?,
            }
        }
        Ok(())
    }
}

/// 128 random bits as hex: as unique as a UUID v4, without a `getrandom` system call or an
/// allocation for formatting per request.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = fastrand::u128(..);
    let mut text = [0u8; 32];
    for (i, byte) in text.iter_mut().enumerate() {
        *byte = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// A body counted into the route's response bytes (and the served bytes, when the handler
/// said what it is). A body of known length (a feed, a manifest, an error) is counted at
/// once, without a wrapper; a streamed one as each chunk is handed to the connection, so a
/// client that goes away is counted for what it got.
fn counted(body: Body, metrics: &RouteMetrics, served: Option<IntCounter>) -> Body {
    if let Some(len) = http_body::Body::size_hint(&body).exact() {
        metrics.bytes.inc_by(len);
        if let Some(served) = &served {
            served.inc_by(len);
        }
        return body;
    }
    Body::new(CountingBody {
        inner: body,
        counter: metrics.bytes.clone(),
        served,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_query_are_never_logged() {
        for (uri, shown) in [
            ("/releases/v1/a.exe", "/releases/v1/a.exe"),
            (
                "/latest?channel=beta&token=s3cret",
                "/latest?channel=beta&token=REDACTED",
            ),
            (
                "/releases/v1/a.exe?sig=1.AbC&x=1&token",
                "/releases/v1/a.exe?sig=REDACTED&x=1&token",
            ),
            (
                "/update/linux/x64/1.0.0?noCache=1",
                "/update/linux/x64/1.0.0?noCache=1",
            ),
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(Redacted(&uri).to_string(), shown);
        }
    }
}
