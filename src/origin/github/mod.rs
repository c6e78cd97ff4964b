//! GitHub Releases as an origin (SPEC §3): manifests from release assets, artifacts
//! redirected to their public download URL or, for private repositories, streamed through
//! with the token.
//!
//! The whole repository is read from one API request, the list of releases, held in memory
//! and revalidated with `If-None-Match` after `github.refresh_interval`; concurrent
//! callers share one request, and while a revalidation runs the others keep using the list
//! they have. When the API fails or rate-limits, the last list stands in for
//! `cache.stale_if_error`. Asset bytes read as manifests are kept by asset id (a re-upload
//! gets a new id), so an unchanged release costs no download.

mod api;
pub mod model;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::StatusCode;
use secrecy::SecretString;

use self::api::{Api, Fetched};
use self::model::{Asset, ChannelRelease, GitHubKey, Release};
use crate::clock::Clock;
use crate::config::{CacheConfig, GithubConfig};
use crate::metrics::Metrics;
use crate::store::{ByteRange, ByteSource, ByteStream, Object, ObjectKey, ObjectMeta};

/// Releases read per listing: GitHub's largest page. Older releases are not served.
const PER_PAGE: u32 = 100;

/// Pages read by [`GitHubOrigin::list_every_release`]: 10,000 releases.
const MAX_PAGES: usize = 100;

/// After a failed API request, how long the last list is used before trying again.
const RETRY_GAP: Duration = Duration::from_secs(5);

/// How long a signed storage URL of a private asset is reused (GitHub signs them for five
/// minutes); ranged and segmented downloads then cost one API request, not one per range.
const LOCATION_TTL: Duration = Duration::from_secs(60);

/// Total bytes of asset bodies kept (manifests, signatures).
const MAX_BODY_WEIGHT: u64 = 16 * 1024 * 1024;

/// Why GitHub could not answer. Cheap to clone: one failure is shared by every caller that
/// waited on the same request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GitHubError {
    /// GitHub has no such release asset.
    #[error("not on GitHub: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// GitHub did not answer in time.
    #[error("GitHub did not answer within {0:?}")]
    Timeout(Duration),
    /// GitHub refused: a primary or secondary rate limit, or our own back-off after one.
    #[error("GitHub rate limit: {message}")]
    RateLimited {
        /// What happened, for the log.
        message: String,
        /// When asking again may succeed.
        retry_after: Option<Duration>,
    },
    /// GitHub failed (connection refused, a 5xx, an answer that does not parse).
    #[error("GitHub is unavailable: {message}")]
    Unavailable {
        /// What went wrong, for the log.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

/// What GitHub answers for an artifact.
pub enum GitHubObject {
    /// A public repository: send the client to the asset's download URL.
    Redirect(String),
    /// A private repository: the asset, streamed through with the token.
    Stream(Object),
}

/// The GitHub Releases origin of one repository. Cheap to clone.
#[derive(Clone)]
pub struct GitHubOrigin {
    inner: Arc<Inner>,
}

struct Inner {
    api: Api,
    releases_path: String,
    private: bool,
    ttl: Duration,
    stale_if_error: Duration,
    state: Mutex<Known>,
    clock: Clock,
    /// One revalidation at a time.
    refresh: tokio::sync::Mutex<()>,
    bodies: moka::future::Cache<u64, Bytes>,
    locations: moka::future::Cache<u64, String>,
    metrics: Arc<Metrics>,
}

/// What is known of the repository's releases.
#[derive(Default)]
struct Known {
    /// The last list GitHub gave.
    listing: Option<Listing>,
    /// When and how the last request failed (cleared by a success).
    failed: Option<(Instant, GitHubError)>,
}

#[derive(Clone)]
struct Listing {
    releases: Arc<Vec<ChannelRelease>>,
    etag: Option<String>,
    /// When GitHub last confirmed it (200 or 304).
    confirmed: Instant,
}

impl GitHubOrigin {
    /// The origin for `config`'s repository; `token` is `GITHUB_TOKEN`.
    pub fn new(
        config: &GithubConfig,
        cache: &CacheConfig,
        token: Option<SecretString>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, GitHubError> {
        let private = config.private.unwrap_or(token.is_some());
        let api = Api::new(
            &config.api_url,
            token,
            config.timeout,
            clock.clone(),
            metrics.clone(),
        )?;
        if private && !api.has_token() {
            tracing::warn!("github.private is set but GITHUB_TOKEN is not: GitHub will answer 404");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                api,
                releases_path: format!(
                    "/repos/{}/{}/releases?per_page={PER_PAGE}",
                    config.owner, config.repo
                ),
                private,
                ttl: config.refresh_interval,
                stale_if_error: cache.stale_if_error,
                state: Mutex::new(Known::default()),
                clock,
                refresh: tokio::sync::Mutex::new(()),
                bodies: moka::future::Cache::builder()
                    .max_capacity(MAX_BODY_WEIGHT)
                    .weigher(|_: &u64, body: &Bytes| {
                        u32::try_from(body.len()).unwrap_or(u32::MAX).max(64)
                    })
                    .build(),
                locations: moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(LOCATION_TTL)
                    .build(),
                metrics,
            }),
        })
    }

    /// Proves the origin can answer: a current (or still usable) list of releases.
    pub async fn probe(&self) -> Result<(), GitHubError> {
        self.releases().await.map(drop)
    }

    /// The whole of the asset `key` names, or `None` when GitHub has none (or it is over
    /// `max` bytes).
    pub async fn get_bytes(&self, key: &ObjectKey, max: u64) -> Result<Option<Bytes>, GitHubError> {
        let Some(asset) = self.asset(key).await? else {
            return Ok(None);
        };
        if asset.size > max {
            tracing::warn!(key = %key, size = asset.size, max, "GitHub asset too large; treated as missing");
            return Ok(None);
        }
        let body = self.asset_bytes(&asset, max).await?;
        if self.inner.private && key.file_name().ends_with(".json") {
            let releases = self.releases().await?;
            return Ok(Some(
                tauri_urls_through_us(&body, &releases).unwrap_or(body),
            ));
        }
        Ok(Some(body))
    }

    /// The whole of a (small) release asset, downloaded once per asset id: from its public
    /// download URL, or with the token for a private repository.
    pub async fn asset_bytes(&self, asset: &Asset, max: u64) -> Result<Bytes, GitHubError> {
        let inner = &self.inner;
        inner
            .bodies
            .try_get_with(asset.id, async {
                let response = if inner.private {
                    let location = self.location(asset).await?;
                    inner.api.download(&location, None).await?
                } else {
                    inner
                        .api
                        .download(&asset.browser_download_url, None)
                        .await?
                };
                if !response.status().is_success() {
                    return Err(GitHubError::Unavailable {
                        message: format!(
                            "GitHub answered {} for asset {}",
                            response.status(),
                            asset.name
                        ),
                        source: None,
                    });
                }
                let max = usize::try_from(max).unwrap_or(usize::MAX);
                inner.api.body(response, max).await
            })
            .await
            .map_err(|err: Arc<GitHubError>| (*err).clone())
    }

    /// Streams `range` of a release asset, checked to be exactly those bytes (the mirror's
    /// resumable downloads): from the public download URL, or for a private repository from
    /// the signed storage URL the API gives for the token (the token never goes there).
    pub fn read_asset(&self, asset: &Asset, range: ByteRange) -> ByteStream {
        GitHubSource {
            origin: self.clone(),
            asset: asset.clone(),
        }
        .read(range)
    }

    /// Every release of the repository, page by page (the origin serves the newest 100; the
    /// mirror and `status` read them all). Each page is revalidated with `If-None-Match`
    /// against `cached` (a `304` costs no rate limit), so a repository that did not change
    /// costs one free request a page.
    pub async fn list_every_release(
        &self,
        cached: Option<&ReleaseList>,
    ) -> Result<ReleaseList, GitHubError> {
        let api = &self.inner.api;
        let mut pages = Vec::new();
        let mut url = Some(self.inner.releases_path.clone());
        while let Some(page_url) = url.take() {
            if pages.len() >= MAX_PAGES {
                tracing::warn!(
                    pages = MAX_PAGES,
                    "GitHub lists more releases than are read"
                );
                break;
            }
            let known = cached.and_then(|c| c.pages.iter().find(|p| p.url == page_url));
            let etag = known.and_then(|p| p.etag.as_deref());
            let page = match (api.get_json(&page_url, etag).await?, known) {
                (Fetched::NotModified, Some(known)) => known.clone(),
                (Fetched::NotModified, None) => {
                    return Err(GitHubError::Unavailable {
                        message: "GitHub answered 304 to an unconditional request".into(),
                        source: None,
                    });
                }
                (Fetched::Fresh { body, etag, next }, _) => ListPage {
                    releases: serde_json::from_slice(&body).map_err(|err| {
                        GitHubError::Unavailable {
                            message: "the list of releases does not parse".into(),
                            source: Some(Arc::new(err)),
                        }
                    })?,
                    url: page_url,
                    etag,
                    next,
                },
            };
            url.clone_from(&page.next);
            pages.push(page);
        }
        Ok(ReleaseList { pages })
    }

    /// The artifact `key` names: a redirect (public repository) or a stream (private);
    /// `None` when GitHub has no such asset.
    pub async fn open(&self, key: &ObjectKey) -> Result<Option<GitHubObject>, GitHubError> {
        let Some(asset) = self.asset(key).await? else {
            return Ok(None);
        };
        if !self.inner.private {
            return Ok(Some(GitHubObject::Redirect(asset.browser_download_url)));
        }
        let meta = ObjectMeta {
            size: asset.size,
            // The asset id names these bytes: a re-upload gets a new id.
            etag: format!("\"gh-{}\"", asset.id),
            last_modified: asset_modified(&asset),
            content_type: None,
        };
        let source = GitHubSource {
            origin: self.clone(),
            asset,
        };
        Ok(Some(GitHubObject::Stream(Object::external(
            meta,
            Arc::new(source),
        ))))
    }

    /// The release asset `key` names, `None` when there is none.
    async fn asset(&self, key: &ObjectKey) -> Result<Option<Asset>, GitHubError> {
        let Some(github_key) = GitHubKey::of(key) else {
            return Ok(None);
        };
        let releases = self.releases().await?;
        Ok(model::find_asset(&releases, &github_key).cloned())
    }

    /// The signed storage URL of a private asset (reused for [`LOCATION_TTL`]).
    async fn location(&self, asset: &Asset) -> Result<String, GitHubError> {
        self.inner
            .locations
            .try_get_with(asset.id, self.inner.api.asset_location(&asset.url))
            .await
            .map_err(|err: Arc<GitHubError>| (*err).clone())
    }

    /// The servable releases (the newest 100), newest first: from memory while fresh, else
    /// revalidated.
    ///
    /// After a failed request GitHub is not asked again for [`RETRY_GAP`]: meanwhile the last
    /// list answers (while within `stale_if_error`), or, when there is none, that failure.
    pub async fn releases(&self) -> Result<Arc<Vec<ChannelRelease>>, GitHubError> {
        let inner = &self.inner;
        if let Some(answer) = self.without_request() {
            return answer;
        }
        // One revalidation at a time; while it runs, others use what there is.
        let _refreshing = match inner.refresh.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.usable() {
                Some(listing) => {
                    self.lookup("stale");
                    return Ok(listing.releases);
                }
                None => inner.refresh.lock().await,
            },
        };
        // Someone else may have just refreshed it, or just failed.
        if let Some(answer) = self.without_request() {
            return answer;
        }
        self.lookup("miss");
        let current = self.usable();
        let etag = current.as_ref().and_then(|l| l.etag.as_deref());
        let fetched = inner.api.get_json(&inner.releases_path, etag).await;
        let updated = match (fetched, current) {
            (Ok(Fetched::NotModified), Some(listing)) => Listing {
                confirmed: inner.clock.now(),
                ..listing
            },
            (Ok(Fetched::Fresh { body, etag, .. }), _) => {
                match serde_json::from_slice::<Vec<Release>>(&body) {
                    Ok(releases) => Listing {
                        releases: Arc::new(model::servable(releases)),
                        etag,
                        confirmed: inner.clock.now(),
                    },
                    Err(err) => {
                        return self.failed(GitHubError::Unavailable {
                            message: "the list of releases does not parse".into(),
                            source: Some(Arc::new(err)),
                        });
                    }
                }
            }
            (Ok(Fetched::NotModified), None) => {
                return self.failed(GitHubError::Unavailable {
                    message: "GitHub answered 304 to an unconditional request".into(),
                    source: None,
                });
            }
            (Err(err), _) => return self.failed(err),
        };
        let releases = updated.releases.clone();
        if let Ok(mut state) = inner.state.lock() {
            *state = Known {
                listing: Some(updated),
                failed: None,
            };
        }
        Ok(releases)
    }

    /// The answer that needs no request: a fresh list; or, within [`RETRY_GAP`] of a
    /// failure, the last usable list or that failure. `None`: ask GitHub.
    fn without_request(&self) -> Option<Result<Arc<Vec<ChannelRelease>>, GitHubError>> {
        let state = self.inner.state.lock().ok()?;
        let clock = &self.inner.clock;
        if let Some(listing) = &state.listing
            && clock.since(listing.confirmed) < self.inner.ttl
        {
            self.lookup("hit");
            return Some(Ok(listing.releases.clone()));
        }
        let (_, failure) = state
            .failed
            .as_ref()
            .filter(|(at, _)| clock.since(*at) < RETRY_GAP)?;
        if let Some(listing) = &state.listing
            && clock.since(listing.confirmed) < self.inner.ttl + self.inner.stale_if_error
        {
            self.lookup("stale");
            return Some(Ok(listing.releases.clone()));
        }
        Some(Err(failure.clone()))
    }

    /// The last list, while it may still stand in (within `stale_if_error`).
    fn usable(&self) -> Option<Listing> {
        let state = self.inner.state.lock().ok()?;
        state.listing.clone().filter(|l| {
            self.inner.clock.since(l.confirmed) < self.inner.ttl + self.inner.stale_if_error
        })
    }

    /// Records a failed request (kept, with the last list, until a request succeeds);
    /// answers with the last usable list, else the error.
    fn failed(&self, err: GitHubError) -> Result<Arc<Vec<ChannelRelease>>, GitHubError> {
        let usable = self.usable();
        if let Ok(mut state) = self.inner.state.lock() {
            state.failed = Some((self.inner.clock.now(), err.clone()));
        }
        match usable {
            Some(listing) => {
                tracing::warn!(error = %err, "GitHub failed; using the last list of releases");
                self.lookup("stale");
                Ok(listing.releases)
            }
            None => Err(err),
        }
    }

    fn lookup(&self, result: &str) {
        self.inner
            .metrics
            .cache_lookups
            .with_label_values(&["github_releases", result])
            .inc();
    }
}

/// Every release GitHub lists, page by page, with each page's validator (what
/// [`GitHubOrigin::list_every_release`] reads and revalidates; serializable, so that a
/// command can keep it between runs).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ReleaseList {
    /// The pages, first to last.
    pub pages: Vec<ListPage>,
}

/// One page of the list of releases.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ListPage {
    /// The URL (or API path) it was read from.
    pub url: String,
    /// Its `ETag`, for `If-None-Match`.
    pub etag: Option<String>,
    /// The next page's URL.
    pub next: Option<String>,
    /// The releases on it.
    pub releases: Vec<Release>,
}

impl ReleaseList {
    /// The servable releases of every page (no drafts, tags that are versions), newest first.
    pub fn servable(&self) -> Vec<ChannelRelease> {
        model::servable(
            self.pages
                .iter()
                .flat_map(|p| p.releases.iter().cloned())
                .collect(),
        )
    }
}

/// A Tauri manifest of a private repository with its `github.com` download URLs (what
/// tauri-action writes, and what a client without the token cannot fetch) turned into file
/// names, which the manifest parser makes `{public_url}/releases/v{version}/{name}` URLs:
/// the download then goes through release-edge, which streams it with the token. Only URLs
/// of the manifest's own release are rewritten. `None`: nothing to rewrite. The mirror uses
/// it too: once the release is in the store, its downloads no longer need GitHub.
pub fn tauri_urls_through_us(body: &[u8], releases: &[ChannelRelease]) -> Option<Bytes> {
    let mut manifest: serde_json::Value = serde_json::from_slice(body).ok()?;
    let version = crate::release::parse_version(manifest.get("version")?.as_str()?)?;
    let release = releases.iter().find(|r| r.version == version)?;
    let mut changed = false;
    for entry in manifest.get_mut("platforms")?.as_object_mut()?.values_mut() {
        let Some(url) = entry.get_mut("url") else {
            continue;
        };
        let asset = release
            .release
            .assets
            .iter()
            .find(|a| url.as_str() == Some(a.browser_download_url.as_str()));
        if let Some(asset) = asset {
            *url = serde_json::Value::String(asset.name.clone());
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    serde_json::to_vec(&manifest).ok().map(Bytes::from)
}

/// The bytes of a private asset, fetched from GitHub's storage host per range.
#[derive(Clone)]
struct GitHubSource {
    origin: GitHubOrigin,
    asset: Asset,
}

impl ByteSource for GitHubSource {
    fn read(&self, range: ByteRange) -> ByteStream {
        let source = self.clone();
        let body = async move {
            let response = source.fetch(range).await.map_err(io::Error::other)?;
            Ok::<_, io::Error>(
                response
                    .bytes_stream()
                    .map(|chunk| chunk.map_err(io::Error::other)),
            )
        };
        Box::pin(futures_util::stream::once(body).try_flatten())
    }
}

impl GitHubSource {
    /// The storage host's answer for `range`, checked to be exactly those bytes. A signed
    /// URL that has expired is fetched anew once.
    async fn fetch(&self, range: ByteRange) -> Result<reqwest::Response, GitHubError> {
        let inner = &self.origin.inner;
        let whole = range.start == 0 && range.end + 1 == self.asset.size;
        for attempt in 0..2 {
            let location = if inner.private {
                self.origin.location(&self.asset).await?
            } else {
                // github.com redirects to storage; the range goes along on every hop.
                self.asset.browser_download_url.clone()
            };
            let response = inner.api.download(&location, Some(range)).await?;
            let status = response.status();
            if status == StatusCode::PARTIAL_CONTENT {
                let expected = range.content_range(self.asset.size);
                let got = response
                    .headers()
                    .get(http::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok());
                if got == Some(expected.as_str()) {
                    return Ok(response);
                }
                return Err(GitHubError::Unavailable {
                    message: format!(
                        "GitHub storage sent {got:?} for {expected} of {}",
                        self.asset.name
                    ),
                    source: None,
                });
            }
            if status == StatusCode::OK && whole {
                return Ok(response);
            }
            if matches!(status, StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST)
                && attempt == 0
                && inner.private
            {
                // The signed URL expired (or was refused): ask the API for a new one.
                inner.locations.invalidate(&self.asset.id).await;
                continue;
            }
            return Err(GitHubError::Unavailable {
                message: format!(
                    "GitHub storage answered {status} for bytes {}-{} of {}",
                    range.start, range.end, self.asset.name
                ),
                source: None,
            });
        }
        Err(GitHubError::Unavailable {
            message: format!("GitHub storage refused {}", self.asset.name),
            source: None,
        })
    }
}

/// When an asset last changed, for `Last-Modified`.
fn asset_modified(asset: &Asset) -> Option<SystemTime> {
    asset
        .updated_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
}
