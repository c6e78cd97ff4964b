//! CDN purge (`[cdn]`, SPEC §4): after `publish`, `rollback`, `mirror` and every policy
//! change, the CDN's copies of the mutable URLs that changed are dropped, with retries, and
//! a purge that still fails is reported (log line, `release_edge_cdn_purges_total`, the
//! caller's exit status), never hidden.
//!
//! What can be purged: a feed URL carries the client's own version in its path
//! (`/update/darwin/arm64/1.4.2/latest-mac.yml`) and the channel in its query, so the URLs
//! of a channel cannot be listed. The server therefore labels every feed and `/latest`
//! answer with the channel it came from — Cloudflare's `Cache-Tag`, Fastly's
//! `Surrogate-Key`, both `{tag_prefix}{channel}` — and a purge names that label: every
//! cached answer of the channel goes, whatever version or platform asked. CloudFront has no
//! labels: it gets wildcard paths (`/update/*`, `/latest*`), which drop the feeds of every
//! channel. The channel files under `/releases/latest/` that changed are purged by URL.
//! Immutable artifacts (`/releases/v{version}/...`) are never purged.
//!
//! One file per provider: `cloudflare.rs`, `cloudfront.rs`, `fastly.rs`, `webhook.rs`.

mod cloudflare;
mod cloudfront;
mod fastly;
mod webhook;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::SecretString;

use crate::clock::Clock;
use crate::config::{CdnConfig, CdnKind, Config, Secrets};
use crate::metrics::Metrics;
use crate::release::channel::Channel;

/// Longest wait believed from a provider's `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Characters a path segment keeps unencoded in the URLs we purge (RFC 3986 unreserved),
/// as the server writes them.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What kind of change a purge follows (the `event` of the webhook, and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `release-edge publish`.
    Publish,
    /// `release-edge rollback` or `POST /admin/rollback`.
    Rollback,
    /// `release-edge mirror`.
    Mirror,
    /// A channel's policy changed (rollout, halt, yank, minimum version, notes).
    Policy,
}

impl ChangeKind {
    /// The name in logs and in the webhook's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Publish => "publish",
            ChangeKind::Rollback => "rollback",
            ChangeKind::Mirror => "mirror",
            ChangeKind::Policy => "policy",
        }
    }
}

/// A change to what the server answers: the channels whose answers changed, and the
/// objects under `releases/latest/` that were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// Channels whose feeds, `/latest` links and channel files may answer differently now.
    pub channels: BTreeSet<Channel>,
    /// Keys written under `releases/latest/` (`releases/latest/latest-mac.yml`).
    pub files: BTreeSet<String>,
}

impl Change {
    /// A change to `channel`'s answers that wrote no file (a policy change).
    pub fn channel(kind: ChangeKind, channel: Channel) -> Self {
        Self {
            kind,
            channels: BTreeSet::from([channel]),
            files: BTreeSet::new(),
        }
    }

    /// Nothing to purge.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.files.is_empty()
    }
}

/// A change's mutable URLs, in each form a provider purges by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// Cache tags / surrogate keys: `{tag_prefix}{channel}` per changed channel.
    pub tags: Vec<String>,
    /// Absolute URLs of the changed `releases/latest/` objects.
    pub urls: Vec<String>,
    /// CloudFront invalidation paths: the feed and `/latest` routes and the channel files,
    /// as wildcards (CloudFront cannot tell channels apart; a trailing `*` also covers the
    /// query strings electron-updater adds).
    pub paths: Vec<String>,
}

impl Targets {
    /// The targets of `change` for a server whose public URL is `public_url`.
    pub fn of(change: &Change, public_url: &str, tag_prefix: &str) -> Self {
        let public_url = public_url.trim_end_matches('/');
        // The path under which the server is published (`https://x.com/dl` → `/dl`).
        let base = public_url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("");
        let tags = change
            .channels
            .iter()
            .map(|c| format!("{tag_prefix}{c}"))
            .collect();
        let urls = change
            .files
            .iter()
            .map(|key| {
                let encoded: Vec<String> = key
                    .split('/')
                    .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
                    .collect();
                format!("{public_url}/{}", encoded.join("/"))
            })
            .collect();
        let mut paths = Vec::new();
        if !change.channels.is_empty() {
            paths.push(format!("{base}/update/*"));
            paths.push(format!("{base}/latest*"));
        }
        if !change.files.is_empty() || !change.channels.is_empty() {
            paths.push(format!("{base}/releases/latest/*"));
        }
        Self { tags, urls, paths }
    }
}

/// Why a purge did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// `[cdn]` is incomplete for its kind (a credential missing from the environment).
    #[error("CDN purge is not configured: {0}")]
    Config(String),
    /// The provider refused or kept failing after every attempt.
    #[error("{provider} purge failed after {attempts} attempt(s): {message}")]
    Failed {
        /// `cloudflare`, `cloudfront`, ...
        provider: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
}

/// One failed attempt at one provider request.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// Whether another attempt may succeed (a timeout, a 5xx, a 429), or not (a refused
    /// token, a malformed request).
    retryable: bool,
    /// The provider's `Retry-After`, when it sent one.
    retry_after: Option<Duration>,
    /// What happened, for the log and the error.
    message: String,
}

impl Failure {
    /// A failure worth another attempt.
    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            retry_after: None,
            message: message.into(),
        }
    }

    /// The failure of an HTTP answer with `status`.
    pub(crate) fn http(
        status: http::StatusCode,
        headers: &http::HeaderMap,
        what: &str,
        body: &str,
    ) -> Self {
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let body: String = body.chars().take(300).collect();
        Self {
            retryable: status.is_server_error()
                || status == http::StatusCode::TOO_MANY_REQUESTS
                || status == http::StatusCode::REQUEST_TIMEOUT,
            retry_after,
            message: format!("{what} answered {status}: {body}"),
        }
    }
}

/// The wait before attempt `next` (2, 3, ...): `retry_after` when the provider gave one,
/// else `backoff` doubled for each attempt after the second.
pub fn retry_wait(backoff: Duration, next: u32, retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or_else(|| backoff.saturating_mul(1 << next.saturating_sub(2).min(16)))
}

/// One request a provider makes for a purge; each is retried on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// Cache tags / surrogate keys.
    Tags(Vec<String>),
    /// Absolute URLs.
    Urls(Vec<String>),
    /// One URL (Fastly purges URLs one by one).
    Url(String),
    /// CloudFront paths, and the invalidation's caller reference.
    Paths(Vec<String>, String),
    /// The whole change, for the webhook.
    Webhook(serde_json::Value),
}

/// The closed set of providers.
enum Provider {
    Cloudflare(cloudflare::Cloudflare),
    Cloudfront(cloudfront::Cloudfront),
    Fastly(fastly::Fastly),
    Webhook(webhook::Webhook),
}

impl Provider {
    fn parts(&self, change: &Change, targets: &Targets, public_url: &str) -> Vec<Part> {
        match self {
            Provider::Cloudflare(_) => cloudflare::parts(targets),
            Provider::Cloudfront(_) => cloudfront::parts(targets),
            Provider::Fastly(_) => fastly::parts(targets),
            Provider::Webhook(_) => vec![webhook::body(change, targets, public_url)],
        }
    }

    async fn send(&self, part: &Part) -> Result<String, Failure> {
        match self {
            Provider::Cloudflare(p) => p.send(part).await,
            Provider::Cloudfront(p) => p.send(part).await,
            Provider::Fastly(p) => p.send(part).await,
            Provider::Webhook(p) => p.send(part).await,
        }
    }
}

/// Which headers label an answer for the configured CDN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Labels {
    cache_tag: bool,
    surrogate_key: bool,
}

/// The configured CDN. Cheap to clone.
#[derive(Clone)]
pub struct Cdn {
    inner: Arc<Inner>,
}

struct Inner {
    kind: CdnKind,
    provider: Provider,
    public_url: String,
    tag_prefix: String,
    labels: Labels,
    attempts: u32,
    backoff: Duration,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Cdn {
    /// The CDN `config.cdn` names, `None` without `[cdn]`. Fails when a credential the kind
    /// needs is not in the environment, so that a command refuses before it changes anything.
    pub fn from_config(
        config: &Config,
        secrets: &Secrets,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, PurgeError> {
        let Some(cdn) = &config.cdn else {
            return Ok(None);
        };
        let need = |token: &Option<SecretString>, name: &str| {
            token.clone().ok_or_else(|| {
                PurgeError::Config(format!(
                    "cdn.kind = \"{}\" needs {name} in the environment",
                    cdn.kind.as_str()
                ))
            })
        };
        let client = http_client(cdn)?;
        let id = |value: &Option<String>| value.clone().unwrap_or_default();
        let provider = match cdn.kind {
            CdnKind::Cloudflare => Provider::Cloudflare(cloudflare::Cloudflare::new(
                client,
                cdn.api_url.as_deref(),
                id(&cdn.zone_id),
                need(&secrets.cloudflare_api_token, "CLOUDFLARE_API_TOKEN")?,
            )),
            CdnKind::Fastly => Provider::Fastly(fastly::Fastly::new(
                client,
                cdn.api_url.as_deref(),
                id(&cdn.service_id),
                need(&secrets.fastly_api_token, "FASTLY_API_TOKEN")?,
                cdn.soft_purge,
            )),
            CdnKind::Webhook => Provider::Webhook(webhook::Webhook::new(
                client,
                id(&cdn.url),
                secrets.cdn_webhook_token.clone(),
            )),
            CdnKind::Cloudfront => Provider::Cloudfront(cloudfront::Cloudfront::new(
                cdn,
                secrets.cdn_aws_credentials.clone(),
            )),
        };
        let labels = Labels {
            cache_tag: matches!(cdn.kind, CdnKind::Cloudflare | CdnKind::Webhook),
            surrogate_key: matches!(cdn.kind, CdnKind::Fastly | CdnKind::Webhook),
        };
        Ok(Some(Self {
            inner: Arc::new(Inner {
                kind: cdn.kind,
                provider,
                public_url: config.public_url.clone(),
                tag_prefix: cdn.tag_prefix.clone(),
                labels,
                attempts: cdn.attempts,
                backoff: cdn.retry_backoff,
                clock,
                metrics,
            }),
        }))
    }

    /// The provider's name.
    pub fn kind(&self) -> CdnKind {
        self.inner.kind
    }

    /// Purges what `change` changed: every provider request retried with back-off; counted
    /// in `release_edge_cdn_purges_total` and logged either way.
    pub async fn purge(&self, change: &Change) -> Result<Targets, PurgeError> {
        let inner = &self.inner;
        let targets = Targets::of(change, &inner.public_url, &inner.tag_prefix);
        if change.is_empty() {
            return Ok(targets);
        }
        let mut result = Ok(());
        for part in inner.provider.parts(change, &targets, &inner.public_url) {
            if let Err(err) = self.send_with_retries(&part).await {
                result = Err(err);
                break;
            }
        }
        let channels: Vec<&str> = change.channels.iter().map(Channel::as_str).collect();
        match result {
            Ok(()) => {
                inner.metrics.cdn_purges.with_label_values(&["ok"]).inc();
                tracing::info!(
                    cdn = inner.kind.as_str(),
                    change = change.kind.as_str(),
                    channels = ?channels,
                    urls = ?targets.urls,
                    "CDN purged"
                );
                Ok(targets)
            }
            Err(err) => {
                inner.metrics.cdn_purges.with_label_values(&["error"]).inc();
                tracing::error!(
                    cdn = inner.kind.as_str(),
                    change = change.kind.as_str(),
                    channels = ?channels,
                    error = %err,
                    "CDN purge failed; the CDN serves its old copies until they expire (cache.manifest_max_age)"
                );
                Err(err)
            }
        }
    }

    /// Purges every cached answer of `channel` (a policy change: no file was written).
    pub async fn purge_channel(
        &self,
        channel: &Channel,
        kind: ChangeKind,
    ) -> Result<Targets, PurgeError> {
        self.purge(&Change::channel(kind, channel.clone())).await
    }

    async fn send_with_retries(&self, part: &Part) -> Result<(), PurgeError> {
        let inner = &self.inner;
        let mut attempt = 1;
        loop {
            let failure = match inner.provider.send(part).await {
                Ok(id) => {
                    tracing::debug!(cdn = inner.kind.as_str(), id = %id, "purge request accepted");
                    return Ok(());
                }
                Err(failure) => failure,
            };
            if !failure.retryable || attempt >= inner.attempts {
                return Err(PurgeError::Failed {
                    provider: inner.kind.as_str(),
                    attempts: attempt,
                    message: failure.message,
                });
            }
            attempt += 1;
            let wait = retry_wait(inner.backoff, attempt, failure.retry_after);
            tracing::warn!(
                cdn = inner.kind.as_str(),
                error = %failure.message,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "CDN purge request failed; retrying"
            );
            inner.clock.sleep(wait).await;
        }
    }

    /// The labels for an answer of `channel` (`Cache-Tag`, `Surrogate-Key`), for the
    /// providers that purge by label.
    pub fn labels(&self, channel: &Channel) -> Vec<(http::HeaderName, HeaderValue)> {
        let inner = &self.inner;
        let Ok(value) = HeaderValue::from_str(&format!("{}{channel}", inner.tag_prefix)) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(2);
        if inner.labels.cache_tag {
            out.push((http::HeaderName::from_static("cache-tag"), value.clone()));
        }
        if inner.labels.surrogate_key {
            out.push((http::HeaderName::from_static("surrogate-key"), value));
        }
        out
    }
}

/// The HTTP client of the purge APIs: rustls, a time limit per request, no redirects (an
/// API that redirects a purge is misconfigured, and the token must not follow it).
fn http_client(cdn: &CdnConfig) -> Result<reqwest::Client, PurgeError> {
    reqwest::Client::builder()
        .user_agent(concat!("release-edge/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(cdn.timeout)
        .build()
        .map_err(|err| PurgeError::Config(format!("building the HTTP client: {err}")))
}

/// `request` with `value` as its JSON body.
pub(crate) fn with_json(
    request: reqwest::RequestBuilder,
    value: &serde_json::Value,
) -> reqwest::RequestBuilder {
    request
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(value.to_string())
}

/// Sends `request`, turning the answer into the provider's purge id or a [`Failure`];
/// `accept` reads a 2xx body (providers that answer 200 with an error inside).
pub(crate) async fn send_http(
    request: reqwest::RequestBuilder,
    what: &str,
    accept: impl FnOnce(&str) -> Result<String, String>,
) -> Result<String, Failure> {
    let response = request
        .send()
        .await
        .map_err(|err| Failure::transient(format!("{what}: {}", err.without_url())))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|err| Failure::transient(format!("{what}: reading the answer: {err}")))?;
    if !status.is_success() {
        return Err(Failure::http(status, &headers, what, &body));
    }
    accept(&body).map_err(|message| Failure {
        retryable: false,
        retry_after: None,
        message: format!("{what}: {message}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(channels: &[&str], files: &[&str]) -> Change {
        Change {
            kind: ChangeKind::Publish,
            channels: channels
                .iter()
                .map(|c| Channel::parse(c).unwrap())
                .collect(),
            files: files.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn targets_of_a_publish() {
        let t = Targets::of(
            &change(
                &["beta", "latest"],
                &[
                    "releases/latest/beta-mac.yml",
                    "releases/latest/RELEASES-beta",
                ],
            ),
            "https://dl.example.com/app/",
            "re-",
        );
        assert_eq!(t.tags, ["re-beta", "re-latest"]);
        assert_eq!(
            t.urls,
            [
                "https://dl.example.com/app/releases/latest/RELEASES-beta",
                "https://dl.example.com/app/releases/latest/beta-mac.yml"
            ]
        );
        assert_eq!(
            t.paths,
            ["/app/update/*", "/app/latest*", "/app/releases/latest/*"]
        );
        let policy = Targets::of(
            &Change::channel(ChangeKind::Policy, Channel::latest()),
            "http://127.0.0.1:8080",
            "release-edge-",
        );
        assert_eq!(policy.tags, ["release-edge-latest"]);
        assert!(policy.urls.is_empty());
        assert_eq!(
            policy.paths,
            ["/update/*", "/latest*", "/releases/latest/*"]
        );
        let odd = Targets::of(
            &change(&[], &["releases/latest/my app.yml"]),
            "http://x",
            "",
        );
        assert_eq!(odd.urls, ["http://x/releases/latest/my%20app.yml"]);
    }

    #[test]
    fn retry_waits_double_unless_told() {
        let base = Duration::from_secs(1);
        let waits: Vec<u64> = (2..=5)
            .map(|n| retry_wait(base, n, None).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(
            retry_wait(base, 3, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(retry_wait(base, 200, None), base * (1 << 16));
    }

    #[test]
    fn failures_know_what_is_worth_retrying() {
        let headers = http::HeaderMap::new();
        for (status, retry) in [
            (500, true),
            (503, true),
            (429, true),
            (403, false),
            (400, false),
        ] {
            let f = Failure::http(
                http::StatusCode::from_u16(status).unwrap(),
                &headers,
                "x",
                "",
            );
            assert_eq!(f.retryable, retry, "{status}");
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        let f = Failure::http(http::StatusCode::TOO_MANY_REQUESTS, &headers, "x", "");
        assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
    }
}
