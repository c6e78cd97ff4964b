//! The one state type every handler receives.

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cache::ManifestCache;
use crate::config::{Config, Secrets};
use crate::metrics::Metrics;
use crate::store::key::CachePolicy;
use crate::store::{Store, StoreError};

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
    /// The object store.
    pub store: Store,
    /// Parsed manifests, in front of the store.
    pub manifests: ManifestCache,
    /// `Cache-Control` values of mutable objects and feeds, built once from the config.
    pub cache_policy: CachePolicy,
    /// Prometheus metrics and their registry.
    pub metrics: Metrics,
    /// When the store last answered a readiness probe.
    pub last_store_ok: Mutex<Option<Instant>>,
}

impl App {
    /// Builds the state from a validated config.
    pub fn build(config: Config, secrets: Secrets) -> anyhow::Result<AppState> {
        let store =
            Store::with_credentials(&config.store, &config.cache, secrets.s3_credentials.clone())?;
        let metrics = Metrics::new()?;
        let manifests = ManifestCache::new(store.clone(), &config.cache, &config.public_url);
        let cache_policy = CachePolicy::new(config.cache.manifest_max_age);
        Ok(AppState(Arc::new(App {
            cache_policy,
            config,
            secrets,
            store,
            manifests,
            metrics,
            last_store_ok: Mutex::new(None),
        })))
    }

    /// True when the store answered within the readiness interval; probes it when the last
    /// answer is older than that.
    pub async fn is_ready(&self) -> Result<(), StoreError> {
        let interval = self.config.server.readiness_interval;
        let fresh = self
            .last_store_ok
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|at| at.elapsed() < interval);
        if fresh {
            return Ok(());
        }
        self.store.probe().await?;
        if let Ok(mut last) = self.last_store_ok.lock() {
            *last = Some(Instant::now());
        }
        Ok(())
    }
}
