//! The origins behind every answer and the fallback policy between them (SPEC §3): the
//! store is asked first; on a missing object, an error or a timeout (which of these is
//! configurable: `github.fallback_on`) GitHub Releases answers instead. A circuit breaker
//! keeps requests from a store that keeps failing, so they do not each pay its timeout.
//!
//! The rule every answer follows: a fallback never makes an answer worse. When the store
//! answered, even "not there", a failing GitHub can add nothing but take nothing away: a
//! lookup the store answered "not there" and GitHub could not confirm is
//! [`Found::Unconfirmed`], which a probe for an optional manifest treats as absent and only
//! a lookup that needs the object turns into an error naming GitHub. An error always names
//! the origin that failed ([`OriginError`]).

pub mod breaker;
pub mod github;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use self::breaker::CircuitBreaker;
use self::github::{GitHubError, GitHubObject, GitHubOrigin};
use crate::clock::Clock;
use crate::config::{Config, FallbackReason, Secrets, StoreKind};
use crate::metrics::Metrics;
use crate::release::MAX_MANIFEST_BYTES;
use crate::store::key::KeyKind;
use crate::store::{Object, ObjectKey, Store, StoreError};

/// Total bytes of the last good copies of mutable objects.
const LAST_GOOD_WEIGHT: u64 = 16 * 1024 * 1024;

/// Which origin answered, or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginName {
    /// The object store.
    Store,
    /// GitHub Releases.
    GitHub,
}

impl OriginName {
    /// The metric label and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginName::Store => "store",
            OriginName::GitHub => "github",
        }
    }
}

/// An origin that could not answer, and which one it was.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// The store failed or timed out (never "not found": that is an answer).
    #[error(transparent)]
    Store(StoreError),
    /// GitHub failed, timed out or rate-limited us (never "not found").
    #[error(transparent)]
    GitHub(GitHubError),
    /// Both failed. The store, the primary origin, is the one named; GitHub's failure is
    /// carried for the log.
    #[error("{store} (and the fallback: {github})")]
    Both {
        /// The store's failure.
        #[source]
        store: StoreError,
        /// GitHub's.
        github: GitHubError,
    },
}

impl OriginError {
    /// The origin that failed.
    pub fn origin(&self) -> OriginName {
        match self {
            OriginError::Store(_) | OriginError::Both { .. } => OriginName::Store,
            OriginError::GitHub(_) => OriginName::GitHub,
        }
    }

    /// A copy for each waiter of a coalesced request.
    pub fn duplicate(&self) -> Self {
        match self {
            OriginError::Store(err) => OriginError::Store(err.duplicate()),
            OriginError::GitHub(err) => OriginError::GitHub(err.clone()),
            OriginError::Both { store, github } => OriginError::Both {
                store: store.duplicate(),
                github: github.clone(),
            },
        }
    }
}

/// What the origins say of an object they were asked for.
#[derive(Debug)]
pub enum Found<T> {
    /// An origin has it.
    Yes(T, OriginName),
    /// No origin has it: the store said so (and GitHub, when asked, agreed).
    No,
    /// One origin said "not there" and the other, which might have it, failed (named).
    /// Absent to a probe for an optional manifest; an error to a lookup that needs it.
    Unconfirmed(OriginError),
}

/// What an origin gives for an artifact.
pub enum Opened {
    /// The object, to be streamed.
    Object(Object),
    /// Its public URL elsewhere (a public GitHub repository's download link).
    Redirect(String),
}

/// A last good copy and when an origin last confirmed it.
struct Kept {
    object: Object,
    confirmed: Mutex<Instant>,
}

/// The store's answer, or why to ask the fallback.
enum StoreStep<T> {
    Answered(T),
    Fallback {
        reason: FallbackReason,
        /// The store's failure; `None` when it answered "not there".
        error: Option<StoreError>,
    },
}

/// The store, GitHub Releases, and the policy between them.
pub struct Origins {
    store: Option<Store>,
    github: Option<GitHubOrigin>,
    fallback_on: Vec<FallbackReason>,
    breaker: CircuitBreaker,
    /// Last good copies of small mutable objects (manifests read through `/releases`).
    last_good: moka::future::Cache<ObjectKey, Arc<Kept>>,
    stale_if_error: Duration,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Origins {
    /// The origins the config names.
    pub fn build(
        config: &Config,
        secrets: &Secrets,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, OriginError> {
        let store = match config.store.kind {
            StoreKind::None => None,
            _ => Some(
                Store::with_credentials(
                    &config.store,
                    &config.cache,
                    secrets.s3_credentials.clone(),
                    clock.clone(),
                )
                .map_err(OriginError::Store)?,
            ),
        };
        let github = config
            .github
            .as_ref()
            .map(|github| {
                GitHubOrigin::new(
                    github,
                    &config.cache,
                    secrets.github_token.clone(),
                    clock.clone(),
                    metrics.clone(),
                )
            })
            .transpose()
            .map_err(OriginError::GitHub)?;
        Ok(Self {
            store,
            github,
            fallback_on: config
                .github
                .as_ref()
                .map(|g| g.fallback_on.clone())
                .unwrap_or_default(),
            breaker: CircuitBreaker::new(
                config.store.circuit_failures,
                config.store.circuit_open_for,
            ),
            last_good: moka::future::Cache::builder()
                .max_capacity(LAST_GOOD_WEIGHT)
                .weigher(|_: &ObjectKey, kept: &Arc<Kept>| {
                    u32::try_from(kept.object.meta.size)
                        .unwrap_or(u32::MAX)
                        .max(256)
                })
                // Unused copies go; a used one is checked against `stale_if_error` itself.
                .time_to_idle(config.cache.stale_if_error)
                .build(),
            stale_if_error: config.cache.stale_if_error,
            clock,
            metrics,
        })
    }

    /// Names of the configured origins, for logs and `/readyz`.
    pub fn describe(&self) -> String {
        let mut names: Vec<&str> = self.store.iter().map(Store::kind).collect();
        if self.github.is_some() {
            names.push("github");
        }
        names.join("+")
    }

    /// The store, when one is configured.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// GitHub Releases, when configured.
    pub fn github(&self) -> Option<&GitHubOrigin> {
        self.github.as_ref()
    }

    /// True while the store's circuit is open.
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open(self.clock.now())
    }

    /// An object for `/releases/...`: from the store, else (by policy) from GitHub; `None`
    /// when no origin has it. A mutable manifest (`releases/latest/...`) that both fail to
    /// give is served from its last good copy, for up to `cache.stale_if_error`:
    /// electron-updater pointed straight at the bucket layout reads its channel file here.
    pub async fn open(&self, key: &ObjectKey) -> Result<Option<Opened>, OriginError> {
        if key.kind() != KeyKind::Mutable {
            return self.open_from_origins(key).await;
        }
        match self.open_from_origins(key).await {
            Ok(Some(Opened::Object(object))) if object.meta.size <= MAX_MANIFEST_BYTES => {
                Ok(Some(Opened::Object(self.keep_copy(key, object).await)))
            }
            Err(err) => {
                let kept = self.last_good.get(key).await.filter(|kept| {
                    kept.confirmed
                        .lock()
                        .is_ok_and(|at| self.clock.since(*at) < self.stale_if_error)
                });
                match kept {
                    Some(kept) => {
                        tracing::warn!(key = %key, origin = err.origin().as_str(), error = %err, "origins failed; serving the last good copy");
                        self.metrics.fallback.with_label_values(&["stale"]).inc();
                        Ok(Some(Opened::Object(kept.object.as_stale())))
                    }
                    None => Err(err),
                }
            }
            other => other,
        }
    }

    /// Keeps a copy of a small mutable object (read once per version of it: a copy with the
    /// same ETag is kept as it is), and returns what to serve.
    async fn keep_copy(&self, key: &ObjectKey, object: Object) -> Object {
        if let Some(kept) = self.last_good.get(key).await
            && kept.object.meta == object.meta
        {
            if let Ok(mut confirmed) = kept.confirmed.lock() {
                *confirmed = self.clock.now();
            }
            return kept.object.clone();
        }
        match object.read_all(key).await {
            Ok(bytes) => {
                let copy = object.kept_copy(bytes);
                let kept = Arc::new(Kept {
                    object: copy.clone(),
                    confirmed: Mutex::new(self.clock.now()),
                });
                self.last_good.insert(key.clone(), kept).await;
                copy
            }
            // Serve it streamed as usual; the next request tries to keep a copy again.
            Err(_) => object,
        }
    }

    /// An object from the store, else (by policy) from GitHub.
    async fn open_from_origins(&self, key: &ObjectKey) -> Result<Option<Opened>, OriginError> {
        let (reason, store_error) = match self.ask_store(key, |s| s.open(key)).await {
            StoreStep::Answered(object) => return Ok(Some(Opened::Object(object))),
            StoreStep::Fallback { reason, error } => (reason, error),
        };
        let Some(github) = self.github_for(reason) else {
            return store_error.map_or(Ok(None), |err| Err(OriginError::Store(err)));
        };
        match (github.open(key).await, store_error) {
            (Ok(Some(GitHubObject::Redirect(url))), _) => Ok(Some(Opened::Redirect(url))),
            (Ok(Some(GitHubObject::Stream(object))), _) => Ok(Some(Opened::Object(object))),
            (Ok(None), None) => Ok(None),
            // The store failed and GitHub lacks it: the store's failure, never a 404 a CDN
            // could keep (the store may well have the object).
            (Ok(None), Some(store)) => Err(OriginError::Store(store)),
            (Err(github), None) => Err(OriginError::GitHub(github)),
            (Err(github), Some(store)) => Err(OriginError::Both { store, github }),
        }
    }

    /// A manifest: the store's bytes parsed by `parse`, else (by policy) GitHub's. A
    /// manifest that does not parse counts as missing (SPEC §2). An error only when no
    /// origin could say anything.
    pub async fn manifest<T>(
        &self,
        key: &ObjectKey,
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Found<T>, OriginError> {
        let step = self
            .ask_store(key, |s| async move {
                match s.get_bytes(key, MAX_MANIFEST_BYTES).await {
                    Ok(None) => Err(not_found(key)),
                    Ok(Some(bytes)) => Ok(bytes),
                    Err(err) => Err(err),
                }
            })
            .await;
        let (reason, store_error) = match step {
            StoreStep::Answered(bytes) => match parse(&bytes) {
                Some(parsed) => return Ok(Found::Yes(parsed, OriginName::Store)),
                None => (FallbackReason::Missing, None),
            },
            StoreStep::Fallback { reason, error } => (reason, error),
        };
        // The release policy lives in the store alone: GitHub has nothing to add.
        let github = match key.kind() {
            KeyKind::Policy => None,
            _ => self.github_for(reason),
        };
        let Some(github) = github else {
            return match store_error {
                Some(err) => Err(OriginError::Store(err)),
                None => Ok(Found::No),
            };
        };
        let from_github = github
            .get_bytes(key, MAX_MANIFEST_BYTES)
            .await
            .map(|bytes| bytes.and_then(|b: Bytes| parse(&b)));
        match (from_github, store_error) {
            (Ok(Some(parsed)), _) => Ok(Found::Yes(parsed, OriginName::GitHub)),
            (Ok(None), None) => Ok(Found::No),
            // The store could not say; GitHub says there is none.
            (Ok(None), Some(store)) => Ok(Found::Unconfirmed(OriginError::Store(store))),
            // GitHub-only: its failure is the only answer there is.
            (Err(github), None) if self.store.is_none() => Err(OriginError::GitHub(github)),
            // The store answered "not there"; GitHub, which might have it, failed.
            (Err(github), None) => Ok(Found::Unconfirmed(OriginError::GitHub(github))),
            (Err(github), Some(store)) => Err(OriginError::Both { store, github }),
        }
    }

    /// Proves at least one origin answers; the name of the one that did.
    pub async fn probe(&self) -> Result<&'static str, OriginError> {
        let mut last_error = None;
        // An open circuit is not probed until it lets one request through.
        if let Some(store) = &self.store
            && self.breaker.admit(self.clock.now())
        {
            match store.probe().await {
                Ok(()) => {
                    self.breaker.success();
                    return Ok(store.kind());
                }
                Err(err) => {
                    self.breaker.failure(self.clock.now());
                    last_error = Some(OriginError::Store(err));
                }
            }
        }
        if let Some(github) = &self.github {
            match github.probe().await {
                Ok(()) => return Ok("github"),
                Err(err) => last_error = Some(OriginError::GitHub(err)),
            }
        }
        Err(
            last_error.unwrap_or(OriginError::Store(StoreError::Unavailable {
                message: "the store's circuit is open after repeated failures".into(),
                source: None,
            })),
        )
    }

    /// Asks the store through the breaker, recording the origin metrics.
    async fn ask_store<'a, T, F, Fut>(&'a self, key: &ObjectKey, ask: F) -> StoreStep<T>
    where
        F: FnOnce(&'a Store) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let Some(store) = &self.store else {
            // GitHub-only: not a fallback, the only origin.
            return StoreStep::Fallback {
                reason: FallbackReason::Missing,
                error: None,
            };
        };
        if !self.breaker.admit(self.clock.now()) {
            return StoreStep::Fallback {
                reason: FallbackReason::CircuitOpen,
                error: Some(StoreError::Unavailable {
                    message: "the store's circuit is open after repeated failures".into(),
                    source: None,
                }),
            };
        }
        let start = Instant::now();
        let answer = ask(store).await;
        self.metrics
            .origin_duration
            .with_label_values(&["store"])
            .observe(start.elapsed().as_secs_f64());
        let (outcome, step) = match answer {
            Ok(value) => {
                self.breaker.success();
                ("ok", StoreStep::Answered(value))
            }
            Err(StoreError::NotFound { .. }) => {
                self.breaker.success();
                (
                    "not_found",
                    StoreStep::Fallback {
                        reason: FallbackReason::Missing,
                        error: None,
                    },
                )
            }
            Err(err) => {
                let (outcome, reason) = match err {
                    StoreError::Timeout(_) => ("timeout", FallbackReason::Timeout),
                    _ => ("error", FallbackReason::Error),
                };
                if self.breaker.failure(self.clock.now()) {
                    tracing::warn!(key = %key, error = %err, "store failing: circuit opened");
                }
                (
                    outcome,
                    StoreStep::Fallback {
                        reason,
                        error: Some(err),
                    },
                )
            }
        };
        self.metrics
            .origin_requests
            .with_label_values(&["store", outcome])
            .inc();
        step
    }

    /// GitHub, when it is configured and `reason` falls back to it (counted).
    fn github_for(&self, reason: FallbackReason) -> Option<&GitHubOrigin> {
        let github = self.github.as_ref()?;
        if self.store.is_none() {
            return Some(github);
        }
        if !self.fallback_on.contains(&reason) {
            return None;
        }
        self.metrics
            .fallback
            .with_label_values(&[reason.as_str()])
            .inc();
        Some(github)
    }
}

fn not_found(key: &ObjectKey) -> StoreError {
    StoreError::NotFound {
        key: key.to_string(),
    }
}
