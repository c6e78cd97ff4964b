//! The HTTP side of the GitHub origin: REST API requests with the token, conditional
//! revalidation, rate-limit back-off, and downloads from GitHub's asset hosts (never with
//! the token).
//!
//! Back-off follows GitHub's "Rate limits for the REST API" guidance: when
//! `x-ratelimit-remaining` reaches 0, no request is made before `x-ratelimit-reset`; a
//! `429`/`403` with `retry-after` waits that long; a `403`/`429` without either waits a
//! minute. A `304 Not Modified` does not count against the primary limit, which is why every
//! listing is revalidated with `If-None-Match`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};

use super::GitHubError;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::ByteRange;

/// GitHub's REST API version we speak (the `X-GitHub-Api-Version` header).
const API_VERSION: &str = "2022-11-28";

/// Wait after a rate-limit answer that says neither when nor how long (GitHub: "wait at
/// least one minute").
const DEFAULT_BACKOFF: Duration = Duration::from_secs(60);

/// Longest back-off believed from a reset time (guards against a skewed clock).
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Redirects followed to reach an asset's bytes (GitHub uses one).
const MAX_REDIRECTS: usize = 5;

/// Largest API answer read (a page of 100 releases with their assets is well under this).
const MAX_API_BODY: usize = 16 * 1024 * 1024;

/// An API answer.
#[derive(Debug)]
pub enum Fetched {
    /// `200` with a body and its validator.
    Fresh {
        /// The JSON body.
        body: Bytes,
        /// Its `ETag`, for the next revalidation.
        etag: Option<String>,
        /// The next page (`Link: <...>; rel="next"`), when on the API's own host.
        next: Option<String>,
    },
    /// `304`: what we hold is current.
    NotModified,
}

/// The API client of one repository.
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: Option<SecretString>,
    timeout: Duration,
    /// No API request before this instant (rate limited).
    blocked_until: Mutex<Option<Instant>>,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Api {
    /// A client for the API at `base` (`https://api.github.com`).
    pub fn new(
        base: &str,
        token: Option<SecretString>,
        timeout: Duration,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, GitHubError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("release-edge/", env!("CARGO_PKG_VERSION")))
            // Redirects are followed by hand: the token must never reach the storage host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .map_err(|err| unavailable(format!("building the GitHub client: {err}")))?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
            timeout,
            blocked_until: Mutex::new(None),
            clock,
            metrics,
        })
    }

    /// True when a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `GET {base}{path}` for JSON (or `path` itself when it is an absolute URL on the API's
    /// host: a `Link` to the next page), revalidating `etag`.
    pub async fn get_json(&self, path: &str, etag: Option<&str>) -> Result<Fetched, GitHubError> {
        self.check_backoff()?;
        let url = if path.starts_with(&self.base) {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self
            .api_request(&url)
            .header(header::ACCEPT, "application/vnd.github+json");
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = self.send(request).await?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            self.count("not_modified");
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            return Err(self.failed(path, status, response.headers()));
        }
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The token goes only to the API's own host: a `next` elsewhere is not followed.
        let next = next_link(response.headers()).filter(|next| next.starts_with(&self.base));
        let body = self.body(response, MAX_API_BODY).await?;
        self.count("ok");
        Ok(Fetched::Fresh { body, etag, next })
    }

    /// Where a private asset's bytes are: `GET {asset_url}` with
    /// `Accept: application/octet-stream` answers a redirect to a signed storage URL.
    pub async fn asset_location(&self, asset_url: &str) -> Result<String, GitHubError> {
        self.check_backoff()?;
        let request = self
            .api_request(asset_url)
            .header(header::ACCEPT, "application/octet-stream");
        let response = self.send(request).await?;
        let status = response.status();
        if status.is_redirection()
            && let Some(location) = location(asset_url, response.headers())
        {
            self.count("ok");
            return Ok(location);
        }
        if status.is_success() {
            // GitHub Enterprise may serve the bytes itself; the asset URL then is the location,
            // but fetching it needs the token, which downloads never carry.
            return Err(unavailable(format!(
                "GitHub answered {status} with the asset itself instead of a redirect: {asset_url}"
            )));
        }
        Err(self.failed(asset_url, status, response.headers()))
    }

    /// `GET url` on GitHub's download or storage hosts, following redirects, never with the
    /// token; `range` asks for part of it. The caller checks the status.
    pub async fn download(
        &self,
        url: &str,
        range: Option<ByteRange>,
    ) -> Result<reqwest::Response, GitHubError> {
        let mut url = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.client.get(&url);
            if let Some(range) = range {
                request = request.header(
                    header::RANGE,
                    format!("bytes={}-{}", range.start, range.end),
                );
            }
            let response = self.send(request).await?;
            let status = response.status();
            if !status.is_redirection() {
                self.count(match status {
                    s if s.is_success() => "ok",
                    StatusCode::NOT_FOUND => "not_found",
                    _ => "error",
                });
                return Ok(response);
            }
            url = location(&url, response.headers()).ok_or_else(|| {
                unavailable(format!(
                    "redirect without a Location from GitHub: {}",
                    without_query(&url)
                ))
            })?;
        }
        Err(unavailable(format!(
            "too many redirects downloading {}",
            without_query(&url)
        )))
    }

    /// Reads a whole body of at most `max` bytes.
    pub async fn body(
        &self,
        response: reqwest::Response,
        max: usize,
    ) -> Result<Bytes, GitHubError> {
        if response
            .content_length()
            .is_some_and(|len| len > max as u64)
        {
            return Err(unavailable(format!(
                "GitHub answer over {max} bytes: {}",
                without_query(response.url().as_str())
            )));
        }
        let body = tokio::time::timeout(self.timeout, response.bytes())
            .await
            .map_err(|_| GitHubError::Timeout(self.timeout))?
            .map_err(|err| unavailable(format!("reading a GitHub answer: {err}")))?;
        if body.len() > max {
            return Err(unavailable("GitHub answer too large".into()));
        }
        Ok(body)
    }

    fn api_request(&self, url: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .get(url)
            .header("x-github-api-version", API_VERSION);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose_secret());
        }
        request
    }

    /// Sends with the time limit on the response headers, recording duration and failures.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GitHubError> {
        let start = Instant::now();
        let sent = tokio::time::timeout(self.timeout, request.send()).await;
        self.metrics
            .origin_duration
            .with_label_values(&["github"])
            .observe(start.elapsed().as_secs_f64());
        let response = match sent {
            Err(_) => {
                self.count("timeout");
                return Err(GitHubError::Timeout(self.timeout));
            }
            Ok(Err(err)) if err.is_timeout() => {
                self.count("timeout");
                return Err(GitHubError::Timeout(self.timeout));
            }
            Ok(Err(err)) => {
                self.count("error");
                // Without the URL: a signed storage URL is a credential for a few minutes.
                return Err(GitHubError::Unavailable {
                    message: "request failed".into(),
                    source: Some(Arc::new(err.without_url())),
                });
            }
            Ok(Ok(response)) => response,
        };
        self.note_rate_limit(response.status(), response.headers());
        Ok(response)
    }

    /// The error for a non-success answer, counted.
    fn failed(&self, what: &str, status: StatusCode, headers: &HeaderMap) -> GitHubError {
        if status == StatusCode::NOT_FOUND {
            self.count("not_found");
            return GitHubError::NotFound {
                what: what.to_owned(),
            };
        }
        if is_rate_limited(status, headers) {
            self.count("rate_limited");
            return GitHubError::RateLimited {
                message: format!("GitHub answered {status} to {what}"),
                retry_after: backoff(status, headers, self.clock.system_time()),
            };
        }
        self.count("error");
        unavailable(format!("GitHub answered {status} to {what}"))
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .origin_requests
            .with_label_values(&["github", outcome])
            .inc();
    }

    fn check_backoff(&self) -> Result<(), GitHubError> {
        let until = self.blocked_until.lock().ok().and_then(|b| *b);
        let now = self.clock.now();
        match until {
            Some(until) if now < until => {
                let wait = until.saturating_duration_since(now);
                Err(GitHubError::RateLimited {
                    message: format!("backing off for {}s", wait.as_secs()),
                    retry_after: Some(wait),
                })
            }
            _ => Ok(()),
        }
    }

    fn note_rate_limit(&self, status: StatusCode, headers: &HeaderMap) {
        let Some(wait) = backoff(status, headers, self.clock.system_time()) else {
            return;
        };
        tracing::warn!(
            status = status.as_u16(),
            wait_secs = wait.as_secs(),
            "GitHub rate limit reached; no API request until it resets"
        );
        if let Ok(mut blocked) = self.blocked_until.lock() {
            *blocked = Some(self.clock.now() + wait);
        }
    }
}

fn unavailable(message: String) -> GitHubError {
    GitHubError::Unavailable {
        message,
        source: None,
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn is_rate_limited(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (headers.contains_key(header::RETRY_AFTER)
                || header_u64(headers, "x-ratelimit-remaining") == Some(0)))
}

/// How long to make no API request after an answer, if at all.
fn backoff(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let retry_after = header_u64(headers, "retry-after").map(Duration::from_secs);
    let until_reset = || {
        let reset = UNIX_EPOCH + Duration::from_secs(header_u64(headers, "x-ratelimit-reset")?);
        Some(reset.duration_since(now).unwrap_or(Duration::ZERO))
    };
    let exhausted = header_u64(headers, "x-ratelimit-remaining") == Some(0);
    let wait = if let Some(wait) = retry_after {
        wait
    } else if exhausted {
        until_reset().unwrap_or(DEFAULT_BACKOFF)
    } else if is_rate_limited(status, headers) {
        DEFAULT_BACKOFF
    } else {
        return None;
    };
    Some(wait.min(MAX_BACKOFF))
}

/// The `rel="next"` URL of a `Link` header (RFC 8288), as GitHub paginates.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let is_next = params
                .split(';')
                .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            is_next.then(|| target.to_owned())
        })
}

/// A URL for the log: a signed storage URL's query is its signature.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// The absolute URL a redirect points to.
fn location(from: &str, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::LOCATION)?.to_str().ok()?;
    let base = reqwest::Url::parse(from).ok()?;
    Some(base.join(value).ok()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn backoff_follows_githubs_headers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ok = StatusCode::OK;
        let forbidden = StatusCode::FORBIDDEN;
        type Case<'a> = (
            &'a str,
            StatusCode,
            &'a [(&'static str, &'a str)],
            Option<u64>,
        );
        let cases: &[Case] = &[
            (
                "plenty left",
                ok,
                &[("x-ratelimit-remaining", "4999")],
                None,
            ),
            (
                "last one used: wait for the reset",
                ok,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1000120"),
                ],
                Some(120),
            ),
            (
                "primary limit hit",
                forbidden,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1000030"),
                ],
                Some(30),
            ),
            (
                "secondary limit",
                StatusCode::TOO_MANY_REQUESTS,
                &[("retry-after", "7")],
                Some(7),
            ),
            (
                "secondary limit without a time",
                StatusCode::TOO_MANY_REQUESTS,
                &[],
                Some(60),
            ),
            (
                "a 403 that is not a limit",
                forbidden,
                &[("x-ratelimit-remaining", "10")],
                None,
            ),
            (
                "a reset in the past",
                forbidden,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "999000"),
                ],
                Some(0),
            ),
            (
                "a reset days away is capped",
                forbidden,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "9000000"),
                ],
                Some(3600),
            ),
        ];
        for (name, status, pairs, want) in cases {
            let got = backoff(*status, &headers(pairs), now).map(|d| d.as_secs());
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn next_links_as_github_writes_them() {
        let h = headers(&[(
            "link",
            "<https://api.github.com/repositories/1/releases?page=2>; rel=\"next\", \
             <https://api.github.com/repositories/1/releases?page=5>; rel=\"last\"",
        )]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/repositories/1/releases?page=2")
        );
        let last = headers(&[(
            "link",
            "<https://api.github.com/r?page=4>; rel=\"prev\", <https://api.github.com/r?page=1>; rel=\"first\"",
        )]);
        assert_eq!(next_link(&last), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn relative_locations_resolve() {
        let h = headers(&[("location", "/x/y?sig=1")]);
        assert_eq!(
            location("https://github.com/a/b/releases/download/v1/f", &h).as_deref(),
            Some("https://github.com/x/y?sig=1")
        );
        let h = headers(&[("location", "https://objects.example/z")]);
        assert_eq!(
            location("https://github.com/a", &h).as_deref(),
            Some("https://objects.example/z")
        );
    }
}
