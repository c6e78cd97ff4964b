//! The origins behind every answer and the fallback policy between them (SPEC §3): the
//! store is asked first; on a missing object, an error or a timeout (which of these is
//! configurable: `github.fallback_on`) GitHub Releases answers instead. A circuit breaker
//! keeps requests from a store that keeps failing, so they do not each pay its timeout.

pub mod breaker;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::breaker::CircuitBreaker;
use crate::cache::MAX_MANIFEST_BYTES;
use crate::config::{Config, FallbackReason, Secrets, StoreKind};
use crate::metrics::Metrics;
use crate::store::github::{GitHubObject, GitHubOrigin};
use crate::store::key::KeyKind;
use crate::store::{Object, ObjectKey, Store, StoreError};

/// Total bytes of the last good copies of mutable objects.
const LAST_GOOD_WEIGHT: u64 = 16 * 1024 * 1024;

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
    metrics: Arc<Metrics>,
}

impl Origins {
    /// The origins the config names.
    pub fn build(
        config: &Config,
        secrets: &Secrets,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let store = match config.store.kind {
            StoreKind::None => None,
            _ => Some(Store::with_credentials(
                &config.store,
                &config.cache,
                secrets.s3_credentials.clone(),
            )?),
        };
        let github = config
            .github
            .as_ref()
            .map(|github| {
                GitHubOrigin::new(
                    github,
                    &config.cache,
                    secrets.github_token.clone(),
                    metrics.clone(),
                )
            })
            .transpose()?;
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

    /// True while the store's circuit is open.
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open(Instant::now())
    }

    /// An object for `/releases/...`: from the store, else (by policy) from GitHub. A
    /// mutable manifest (`releases/latest/...`) that both fail to give is served from its
    /// last good copy, for up to `cache.stale_if_error`: electron-updater pointed straight at
    /// the bucket layout reads its channel file here.
    pub async fn open(&self, key: &ObjectKey) -> Result<Opened, StoreError> {
        if key.kind() != KeyKind::Mutable {
            return self.open_from_origins(key).await;
        }
        match self.open_from_origins(key).await {
            Ok(Opened::Object(object)) if object.meta.size <= MAX_MANIFEST_BYTES => {
                Ok(Opened::Object(self.keep_copy(key, object).await))
            }
            Err(err) if !matches!(err, StoreError::NotFound { .. }) => {
                let kept = self.last_good.get(key).await.filter(|kept| {
                    kept.confirmed
                        .lock()
                        .is_ok_and(|at| at.elapsed() < self.stale_if_error)
                });
                match kept {
                    Some(kept) => {
                        tracing::warn!(key = %key, error = %err, "origins failed; serving the last good copy");
                        self.metrics.fallback.with_label_values(&["stale"]).inc();
                        Ok(Opened::Object(kept.object.as_stale()))
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
                *confirmed = Instant::now();
            }
            return kept.object.clone();
        }
        match object.read_all(key).await {
            Ok(bytes) => {
                let copy = object.kept_copy(bytes);
                let kept = Arc::new(Kept {
                    object: copy.clone(),
                    confirmed: Mutex::new(Instant::now()),
                });
                self.last_good.insert(key.clone(), kept).await;
                copy
            }
            // Serve it streamed as usual; the next request tries to keep a copy again.
            Err(_) => object,
        }
    }

    /// An object from the store, else (by policy) from GitHub.
    async fn open_from_origins(&self, key: &ObjectKey) -> Result<Opened, StoreError> {
        let (reason, store_error) = match self.ask_store(key, |s| s.open(key)).await {
            StoreStep::Answered(object) => return Ok(Opened::Object(object)),
            StoreStep::Fallback { reason, error } => (reason, error),
        };
        let Some(github) = self.github_for(reason) else {
            return Err(store_error.unwrap_or_else(|| not_found(key)));
        };
        match github.open(key).await {
            Ok(GitHubObject::Redirect(url)) => Ok(Opened::Redirect(url)),
            Ok(GitHubObject::Stream(object)) => Ok(Opened::Object(object)),
            Err(err) => Err(prefer_store_error(store_error, err)),
        }
    }

    /// A manifest: the store's bytes parsed by `parse`, else (by policy) GitHub's. A
    /// manifest that does not parse counts as missing (SPEC §2). `Ok(None)`: no origin has it.
    pub async fn manifest<T>(
        &self,
        key: &ObjectKey,
        max: u64,
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        let step = self
            .ask_store(key, |s| async move {
                match s.get_bytes(key, max).await {
                    Ok(None) => Err(not_found(key)),
                    Ok(Some(bytes)) => Ok(bytes),
                    Err(err) => Err(err),
                }
            })
            .await;
        let (reason, store_error) = match step {
            StoreStep::Answered(bytes) => match parse(&bytes) {
                Some(parsed) => return Ok(Some(parsed)),
                None => (FallbackReason::Missing, None),
            },
            StoreStep::Fallback { reason, error } => (reason, error),
        };
        let Some(github) = self.github_for(reason) else {
            return store_error.map_or(Ok(None), Err);
        };
        match github.get_bytes(key, max).await {
            Ok(Some(bytes)) => Ok(parse(&bytes)),
            // GitHub's "no such manifest" stands while the store cannot say otherwise:
            // the update check goes on to the next manifest (a Tauri `latest.json` that an
            // Electron app never has) instead of failing. A missing manifest is only
            // remembered for seconds.
            Ok(None) => Ok(None),
            Err(err) => Err(prefer_store_error(store_error, err)),
        }
    }

    /// Proves at least one origin answers; the name of the one that did.
    pub async fn probe(&self) -> Result<&'static str, StoreError> {
        let mut last_error = None;
        // An open circuit is not probed until it lets one request through.
        if let Some(store) = &self.store
            && self.breaker.admit(Instant::now())
        {
            match store.probe().await {
                Ok(()) => {
                    self.breaker.success();
                    return Ok(store.kind());
                }
                Err(err) => {
                    self.breaker.failure(Instant::now());
                    last_error = Some(err);
                }
            }
        }
        if let Some(github) = &self.github {
            match github.probe().await {
                Ok(()) => return Ok("github"),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or(StoreError::Unavailable {
            message: "no origin is configured".into(),
            source: None,
        }))
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
        if !self.breaker.admit(Instant::now()) {
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
                if self.breaker.failure(Instant::now()) {
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

/// Both origins failed: a store failure says more than GitHub's "not found" (the object may
/// well exist in the store), and a missing store object plus a GitHub failure is a failure.
fn prefer_store_error(store: Option<StoreError>, github: StoreError) -> StoreError {
    match (store, github) {
        (Some(store), StoreError::NotFound { .. }) => store,
        (_, github) => github,
    }
}
