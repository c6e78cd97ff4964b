//! Local stand-ins of the CDN purge APIs — Cloudflare's `purge_cache`, Fastly's purge
//! endpoints, CloudFront's `CreateInvalidation` (REST-XML, SigV4) and a webhook — each
//! speaking its provider's documented request shape, auth header and answers, recording
//! every purge it accepted and able to fail on demand.

#![allow(dead_code)]

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which provider a stand-in plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cloudflare,
    Fastly,
    Cloudfront,
    Webhook,
}

/// One purge the stand-in accepted, as the provider understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// `tags`, `files` (Cloudflare); `keys`, `url` (Fastly); `paths` (CloudFront); `webhook`.
    pub kind: &'static str,
    /// What it names, in the order sent.
    pub items: Vec<String>,
}

/// A stand-in of one provider on 127.0.0.1.
pub struct CdnStandIn {
    pub provider: Provider,
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    provider: Provider,
    /// The credential it accepts: an API token, or CloudFront's access key id.
    token: String,
    /// CloudFront: the secret key the SigV4 signatures are checked with.
    secret: String,
    /// The id in the URL: zone, service or distribution.
    id: String,
    state: Mutex<StandInState>,
    /// Requests answered so far (failed ones included), for awaiting them.
    answered: watch::Sender<usize>,
}

#[derive(Default)]
struct StandInState {
    purges: Vec<Purge>,
    /// Answers to give before accepting again: (status, Retry-After).
    failures: Vec<(StatusCode, Option<u64>)>,
    /// Fail every request with this status.
    failing: Option<StatusCode>,
    /// `Fastly-Soft-Purge` of each Fastly request.
    soft: Vec<bool>,
    /// The webhook's JSON bodies.
    bodies: Vec<Value>,
    /// CloudFront caller references, in order.
    references: Vec<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, StandInState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CdnStandIn {
    /// The zone, service and distribution id every stand-in uses.
    pub const ID: &'static str = "0123456789abcdef0123456789abcdef";

    /// Starts a stand-in that accepts `token` (CloudFront: requests signed with the access
    /// key id `token` and the secret key `secret`).
    pub async fn start(provider: Provider, token: &str, secret: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind cdn");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            provider,
            token: token.to_owned(),
            secret: secret.to_owned(),
            id: Self::ID.to_owned(),
            state: Mutex::new(StandInState::default()),
            answered: watch::Sender::new(0),
        });
        let router = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            provider,
            url,
            shared,
            task,
        }
    }

    /// `cdn.api_url` (or the webhook's `cdn.url`) for a client of this stand-in.
    pub fn api_url(&self) -> String {
        match self.provider {
            Provider::Cloudflare => format!("{}/client/v4", self.url),
            Provider::Webhook => format!("{}/hooks/purge", self.url),
            Provider::Fastly | Provider::Cloudfront => self.url.clone(),
        }
    }

    /// The accepted purges so far.
    pub fn purges(&self) -> Vec<Purge> {
        self.shared.lock().purges.clone()
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        let mut st = self.shared.lock();
        st.purges.clear();
        st.bodies.clear();
        st.soft.clear();
        st.references.clear();
        self.shared.answered.send_replace(0);
    }

    /// Requests answered so far, failed ones included.
    pub fn requests(&self) -> usize {
        *self.shared.answered.borrow()
    }

    /// Waits (bounded: 10 s) until `n` requests have been answered.
    pub async fn answered(&self, n: usize) {
        let mut rx = self.shared.answered.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|&got| got >= n))
            .await
            .unwrap_or_else(|_| panic!("the CDN stand-in did not get {n} requests"))
            .expect("stand-in alive");
    }

    /// The next `statuses` requests fail with these statuses (and `Retry-After`).
    pub fn fail_next(&self, statuses: &[(u16, Option<u64>)]) {
        self.shared.lock().failures = statuses
            .iter()
            .map(|(s, r)| (StatusCode::from_u16(*s).expect("status"), *r))
            .collect();
    }

    /// Every request fails with `status` (`None`: back to normal).
    pub fn fail_all(&self, status: Option<u16>) {
        self.shared.lock().failing = status.map(|s| StatusCode::from_u16(s).expect("status"));
    }

    /// The webhook's bodies.
    pub fn webhook_bodies(&self) -> Vec<Value> {
        self.shared.lock().bodies.clone()
    }

    /// `Fastly-Soft-Purge` of each accepted Fastly request.
    pub fn soft(&self) -> Vec<bool> {
        self.shared.lock().soft.clone()
    }

    /// CloudFront caller references received (failed requests included).
    pub fn references(&self) -> Vec<String> {
        self.shared.lock().references.clone()
    }
}

impl Drop for CdnStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let answer = match shared.provider {
        Provider::Cloudflare => cloudflare,
        Provider::Fastly => fastly,
        Provider::Cloudfront => cloudfront,
        Provider::Webhook => webhook,
    };
    let response = answer(&shared, &Call::of(&parts), &body);
    shared.answered.send_modify(|n| *n += 1);
    response
}

/// What the providers look at in a request.
struct Call<'a> {
    method: &'a Method,
    path: &'a str,
    headers: &'a HeaderMap,
}

impl<'a> Call<'a> {
    fn of(parts: &'a http::request::Parts) -> Self {
        Self {
            method: &parts.method,
            path: parts.uri.path(),
            headers: &parts.headers,
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("response")
}

fn json_reply(status: StatusCode, body: Value) -> Response {
    reply(status, "application/json", body.to_string())
}

/// An injected failure, in the provider's error format, when one is due.
fn injected(shared: &Shared, error: impl Fn(StatusCode) -> Response) -> Option<Response> {
    let mut st = shared.lock();
    let (status, retry_after) = match st.failing {
        Some(status) => (status, None),
        None if !st.failures.is_empty() => st.failures.remove(0),
        None => return None,
    };
    drop(st);
    let mut response = error(status);
    if let Some(secs) = retry_after {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            secs.to_string().parse().expect("value"),
        );
    }
    Some(response)
}

/// The strings of a JSON array.
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Cloudflare's `POST /client/v4/zones/{zone_id}/purge_cache`: `Authorization: Bearer`,
/// a JSON body with exactly one of `files`, `tags`, `hosts`, `prefixes` or
/// `purge_everything`, at most 30 items; the v4 envelope in every answer.
fn cloudflare(shared: &Shared, call: &Call, body: &Bytes) -> Response {
    let (method, path, headers) = (call.method, call.path, call.headers);
    let error = |status: StatusCode, code: u32, message: &str| {
        json_reply(
            status,
            json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null}),
        )
    };
    if *method != Method::POST || path != format!("/client/v4/zones/{}/purge_cache", shared.id) {
        return error(
            StatusCode::NOT_FOUND,
            7003,
            "Could not route to /zones, perhaps your object identifier is invalid?",
        );
    }
    if header_str(headers, "authorization") != Some(&format!("Bearer {}", shared.token)) {
        return error(StatusCode::FORBIDDEN, 10000, "Authentication error");
    }
    if let Some(failure) = injected(shared, |s| {
        error(s, 10001, "service unavailable, try again")
    }) {
        return failure;
    }
    if !header_str(headers, "content-type").is_some_and(|v| v.starts_with("application/json")) {
        return error(StatusCode::BAD_REQUEST, 6003, "Invalid request headers");
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            1012,
            "Request must contain one of \"purge_everything\", \"files\", \"tags\", \"hosts\" or \"prefixes\"",
        );
    };
    let kinds: Vec<&String> = request.keys().collect();
    let [kind] = kinds[..] else {
        return error(
            StatusCode::BAD_REQUEST,
            1012,
            "Request must contain one of \"purge_everything\", \"files\", \"tags\", \"hosts\" or \"prefixes\"",
        );
    };
    let items = strings(&request[kind]);
    if items.is_empty() || items.len() > 30 {
        return error(
            StatusCode::BAD_REQUEST,
            1015,
            "Purge requests must name between 1 and 30 items",
        );
    }
    let kind = match kind.as_str() {
        "files" => "files",
        "tags" => "tags",
        "prefixes" => "prefixes",
        "hosts" => "hosts",
        _ => return error(StatusCode::BAD_REQUEST, 1012, "unknown purge type"),
    };
    shared.lock().purges.push(Purge { kind, items });
    json_reply(
        StatusCode::OK,
        json!({"success": true, "errors": [], "messages": [], "result": {"id": shared.id}}),
    )
}

/// Fastly: `POST /service/{service_id}/purge` with the keys in `Surrogate-Key` (answer: a
/// purge id per key), `POST /purge/{host}/{path}` for one URL (answer: `status`, `id`);
/// the token in `Fastly-Key`.
fn fastly(shared: &Shared, call: &Call, _body: &Bytes) -> Response {
    let (method, path, headers) = (call.method, call.path, call.headers);
    let error = |status: StatusCode, message: &str| {
        json_reply(status, json!({"msg": message, "detail": ""}))
    };
    if *method != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    if header_str(headers, "fastly-key") != Some(shared.token.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Provided credentials are missing or invalid",
        );
    }
    if let Some(failure) = injected(shared, |s| error(s, "Service temporarily unavailable")) {
        return failure;
    }
    let soft = header_str(headers, "fastly-soft-purge") == Some("1");
    if path == format!("/service/{}/purge", shared.id) {
        let keys: Vec<String> = header_str(headers, "surrogate-key")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if keys.is_empty() || keys.len() > 256 {
            return error(StatusCode::BAD_REQUEST, "between 1 and 256 surrogate keys");
        }
        let ids: serde_json::Map<String, Value> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), json!(format!("108-1391560174-{i:06}"))))
            .collect();
        let mut st = shared.lock();
        st.purges.push(Purge {
            kind: "keys",
            items: keys,
        });
        st.soft.push(soft);
        return json_reply(StatusCode::OK, Value::Object(ids));
    }
    if let Some(cached) = path.strip_prefix("/purge/") {
        let mut st = shared.lock();
        st.purges.push(Purge {
            kind: "url",
            items: vec![cached.to_owned()],
        });
        st.soft.push(soft);
        return json_reply(
            StatusCode::OK,
            json!({"status": "ok", "id": "108-1391560174-974124"}),
        );
    }
    error(StatusCode::NOT_FOUND, "Record not found")
}

/// CloudFront's `CreateInvalidation`: `POST /2020-05-31/distribution/{Id}/invalidation`
/// with an `InvalidationBatch` XML body, signed with SigV4 for `us-east-1/cloudfront`;
/// `201 Created`, a `Location` and the `Invalidation` XML.
fn cloudfront(shared: &Shared, call: &Call, body: &Bytes) -> Response {
    let (method, path, headers) = (call.method, call.path, call.headers);
    let error = |status: StatusCode, code: &str, message: &str| {
        reply(
            status,
            "text/xml",
            format!(
                "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>b1c2d3e4-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
            ),
        )
    };
    if *method != Method::POST
        || path != format!("/2020-05-31/distribution/{}/invalidation", shared.id)
    {
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchDistribution",
            "The specified distribution does not exist.",
        );
    }
    let signed = sigv4_valid(shared, method, path, headers, body);
    if !signed {
        return error(
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        );
    }
    let text = String::from_utf8_lossy(body);
    let between = |open: &str, close: &str| -> Vec<String> {
        text.split(open)
            .skip(1)
            .filter_map(|rest| rest.split_once(close).map(|(v, _)| v.to_owned()))
            .collect()
    };
    let reference = between("<CallerReference>", "</CallerReference>");
    shared.lock().references.extend(reference.iter().cloned());
    if let Some(failure) = injected(shared, |s| {
        error(s, "ServiceUnavailable", "CloudFront is unavailable")
    }) {
        return failure;
    }
    let paths = between("<Path>", "</Path>");
    let quantity: Vec<String> = between("<Quantity>", "</Quantity>");
    if !text.contains("<InvalidationBatch")
        || reference.len() != 1
        || quantity != [paths.len().to_string()]
    {
        return error(
            StatusCode::BAD_REQUEST,
            "InconsistentQuantities",
            "The value of Quantity and the size of Items don't match.",
        );
    }
    if paths.iter().any(|p| !p.starts_with('/')) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Every path must start with /",
        );
    }
    shared.lock().purges.push(Purge {
        kind: "paths",
        items: paths.clone(),
    });
    let items: String = paths.iter().map(|p| format!("<Path>{p}</Path>")).collect();
    let id = "I2J0I21PCUYOIK";
    http::Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "text/xml")
        .header(
            header::LOCATION,
            format!("https://cloudfront.amazonaws.com/2020-05-31/distribution/{}/invalidation/{id}", shared.id),
        )
        .body(Body::from(format!(
            "<?xml version=\"1.0\"?>\n<Invalidation xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"><Id>{id}</Id><Status>InProgress</Status><CreateTime>2026-11-01T12:00:00.000Z</CreateTime><InvalidationBatch><Paths><Quantity>{}</Quantity><Items>{items}</Items></Paths><CallerReference>{}</CallerReference></InvalidationBatch></Invalidation>",
            paths.len(),
            reference[0]
        )))
        .expect("response")
}

/// Checks a request's AWS Signature Version 4 as AWS does: `Authorization: AWS4-HMAC-SHA256
/// Credential={key}/{yyyymmdd}/us-east-1/cloudfront/aws4_request, SignedHeaders=...,
/// Signature=...` with the stand-in's key id, and the signature recomputed from the canonical
/// request (method, path, no query, the signed headers, the body's SHA-256) with its secret.
fn sigv4_valid(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> bool {
    use sha2::Digest;
    let Some(auth) = header_str(headers, "authorization") else {
        return false;
    };
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return false;
    };
    let field = |name: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    let (Some(credential), Some(signed_headers), Some(signature), Some(date_time)) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
        header_str(headers, "x-amz-date"),
    ) else {
        return false;
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, "us-east-1", "cloudfront", "aws4_request"] = scope[..] else {
        return false;
    };
    if key != shared.token || !date_time.starts_with(date) {
        return false;
    }
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let canonical_headers: String = signed_headers
        .split(';')
        .map(|name| {
            format!(
                "{name}:{}\n",
                header_str(headers, name).unwrap_or_default().trim()
            )
        })
        .collect();
    let canonical = format!(
        "{method}\n{path}\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex(&sha2::Sha256::digest(body))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{date}/us-east-1/cloudfront/aws4_request\n{}",
        hex(&sha2::Sha256::digest(canonical.as_bytes()))
    );
    let mut signing_key = hmac_sha256(format!("AWS4{}", shared.secret).as_bytes(), date.as_bytes());
    for part in ["us-east-1", "cloudfront", "aws4_request"] {
        signing_key = hmac_sha256(&signing_key, part.as_bytes());
    }
    hex(&hmac_sha256(&signing_key, string_to_sign.as_bytes())) == signature
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// A webhook receiver: `POST /hooks/purge` with a JSON body and, when it holds a token,
/// `Authorization: Bearer`.
fn webhook(shared: &Shared, call: &Call, body: &Bytes) -> Response {
    let (method, path, headers) = (call.method, call.path, call.headers);
    let error = |status: StatusCode| reply(status, "text/plain", status.to_string());
    if *method != Method::POST || path != "/hooks/purge" {
        return error(StatusCode::NOT_FOUND);
    }
    if header_str(headers, "authorization") != Some(&format!("Bearer {}", shared.token)) {
        return error(StatusCode::UNAUTHORIZED);
    }
    if let Some(failure) = injected(shared, error) {
        return failure;
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST);
    };
    let urls = strings(&value["urls"]);
    let mut st = shared.lock();
    st.purges.push(Purge {
        kind: "webhook",
        items: urls,
    });
    st.bodies.push(value);
    reply(StatusCode::NO_CONTENT, "text/plain", String::new())
}
