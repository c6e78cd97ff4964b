//! A local stand-in of GitHub — the REST API, the github.com download host and the asset
//! storage host on three 127.0.0.1 ports — that speaks GitHub's wire format and counts its hits.

#![allow(dead_code)]

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as Shared};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The repository id GitHub's own docs use (octocat/Hello-World); it appears in the
/// `/repositories/{id}/releases` URLs GitHub writes into `Link` headers.
const REPO_ID: u64 = 1_296_269;
/// The releaser every release and asset names as author and uploader.
const USER_LOGIN: &str = "octo-releaser";
const USER_ID: u64 = 583_231;
/// 2026-01-01T00:00:00Z: the first event's timestamp; each later one is a minute on.
const CLOCK_START: u64 = 1_767_225_600;
/// The primary limit of an authenticated token (an anonymous client gets 60).
const DEFAULT_LIMIT: u32 = 5_000;
/// The length of a primary rate-limit window.
const WINDOW_SECS: u64 = 3_600;
/// The first path segment of a storage URL.
const STORAGE_BUCKET: &str = "github-production-release-asset";
/// The characters a path segment keeps unencoded (RFC 3986 §2.3 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const DOCS_LIST: &str = "https://docs.github.com/rest/releases/releases#list-releases";
const DOCS_GET: &str = "https://docs.github.com/rest/releases/releases#get-a-release";
const DOCS_LATEST: &str = "https://docs.github.com/rest/releases/releases#get-the-latest-release";
const DOCS_TAG: &str = "https://docs.github.com/rest/releases/releases#get-a-release-by-tag-name";
const DOCS_ASSET: &str = "https://docs.github.com/rest/releases/assets#get-a-release-asset";
const DOCS_REST: &str = "https://docs.github.com/rest";
const DOCS_RATE_LIMIT: &str =
    "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting";
const DOCS_SECONDARY: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";
const S3_TWO_AUTHS: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidArgument</Code>"#,
    "<Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, ",
    "Signature query string parameter or the Authorization header should be specified",
    "</Message></Error>"
);
const S3_ACCESS_DENIED: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>"#,
    "<Message>Request has expired or its signature does not match</Message></Error>"
);
const S3_NO_SUCH_KEY: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>"#,
    "<Message>The specified key does not exist.</Message></Error>"
);
const S3_INVALID_RANGE: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRange</Code>"#,
    "<Message>The requested range is not satisfiable</Message></Error>"
);

/// Which of the stand-in's three hosts a request reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// `api.github.com`: the REST API.
    Api,
    /// `github.com`: the host of `browser_download_url`.
    Web,
    /// `objects.githubusercontent.com`: where both of the others redirect downloads.
    Storage,
}

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct Hit {
    /// The host it reached.
    pub host: Host,
    /// `GET`, `HEAD` ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The status it was answered with.
    pub status: u16,
    /// Its `If-None-Match` header.
    pub if_none_match: Option<String>,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
    /// Its `Range` header.
    pub range: Option<String>,
}

/// A release to publish on the stand-in, built with [`ReleaseSpec::new`] and its modifiers.
#[derive(Clone, Debug)]
pub struct ReleaseSpec {
    /// The tag, also the release's name.
    pub tag: String,
    /// Marked as a pre-release (never `latest`).
    pub prerelease: bool,
    /// A draft: listed only to an authorized client, no `published_at`, no web download.
    pub draft: bool,
    /// The assets, as (file name, content).
    pub assets: Vec<(String, Vec<u8>)>,
}

impl ReleaseSpec {
    /// A published, non-pre-release release with no assets.
    pub fn new(tag: &str) -> Self {
        Self {
            tag: tag.to_owned(),
            prerelease: false,
            draft: false,
            assets: Vec::new(),
        }
    }

    /// Marks it as a pre-release.
    pub fn prerelease(mut self) -> Self {
        self.prerelease = true;
        self
    }

    /// Marks it as a draft.
    pub fn draft(mut self) -> Self {
        self.draft = true;
        self
    }

    /// Adds an asset.
    pub fn asset(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.assets.push((name.to_owned(), bytes.into()));
        self
    }
}

/// GitHub for one repository ([`GitHubStandIn::OWNER`]/[`GitHubStandIn::REPO`]): the REST API,
/// the github.com download host and the asset storage host, each on its own 127.0.0.1 port,
/// sharing one state. Every request is recorded as a [`Hit`]. Dropping it stops the listeners.
pub struct GitHubStandIn {
    shared: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the three listeners share.
struct Inner {
    urls: Urls,
    state: Mutex<State>,
    /// `true` while API requests are held (see [`GitHubStandIn::hold_api`]).
    hold: watch::Sender<bool>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The base URLs of the three hosts, without a trailing slash.
struct Urls {
    api: String,
    web: String,
    storage: String,
}

struct State {
    /// In the order added: the last is the newest.
    releases: Vec<Release>,
    private: bool,
    api_down: bool,
    limit: u32,
    remaining: u32,
    /// Epoch seconds at which the primary window restarts with `limit` requests.
    reset_at: u64,
    retry_after: Option<u64>,
    hits: Vec<Hit>,
    next_release_id: u64,
    next_asset_id: u64,
    /// Seconds after [`CLOCK_START`] of the next event.
    clock: u64,
}

struct Release {
    id: u64,
    tag: String,
    prerelease: bool,
    draft: bool,
    created_at: u64,
    assets: Vec<Asset>,
}

struct Asset {
    id: u64,
    name: String,
    bytes: Bytes,
    created_at: u64,
    updated_at: u64,
    download_count: u64,
}

impl State {
    /// The timestamp of a new event (a release or an upload): a minute after the previous one.
    fn tick(&mut self) -> u64 {
        let at = CLOCK_START + self.clock;
        self.clock += 60;
        at
    }

    fn new_asset(&mut self, name: &str, bytes: Vec<u8>, at: u64) -> Asset {
        let id = self.next_asset_id;
        self.next_asset_id += 1;
        Asset {
            id,
            name: name.to_owned(),
            bytes: Bytes::from(bytes),
            created_at: at,
            updated_at: at,
            download_count: 0,
        }
    }

    /// (release index, asset index) of an asset id.
    fn find_asset(&self, id: u64) -> Option<(usize, usize)> {
        self.releases.iter().enumerate().find_map(|(r, release)| {
            let a = release.assets.iter().position(|a| a.id == id)?;
            Some((r, a))
        })
    }

    /// GitHub's "latest": the newest release that is neither a draft nor a pre-release.
    fn latest(&self) -> Option<&Release> {
        self.releases
            .iter()
            .rev()
            .find(|r| !r.draft && !r.prerelease)
    }

    fn record(&mut self, host: Host, parts: &Parts, status: StatusCode) {
        let header = |name: header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        self.hits.push(Hit {
            host,
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            status: status.as_u16(),
            if_none_match: header(header::IF_NONE_MATCH),
            authorization: header(header::AUTHORIZATION),
            range: header(header::RANGE),
        });
    }
}

impl GitHubStandIn {
    /// The repository's owner.
    pub const OWNER: &str = "acme";
    /// The repository's name.
    pub const REPO: &str = "app";
    /// The one token the API accepts, as `Authorization: Bearer …` or `Authorization: token …`.
    pub const TOKEN: &str = "ghp_standin_token_0123456789";

    /// Binds the three hosts on 127.0.0.1 and serves them. Must be called inside a Tokio runtime.
    pub async fn start() -> Self {
        let api = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let web = TcpListener::bind("127.0.0.1:0").await.expect("bind web");
        let storage = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind storage");
        let url = |l: &TcpListener| format!("http://{}", l.local_addr().expect("local addr"));
        let urls = Urls {
            api: url(&api),
            web: url(&web),
            storage: url(&storage),
        };
        let state = State {
            releases: Vec::new(),
            private: false,
            api_down: false,
            limit: DEFAULT_LIMIT,
            remaining: DEFAULT_LIMIT,
            reset_at: unix_now() + WINDOW_SECS,
            retry_after: None,
            hits: Vec::new(),
            next_release_id: 100_001,
            next_asset_id: 200_001,
            clock: 0,
        };
        let shared = Arc::new(Inner {
            urls,
            state: Mutex::new(state),
            hold: watch::Sender::new(false),
        });
        let serve = |listener: TcpListener, router: Router<Arc<Inner>>| {
            let router = router.with_state(Arc::clone(&shared));
            tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            })
        };
        let tasks = vec![
            serve(api, Router::new().fallback(serve_api)),
            serve(web, Router::new().fallback(serve_web)),
            serve(storage, Router::new().fallback(serve_storage)),
        ];
        Self { shared, tasks }
    }

    /// The API's base URL (`http://127.0.0.1:PORT`, no trailing slash).
    pub fn api_url(&self) -> String {
        self.shared.urls.api.clone()
    }

    /// The github.com stand-in: the host of every `browser_download_url`.
    pub fn web_url(&self) -> String {
        self.shared.urls.web.clone()
    }

    /// The asset storage stand-in (objects.githubusercontent.com), where downloads redirect.
    pub fn storage_url(&self) -> String {
        self.shared.urls.storage.clone()
    }

    /// Publishes a release and returns its id. Releases are listed newest-added first, as
    /// GitHub lists by `created_at` descending. Panics if the tag is taken (GitHub answers 422).
    pub fn add_release(&self, spec: ReleaseSpec) -> u64 {
        let mut st = self.shared.lock();
        assert!(
            st.releases.iter().all(|r| r.tag != spec.tag),
            "the stand-in already has a release tagged {}",
            spec.tag
        );
        let id = st.next_release_id;
        st.next_release_id += 1;
        let at = st.tick();
        let assets = spec
            .assets
            .into_iter()
            .map(|(name, bytes)| st.new_asset(&name, bytes, at))
            .collect();
        st.releases.push(Release {
            id,
            tag: spec.tag,
            prerelease: spec.prerelease,
            draft: spec.draft,
            created_at: at,
            assets,
        });
        id
    }

    /// Replaces (or adds) an asset of the release tagged `tag` the only way GitHub allows:
    /// delete and upload again, so it gets a new id and a new `updated_at`, and the old id's
    /// storage URL stops serving. Panics if there is no such release.
    pub fn replace_asset(&self, tag: &str, name: &str, bytes: impl Into<Vec<u8>>) {
        let mut st = self.shared.lock();
        let index = st
            .releases
            .iter()
            .position(|r| r.tag == tag)
            .unwrap_or_else(|| panic!("the stand-in has no release tagged {tag}"));
        let at = st.tick();
        let asset = st.new_asset(name, bytes.into(), at);
        let assets = &mut st.releases[index].assets;
        assets.retain(|a| a.name != name);
        assets.push(asset);
    }

    /// Makes the repository private: the API then needs the token (else 404, as GitHub hides
    /// private repositories), and github.com downloads answer 404.
    pub fn set_private(&self, private: bool) {
        self.shared.lock().private = private;
    }

    /// While down, the API answers 503 (JSON body); github.com and storage still serve.
    pub fn set_api_down(&self, down: bool) {
        self.shared.lock().api_down = down;
    }

    /// Sets the primary rate limit: `remaining` requests until a window that restarts in
    /// `reset_in_secs` (then `remaining` returns to the limit, as on GitHub).
    pub fn set_rate_limit(&self, remaining: u32, reset_in_secs: u64) {
        let mut st = self.shared.lock();
        st.limit = st.limit.max(remaining);
        st.remaining = remaining;
        st.reset_at = unix_now() + reset_in_secs;
    }

    /// The secondary rate limit: while `Some(secs)`, the API answers 429 with `Retry-After: secs`.
    pub fn set_retry_after(&self, secs: Option<u64>) {
        self.shared.lock().retry_after = secs;
    }

    /// Holds API requests, those waiting and those that arrive later, until
    /// [`GitHubStandIn::release_api`]. They wait on a channel, not in a polling loop.
    pub fn hold_api(&self) {
        self.shared.hold.send_replace(true);
    }

    /// Lets held API requests (and later ones) through.
    pub fn release_api(&self) {
        self.shared.hold.send_replace(false);
    }

    /// Every request answered so far, in the order answered.
    pub fn hits(&self) -> Vec<Hit> {
        self.shared.lock().hits.clone()
    }

    /// The hits on `host` whose path starts with `path_prefix`.
    pub fn hits_on(&self, host: Host, path_prefix: &str) -> Vec<Hit> {
        self.shared
            .lock()
            .hits
            .iter()
            .filter(|h| h.host == host && h.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    /// Requests left in the primary rate-limit window.
    pub fn rate_remaining(&self) -> u32 {
        self.shared.lock().remaining
    }

    /// Forgets the hits so far.
    pub fn clear_hits(&self) {
        self.shared.lock().hits.clear();
    }
}

impl Drop for GitHubStandIn {
    fn drop(&mut self) {
        // Held requests would otherwise wait for ever on connections that outlive the listener.
        self.shared.hold.send_replace(false);
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve_api(Shared(shared): Shared<Arc<Inner>>, req: Request) -> Response {
    let mut held = shared.hold.subscribe();
    // Resolves at once when not held, else on `release_api` (or on drop): no polling.
    let _ = held.wait_for(|held| !*held).await;
    let (parts, _) = req.into_parts();
    let mut st = shared.lock();
    let response = api_answer(&shared.urls, &mut st, &parts);
    st.record(Host::Api, &parts, response.status());
    response
}

async fn serve_web(Shared(shared): Shared<Arc<Inner>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let mut st = shared.lock();
    let response = web_answer(&shared.urls, &mut st, &parts);
    st.record(Host::Web, &parts, response.status());
    response
}

async fn serve_storage(Shared(shared): Shared<Arc<Inner>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let mut st = shared.lock();
    let response = storage_answer(&st, &parts);
    st.record(Host::Storage, &parts, response.status());
    response
}

/// What the API decided, before the headers every API response carries are added.
struct ApiReply {
    status: StatusCode,
    body: Option<Value>,
    location: Option<String>,
    link: Option<String>,
    retry_after: Option<u64>,
    /// Whether it spends one request of the primary limit (unless it ends as a 304).
    counted: bool,
}

impl ApiReply {
    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            location: None,
            link: None,
            retry_after: None,
            counted: true,
        }
    }

    fn ok(body: Value) -> Self {
        Self::json(StatusCode::OK, body)
    }

    fn not_found(docs: &str) -> Self {
        Self::json(
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found", "documentation_url": docs, "status": "404"}),
        )
    }

    /// A refusal that spends nothing: the limits themselves, and an outage.
    fn refused(status: StatusCode, message: &str, docs: &str) -> Self {
        Self {
            counted: false,
            ..Self::json(
                status,
                json!({"message": message, "documentation_url": docs}),
            )
        }
    }
}

/// Answers one API request and charges it to the primary rate limit. Every response carries
/// the `x-ratelimit-*` headers and, when it has a JSON body, a weak ETag of that body. A 200
/// whose ETag the request's `If-None-Match` names becomes a 304 that spends nothing (GitHub:
/// "a 304 response does not count against your primary rate limit"); the refusals for the
/// limits themselves and for an outage spend nothing either; every other answer spends one.
fn api_answer(urls: &Urls, st: &mut State, parts: &Parts) -> Response {
    let now = unix_now();
    if now >= st.reset_at {
        st.remaining = st.limit;
        st.reset_at = now + WINDOW_SECS;
    }
    let reply = api_decide(urls, st, parts);
    let body = reply
        .body
        .as_ref()
        .map(|v| serde_json::to_vec(v).expect("JSON"));
    let etag = body
        .as_ref()
        .map(|b| format!("W/\"{}\"", blake3::hash(b).to_hex()));
    let not_modified = reply.status == StatusCode::OK
        && etag
            .as_deref()
            .is_some_and(|tag| if_none_match_names(&parts.headers, tag));
    if reply.counted && !not_modified {
        st.remaining = st.remaining.saturating_sub(1);
    }
    let status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        reply.status
    };
    let mut builder = http::Response::builder()
        .status(status)
        .header("x-ratelimit-limit", st.limit)
        .header("x-ratelimit-remaining", st.remaining)
        .header("x-ratelimit-reset", st.reset_at)
        .header("x-ratelimit-used", st.limit - st.remaining)
        .header("x-ratelimit-resource", "core")
        .header("x-github-api-version-selected", "2022-11-28")
        .header("x-github-media-type", "github.v3; format=json")
        .header(
            header::VARY,
            "Accept, Authorization, Cookie, X-GitHub-OTP, Accept-Encoding",
        )
        .header(header::CACHE_CONTROL, cache_control(parts));
    if let Some(etag) = &etag {
        builder = builder.header(header::ETAG, etag);
    }
    if let Some(location) = &reply.location {
        builder = builder.header(header::LOCATION, location);
    }
    if let Some(link) = &reply.link {
        builder = builder.header(header::LINK, link);
    }
    if let Some(secs) = reply.retry_after {
        builder = builder.header(header::RETRY_AFTER, secs);
    }
    let body = match body {
        Some(body) if !not_modified => {
            builder = builder.header(header::CONTENT_TYPE, "application/json; charset=utf-8");
            Body::from(body)
        }
        _ => Body::empty(),
    };
    builder.body(body).expect("API response")
}

/// GitHub's Cache-Control: private for an authorized request, public otherwise.
fn cache_control(parts: &Parts) -> &'static str {
    if is_authorized(&parts.headers) {
        "private, max-age=60, s-maxage=60"
    } else {
        "public, max-age=60, s-maxage=60"
    }
}

fn api_decide(urls: &Urls, st: &mut State, parts: &Parts) -> ApiReply {
    if !parts.headers.contains_key(header::USER_AGENT) {
        return ApiReply::json(
            StatusCode::FORBIDDEN,
            json!({
                "message": "Request forbidden by administrative rules. Please make sure your \
                    request has a User-Agent header \
                    (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). \
                    Check https://developer.github.com for other possible causes."
            }),
        );
    }
    if st.api_down {
        return ApiReply::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "https://www.githubstatus.com",
        );
    }
    if let Some(secs) = st.retry_after {
        return ApiReply {
            retry_after: Some(secs),
            ..ApiReply::refused(
                StatusCode::TOO_MANY_REQUESTS,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you \
                 try again. If you reach out to GitHub Support for help, please include the \
                 request ID.",
                DOCS_SECONDARY,
            )
        };
    }
    if st.remaining == 0 {
        return ApiReply::refused(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated \
             requests get a higher rate limit. Check out the documentation for more details.)",
            DOCS_RATE_LIMIT,
        );
    }
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return ApiReply::not_found(DOCS_REST);
    }
    let segments = path_segments(parts.uri.path());
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let rest = match segments.as_slice() {
        ["repos", owner, repo, rest @ ..]
            if owner.eq_ignore_ascii_case(GitHubStandIn::OWNER)
                && repo.eq_ignore_ascii_case(GitHubStandIn::REPO) =>
        {
            rest
        }
        // The form GitHub writes into `Link` headers.
        ["repositories", id, rest @ ..] if *id == REPO_ID.to_string() => rest,
        _ => return ApiReply::not_found(DOCS_REST),
    };
    let authorized = is_authorized(&parts.headers);
    let docs = match rest {
        ["releases"] => DOCS_LIST,
        ["releases", "latest"] => DOCS_LATEST,
        ["releases", "tags", _] => DOCS_TAG,
        ["releases", "assets", _] => DOCS_ASSET,
        ["releases", _] => DOCS_GET,
        _ => DOCS_REST,
    };
    if st.private && !authorized {
        return ApiReply::not_found(docs);
    }
    let visible = |r: &Release| authorized || !r.draft;
    match rest {
        ["releases"] => list_releases(urls, st, parts, authorized),
        ["releases", "latest"] => match st.latest() {
            Some(r) => ApiReply::ok(release_json(urls, r)),
            None => ApiReply::not_found(docs),
        },
        // Drafts have no tag yet: GitHub finds only published releases by tag.
        ["releases", "tags", tag] => match st.releases.iter().find(|r| r.tag == *tag && !r.draft) {
            Some(r) => ApiReply::ok(release_json(urls, r)),
            None => ApiReply::not_found(docs),
        },
        ["releases", "assets", id] => {
            let found = id.parse().ok().and_then(|id| st.find_asset(id));
            let Some((r, a)) = found.filter(|&(r, _)| visible(&st.releases[r])) else {
                return ApiReply::not_found(docs);
            };
            let wants_bytes = parts
                .headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/octet-stream"));
            if wants_bytes {
                let asset = &mut st.releases[r].assets[a];
                asset.download_count += 1;
                ApiReply {
                    location: Some(storage_location(urls, asset.id)),
                    ..ApiReply::json(StatusCode::FOUND, Value::Null)
                }
                .without_body()
            } else {
                let release = &st.releases[r];
                ApiReply::ok(asset_json(urls, release, &release.assets[a]))
            }
        }
        ["releases", id] => {
            let found = st
                .releases
                .iter()
                .find(|r| id.parse() == Ok(r.id) && visible(r));
            match found {
                Some(r) => ApiReply::ok(release_json(urls, r)),
                None => ApiReply::not_found(docs),
            }
        }
        _ => ApiReply::not_found(docs),
    }
}

impl ApiReply {
    fn without_body(self) -> Self {
        Self { body: None, ..self }
    }
}

/// `GET /repos/{owner}/{repo}/releases`: newest first, `per_page` (default 30, at most 100)
/// and `page` (from 1), with GitHub's `Link` header when there is more than one page.
fn list_releases(urls: &Urls, st: &State, parts: &Parts, authorized: bool) -> ApiReply {
    let query = |name: &str| {
        parts.uri.query().and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        })
    };
    let asked_per_page = query("per_page");
    let per_page = match asked_per_page {
        None | Some(0) => 30,
        Some(n) => n.min(100),
    };
    let page = query("page").unwrap_or(1).max(1);
    let visible: Vec<&Release> = st
        .releases
        .iter()
        .rev()
        .filter(|r| authorized || !r.draft)
        .collect();
    let body: Vec<Value> = visible
        .iter()
        .skip(per_page.saturating_mul(page - 1))
        .take(per_page)
        .map(|r| release_json(urls, r))
        .collect();
    let last = visible.len().div_ceil(per_page).max(1);
    let page_url = |n: usize| {
        let per_page = asked_per_page.map_or(String::new(), |_| format!("per_page={per_page}&"));
        format!(
            "<{}/repositories/{REPO_ID}/releases?{per_page}page={n}>",
            urls.api
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", page_url((page - 1).min(last))));
    }
    if page < last {
        links.push(format!("{}; rel=\"next\"", page_url(page + 1)));
        links.push(format!("{}; rel=\"last\"", page_url(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", page_url(1)));
    }
    ApiReply {
        link: (!links.is_empty()).then(|| links.join(", ")),
        ..ApiReply::ok(Value::Array(body))
    }
}

/// github.com: `/{owner}/{repo}/releases/download/{tag}/{name}` redirects to storage, and
/// `/{owner}/{repo}/releases/latest/download/{name}` to the latest release's download URL.
/// A private repository's and a draft's assets are 404 to this anonymous host.
fn web_answer(urls: &Urls, st: &mut State, parts: &Parts) -> Response {
    let not_found = || {
        http::Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("Not Found"))
            .expect("web 404")
    };
    let redirect = |location: String| {
        http::Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location)
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::empty())
            .expect("web 302")
    };
    if (parts.method != Method::GET && parts.method != Method::HEAD) || st.private {
        return not_found();
    }
    let segments = path_segments(parts.uri.path());
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let [owner, repo, "releases", rest @ ..] = segments.as_slice() else {
        return not_found();
    };
    if !owner.eq_ignore_ascii_case(GitHubStandIn::OWNER)
        || !repo.eq_ignore_ascii_case(GitHubStandIn::REPO)
    {
        return not_found();
    }
    match rest {
        ["download", tag, name] => {
            let found = st
                .releases
                .iter_mut()
                .filter(|r| r.tag == *tag && !r.draft)
                .find_map(|r| r.assets.iter_mut().find(|a| a.name == *name));
            match found {
                Some(asset) => {
                    asset.download_count += 1;
                    redirect(storage_location(urls, asset.id))
                }
                None => not_found(),
            }
        }
        ["latest", "download", name] => match st.latest() {
            Some(r) => redirect(browser_download_url(urls, &r.tag, name)),
            None => not_found(),
        },
        _ => not_found(),
    }
}

/// The storage host: a pre-signed S3 GET of `/github-production-release-asset/{id}`.
/// Like S3 it refuses a second auth mechanism (any `Authorization` header) before checking
/// the signature, serves one `bytes=` range as a 206 (RFC 9110 §14.2), answers a
/// multi-range or malformed `Range` with the whole object, and honours `If-Range` (§13.1.5).
fn storage_answer(st: &State, parts: &Parts) -> Response {
    let xml = |status: StatusCode, body: &'static str| {
        http::Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/xml")
            .body(Body::from(body))
            .expect("storage error")
    };
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return xml(StatusCode::METHOD_NOT_ALLOWED, S3_ACCESS_DENIED);
    }
    if parts.headers.contains_key(header::AUTHORIZATION) {
        return xml(StatusCode::BAD_REQUEST, S3_TWO_AUTHS);
    }
    let segments = path_segments(parts.uri.path());
    let id = match segments.as_slice() {
        [bucket, id] if bucket == STORAGE_BUCKET => id.parse::<u64>().ok(),
        _ => None,
    };
    let Some(id) = id else {
        return xml(StatusCode::NOT_FOUND, S3_NO_SUCH_KEY);
    };
    let signature = parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "X-Amz-Signature")
            .map(|(_, v)| v)
    });
    if signature != Some(signature_of(id).as_str()) {
        return xml(StatusCode::FORBIDDEN, S3_ACCESS_DENIED);
    }
    let Some((r, a)) = st.find_asset(id) else {
        return xml(StatusCode::NOT_FOUND, S3_NO_SUCH_KEY);
    };
    let asset = &st.releases[r].assets[a];
    let size = asset.bytes.len() as u64;
    let etag = format!("\"{}\"", &blake3::hash(&asset.bytes).to_hex()[..32]);
    let last_modified = http_date(asset.updated_at);
    let header_str = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let range = match header_str(header::IF_RANGE) {
        Some(validator) if validator != etag && validator != last_modified => None,
        _ => header_str(header::RANGE),
    };
    let builder = http::Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::ACCEPT_RANGES, "bytes");
    let response = match storage_range(range, size) {
        StorageRange::Full => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, size)
            .body(Body::from(asset.bytes.clone())),
        StorageRange::Part(first, last) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_LENGTH, last - first + 1)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{size}"),
            )
            .body(Body::from(
                asset.bytes.slice(first as usize..=last as usize),
            )),
        StorageRange::Unsatisfiable => http::Response::builder()
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_TYPE, "application/xml")
            .header(header::CONTENT_RANGE, format!("bytes */{size}"))
            .body(Body::from(S3_INVALID_RANGE)),
    };
    response.expect("storage response")
}

/// What storage serves for a `Range` header.
#[derive(Debug, PartialEq, Eq)]
enum StorageRange {
    Full,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; anything else (several ranges, bad syntax)
/// is ignored, as RFC 9110 §14.2 allows and S3 does.
fn storage_range(header: Option<&str>, size: u64) -> StorageRange {
    let Some(spec) = header.and_then(|h| h.strip_prefix("bytes=")) else {
        return StorageRange::Full;
    };
    let Some((first, last)) = spec.split_once('-').filter(|_| !spec.contains(',')) else {
        return StorageRange::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return match last.parse::<u64>() {
            Ok(0) => StorageRange::Unsatisfiable,
            Ok(_) if size == 0 => StorageRange::Unsatisfiable,
            Ok(n) => StorageRange::Part(size - n.min(size), size - 1),
            Err(_) => StorageRange::Full,
        };
    }
    let Ok(first) = first.parse::<u64>() else {
        return StorageRange::Full;
    };
    let last = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(last) if last >= first => last,
            _ => return StorageRange::Full,
        }
    };
    if first >= size {
        StorageRange::Unsatisfiable
    } else {
        StorageRange::Part(first, last.min(size - 1))
    }
}

fn release_json(urls: &Urls, r: &Release) -> Value {
    let (api, web) = (&urls.api, &urls.web);
    let (owner, repo, id) = (GitHubStandIn::OWNER, GitHubStandIn::REPO, r.id);
    let tag = utf8_percent_encode(&r.tag, SEGMENT);
    json!({
        "url": format!("{api}/repos/{owner}/{repo}/releases/{id}"),
        "assets_url": format!("{api}/repos/{owner}/{repo}/releases/{id}/assets"),
        // GitHub's points at uploads.github.com, which the stand-in does not play.
        "upload_url": format!("{api}/repos/{owner}/{repo}/releases/{id}/assets{{?name,label}}"),
        "html_url": format!("{web}/{owner}/{repo}/releases/tag/{tag}"),
        "id": id,
        "author": user_json(urls),
        "node_id": node_id("07:Release", id),
        "tag_name": r.tag,
        "target_commitish": "main",
        "name": r.tag,
        "draft": r.draft,
        "prerelease": r.prerelease,
        "created_at": iso8601(r.created_at),
        "published_at": if r.draft { Value::Null } else { iso8601(r.created_at).into() },
        "assets": r.assets.iter().map(|a| asset_json(urls, r, a)).collect::<Vec<_>>(),
        "tarball_url": format!("{api}/repos/{owner}/{repo}/tarball/{tag}"),
        "zipball_url": format!("{api}/repos/{owner}/{repo}/zipball/{tag}"),
        "body": format!("Release notes for {}.", r.tag),
    })
}

fn asset_json(urls: &Urls, release: &Release, a: &Asset) -> Value {
    let (owner, repo) = (GitHubStandIn::OWNER, GitHubStandIn::REPO);
    json!({
        "url": format!("{}/repos/{owner}/{repo}/releases/assets/{}", urls.api, a.id),
        "browser_download_url": browser_download_url(urls, &release.tag, &a.name),
        "id": a.id,
        "node_id": node_id("012:ReleaseAsset", a.id),
        "name": a.name,
        "label": "",
        "state": "uploaded",
        "content_type": mime_guess::from_path(&a.name).first_or_octet_stream().to_string(),
        "size": a.bytes.len(),
        "digest": format!("sha256:{:x}", sha2::Sha256::digest(&a.bytes)),
        "download_count": a.download_count,
        "created_at": iso8601(a.created_at),
        "updated_at": iso8601(a.updated_at),
        "uploader": user_json(urls),
    })
}

fn user_json(urls: &Urls) -> Value {
    let (api, web, login) = (&urls.api, &urls.web, USER_LOGIN);
    json!({
        "login": login,
        "id": USER_ID,
        "node_id": node_id("04:User", USER_ID),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{USER_ID}?v=4"),
        "gravatar_id": "",
        "url": format!("{api}/users/{login}"),
        "html_url": format!("{web}/{login}"),
        "followers_url": format!("{api}/users/{login}/followers"),
        "following_url": format!("{api}/users/{login}/following{{/other_user}}"),
        "gists_url": format!("{api}/users/{login}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/users/{login}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/users/{login}/subscriptions"),
        "organizations_url": format!("{api}/users/{login}/orgs"),
        "repos_url": format!("{api}/users/{login}/repos"),
        "events_url": format!("{api}/users/{login}/events{{/privacy}}"),
        "received_events_url": format!("{api}/users/{login}/received_events"),
        "type": "User",
        "user_view_type": "public",
        "site_admin": false,
    })
}

/// GitHub's legacy global node id: base64 of `"{type}{id}"`, e.g. `MDc6UmVsZWFzZTE=` is
/// `07:Release1`.
fn node_id(kind: &str, id: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}{id}"))
}

fn browser_download_url(urls: &Urls, tag: &str, name: &str) -> String {
    format!(
        "{}/{}/{}/releases/download/{}/{}",
        urls.web,
        GitHubStandIn::OWNER,
        GitHubStandIn::REPO,
        utf8_percent_encode(tag, SEGMENT),
        utf8_percent_encode(name, SEGMENT)
    )
}

/// The pre-signed storage URL both the API and github.com redirect an asset download to.
fn storage_location(urls: &Urls, asset_id: u64) -> String {
    format!(
        "{}/{STORAGE_BUCKET}/{asset_id}?X-Amz-Signature={}&X-Amz-Expires=300",
        urls.storage,
        signature_of(asset_id)
    )
}

/// A deterministic stand-in for a SigV4 signature: 64 hex digits.
fn signature_of(asset_id: u64) -> String {
    blake3::hash(format!("github-standin-signature:{asset_id}").as_bytes())
        .to_hex()
        .to_string()
}

/// Whether the request carries the stand-in's token (`Bearer` or the older `token` scheme).
fn is_authorized(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        && token.trim() == GitHubStandIn::TOKEN
}

/// Weak comparison (RFC 9110 §13.1.2) of each entity tag in `If-None-Match` with `etag`.
fn if_none_match_names(headers: &HeaderMap, etag: &str) -> bool {
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || weak(t) == weak(etag))
}

/// The path's segments, percent-decoded.
fn path_segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn http_date(epoch_secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(epoch_secs))
}

/// `2026-01-01T00:00:00Z`, GitHub's timestamp format.
fn iso8601(epoch_secs: u64) -> String {
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let days = epoch_secs / 86_400;
    let secs = epoch_secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// The stand-in checked over real HTTP with a real client, so the suite can trust it.
mod selftest {
    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .user_agent("release-edge-selftest")
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers()))
            .to_str()
            .expect("ascii header")
    }

    async fn json(response: reqwest::Response) -> Value {
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON body")
    }

    #[tokio::test]
    async fn a_matching_etag_gets_304_without_spending_the_rate_limit() {
        let gh = GitHubStandIn::start().await;
        gh.add_release(ReleaseSpec::new("v1.0.0").asset("app 1.0.zip", b"one".to_vec()));
        gh.add_release(ReleaseSpec::new("v1.1.0").asset("app.zip", b"two".to_vec()));
        let list = format!("{}/repos/acme/app/releases", gh.api_url());
        let http = client();

        let first = http.get(&list).send().await.expect("list");
        assert_eq!(first.status(), 200);
        assert_eq!(header(&first, "x-ratelimit-remaining"), "4999");
        assert_eq!(header(&first, "x-ratelimit-resource"), "core");
        let etag = header(&first, "etag").to_owned();
        assert!(etag.starts_with("W/\""), "{etag}");
        let releases = json(first).await;
        assert_eq!(releases[0]["tag_name"], "v1.1.0", "newest first");
        assert_eq!(releases[1]["created_at"], "2026-01-01T00:00:00Z");
        assert_eq!(releases[1]["published_at"], "2026-01-01T00:00:00Z");
        assert_eq!(releases[0]["created_at"], "2026-01-01T00:01:00Z");
        assert_eq!(
            releases[1]["assets"][0]["browser_download_url"],
            format!(
                "{}/acme/app/releases/download/v1.0.0/app%201.0.zip",
                gh.web_url()
            )
        );

        let again = http
            .get(&list)
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("conditional list");
        assert_eq!(again.status(), 304);
        assert_eq!(header(&again, "x-ratelimit-remaining"), "4999");
        assert!(again.bytes().await.expect("body").is_empty());
        assert_eq!(gh.rate_remaining(), 4999);

        // A re-uploaded asset changes the list: a new id, so a new ETag and a 200.
        gh.replace_asset("v1.1.0", "app.zip", b"two, fixed".to_vec());
        let changed = http
            .get(&list)
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("list after replace");
        assert_eq!(changed.status(), 200);
        assert_eq!(json(changed).await[0]["assets"][0]["id"], 200_003);
        assert_eq!(gh.rate_remaining(), 4998);

        // Paging follows GitHub's Link header, which names /repositories/{id}/releases.
        let page = http
            .get(format!("{list}?per_page=1"))
            .send()
            .await
            .expect("page 1");
        let next = header(&page, "link")
            .split(", ")
            .find(|l| l.ends_with("rel=\"next\""))
            .and_then(|l| l.split(['<', '>']).nth(1))
            .expect("rel=next")
            .to_owned();
        let second = json(http.get(&next).send().await.expect("page 2")).await;
        assert_eq!(second[0]["tag_name"], "v1.0.0");

        let anonymous = reqwest::Client::new()
            .get(&list)
            .send()
            .await
            .expect("no UA");
        assert_eq!(
            anonymous.status(),
            403,
            "GitHub refuses a request without User-Agent"
        );

        // A held request is answered only once released.
        gh.clear_hits();
        gh.hold_api();
        let held = tokio::spawn(http.get(&list).send());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            gh.hits().is_empty(),
            "held request answered: {:?}",
            gh.hits()
        );
        gh.release_api();
        let held = held.await.expect("task").expect("held list");
        assert_eq!(held.status(), 200);
        assert_eq!(gh.hits_on(Host::Api, "/repos/acme/app/releases").len(), 1);
    }

    #[tokio::test]
    async fn a_private_asset_redirects_to_storage_that_refuses_a_second_auth() {
        let gh = GitHubStandIn::start().await;
        let bytes = crate::support::pattern(1000);
        gh.add_release(ReleaseSpec::new("v2.0.0").asset("app.exe", bytes.clone()));
        gh.set_private(true);
        let http = client();
        let auth = format!("Bearer {}", GitHubStandIn::TOKEN);

        let list = format!("{}/repos/acme/app/releases", gh.api_url());
        let hidden = http.get(&list).send().await.expect("anonymous list");
        assert_eq!(hidden.status(), 404);
        assert_eq!(json(hidden).await["documentation_url"], DOCS_LIST);
        let releases = json(
            http.get(&list)
                .header("authorization", &auth)
                .send()
                .await
                .expect("list"),
        )
        .await;
        let asset_url = releases[0]["assets"][0]["url"]
            .as_str()
            .expect("asset url")
            .to_owned();
        let web_url = releases[0]["assets"][0]["browser_download_url"]
            .as_str()
            .expect("browser_download_url")
            .to_owned();
        assert_eq!(
            http.get(&web_url).send().await.expect("web").status(),
            404,
            "github.com hides private assets"
        );

        let redirect = http
            .get(&asset_url)
            .header("authorization", &auth)
            .header("accept", "application/octet-stream")
            .send()
            .await
            .expect("asset");
        assert_eq!(redirect.status(), 302);
        let location = header(&redirect, "location").to_owned();
        assert!(location.starts_with(&gh.storage_url()), "{location}");

        let refused = http
            .get(&location)
            .header("authorization", &auth)
            .send()
            .await
            .expect("storage with auth");
        assert_eq!(refused.status(), 400);
        let xml = refused.text().await.expect("xml");
        assert!(xml.contains("<Code>InvalidArgument</Code>"), "{xml}");

        let full = http.get(&location).send().await.expect("storage");
        assert_eq!(full.status(), 200);
        assert_eq!(header(&full, "content-length"), "1000");
        assert_eq!(header(&full, "accept-ranges"), "bytes");
        assert_eq!(full.bytes().await.expect("bytes"), bytes);

        let part = http
            .get(&location)
            .header("range", "bytes=100-199")
            .send()
            .await
            .expect("range");
        assert_eq!(part.status(), 206);
        assert_eq!(header(&part, "content-range"), "bytes 100-199/1000");
        assert_eq!(part.bytes().await.expect("part"), &bytes[100..200]);

        let tail = http
            .get(&location)
            .header("range", "bytes=2000-")
            .send()
            .await
            .expect("416");
        assert_eq!(tail.status(), 416);
        assert_eq!(header(&tail, "content-range"), "bytes */1000");

        let forged = location.replace("X-Amz-Signature=", "X-Amz-Signature=0");
        assert_eq!(
            http.get(&forged).send().await.expect("forged").status(),
            403
        );

        let storage: Vec<u16> = gh
            .hits_on(Host::Storage, "/github-production-release-asset/")
            .iter()
            .map(|h| h.status)
            .collect();
        assert_eq!(storage, [400, 200, 206, 416, 403]);
    }

    #[tokio::test]
    async fn a_draft_is_listed_only_to_the_token() {
        let gh = GitHubStandIn::start().await;
        gh.add_release(ReleaseSpec::new("v1.0.0").asset("a.bin", b"a".to_vec()));
        gh.add_release(
            ReleaseSpec::new("v2.0.0")
                .draft()
                .asset("a.bin", b"b".to_vec()),
        );
        let http = client();
        let list = format!("{}/repos/acme/app/releases", gh.api_url());

        let anonymous = json(http.get(&list).send().await.expect("anonymous")).await;
        let tags: Vec<&Value> = anonymous
            .as_array()
            .expect("array")
            .iter()
            .map(|r| &r["tag_name"])
            .collect();
        assert_eq!(tags, ["v1.0.0"]);

        let authorized = json(
            http.get(&list)
                .header("authorization", format!("token {}", GitHubStandIn::TOKEN))
                .send()
                .await
                .expect("authorized"),
        )
        .await;
        assert_eq!(authorized[0]["tag_name"], "v2.0.0");
        assert_eq!(authorized[0]["draft"], true);
        assert_eq!(authorized[0]["published_at"], Value::Null);
        assert_eq!(authorized[1]["tag_name"], "v1.0.0");

        let draft_asset = format!("{}/acme/app/releases/download/v2.0.0/a.bin", gh.web_url());
        assert_eq!(
            http.get(&draft_asset).send().await.expect("web").status(),
            404
        );
        let published = format!("{}/acme/app/releases/download/v1.0.0/a.bin", gh.web_url());
        let redirect = http.get(&published).send().await.expect("web");
        assert_eq!(redirect.status(), 302);
        let location = header(&redirect, "location").to_owned();
        let body = http
            .get(&location)
            .send()
            .await
            .expect("storage")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(body, &b"a"[..]);
    }
}
