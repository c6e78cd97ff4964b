//! The one state type every handler receives.

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cache::ManifestCache;
use crate::clock::Clock;
use crate::config::{Config, Secrets};
use crate::metrics::Metrics;
use crate::origin::{OriginError, Origins};
use crate::store::key::CachePolicy;

/// Shared state: cheap to clone, one `Arc` inside.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// Everything a request may need.
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// Secrets from the environment.
    pub secrets: Secrets,
    /// The store and GitHub Releases, with the fallback policy between them.
    pub origins: Arc<Origins>,
    /// Parsed manifests, in front of the origins.
    pub manifests: ManifestCache,
    /// `Cache-Control` values of mutable objects and feeds, built once from the config.
    pub cache_policy: CachePolicy,
    /// Prometheus metrics and their registry.
    pub metrics: Arc<Metrics>,
    /// When an origin last answered a readiness probe, and which.
    pub last_ready: Mutex<Option<(Instant, &'static str)>>,
    /// The clock every time-based decision reads.
    pub clock: Clock,
}

impl App {
    /// Builds the state from a validated config, on the system clock.
    pub fn build(config: Config, secrets: Secrets) -> anyhow::Result<AppState> {
        Self::build_with_clock(config, secrets, Clock::system())
    }

    /// As [`App::build`], with the clock that TTLs, stale copies, the circuit breaker and
    /// back-offs are judged by (a manual one in tests).
    pub fn build_with_clock(
        config: Config,
        secrets: Secrets,
        clock: Clock,
    ) -> anyhow::Result<AppState> {
        let metrics = Arc::new(Metrics::new()?);
        let origins = Arc::new(Origins::build(
            &config,
            &secrets,
            clock.clone(),
            metrics.clone(),
        )?);
        let manifests = ManifestCache::new(
            origins.clone(),
            &config.cache,
            &config.public_url,
            clock.clone(),
            metrics.clone(),
        );
        let cache_policy = CachePolicy::new(config.cache.manifest_max_age);
        Ok(AppState(Arc::new(App {
            cache_policy,
            config,
            secrets,
            origins,
            manifests,
            metrics,
            last_ready: Mutex::new(None),
            clock,
        })))
    }

    /// Ready when an origin (the store, else GitHub) answered within the readiness
    /// interval; probes them when the last answer is older than that. The name of the
    /// origin that answered.
    pub async fn is_ready(&self) -> Result<&'static str, OriginError> {
        let interval = self.config.server.readiness_interval;
        let fresh = self
            .last_ready
            .lock()
            .ok()
            .and_then(|last| *last)
            .filter(|(at, _)| self.clock.since(*at) < interval);
        if let Some((_, origin)) = fresh {
            return Ok(origin);
        }
        let origin = self.origins.probe().await?;
        if let Ok(mut last) = self.last_ready.lock() {
            *last = Some((self.clock.now(), origin));
        }
        Ok(origin)
    }
}
