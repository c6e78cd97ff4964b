//! The one state type every handler receives.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::access::Access;
use crate::auth::{AdminTokens, FailureLimiter};
use crate::cache::{ManifestCache, ManifestKeys};
use crate::cdn::Cdn;
use crate::clock::Clock;
use crate::config::{Config, Secrets};
use crate::manage::Manager;
use crate::metrics::Metrics;
use crate::origin::{OriginError, Origins};
use crate::policy::Policies;
use crate::store::key::CachePolicy;
use crate::versions::KnownVersions;

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
    /// The keys of the manifests update checks read, composed once.
    pub keys: ManifestKeys,
    /// `Cache-Control` values of mutable objects and feeds, built once from the config.
    pub cache_policy: CachePolicy,
    /// Prometheus metrics and their registry.
    pub metrics: Arc<Metrics>,
    /// When an origin last answered a readiness probe, and which.
    pub last_ready: Mutex<Option<(Instant, &'static str)>>,
    /// The clock every time-based decision reads.
    pub clock: Clock,
    /// A readiness probe started by a scrape is running.
    probing: AtomicBool,
    /// The versions and channels the store holds, listed in the background.
    pub known_versions: KnownVersions,
    /// The channels' release policies as the feeds apply them (views per channel file).
    pub policies: Policies,
    /// The admin API's tokens (none: the API is off).
    pub admin_tokens: AdminTokens,
    /// The slowdown of addresses that present wrong admin tokens.
    pub admin_failures: FailureLimiter,
    /// The release manager's operations on the store (none without a store).
    pub manager: Option<Manager>,
    /// The CDN in front (`[cdn]`): purged after changes (rollback, policy), and the labels
    /// feed answers carry for it.
    pub cdn: Option<Cdn>,
    /// Private channels: their tokens, signed URLs, which objects are private (SPEC §2.7).
    pub access: Access,
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
        metrics.init_origin_series(origins.store().is_some(), config.github.is_some());
        if let Some(price) = config.cost.egress_per_gib {
            metrics.export_egress_cost(price)?;
        }
        let cdn = Cdn::from_config(&config, &secrets, clock.clone(), metrics.clone())?;
        let known_versions = KnownVersions::new(
            origins.clone(),
            clock.clone(),
            config.cache.manifest_ttl,
            config.store.timeout,
        );
        let admin_tokens = AdminTokens::new(&secrets.admin_tokens);
        let admin_failures = FailureLimiter::new(clock.clone());
        let manager = origins.store().cloned().map(Manager::new);
        let access = Access::build(
            &config,
            &secrets,
            origins.clone(),
            known_versions.clone(),
            clock.clone(),
        )?;
        Ok(AppState(Arc::new(App {
            cache_policy,
            config,
            secrets,
            origins,
            manifests,
            metrics,
            keys: ManifestKeys::default(),
            last_ready: Mutex::new(None),
            clock,
            probing: AtomicBool::new(false),
            known_versions,
            policies: Policies::default(),
            admin_tokens,
            admin_failures,
            manager,
            cdn,
            access,
        })))
    }

    /// Ready when an origin (the store, else GitHub) answered within the readiness
    /// interval; probes them when the last answer is older than that. The name of the
    /// origin that answered.
    pub async fn is_ready(&self) -> Result<&'static str, OriginError> {
        if let Some(origin) = self.recently_ready() {
            return Ok(origin);
        }
        let probed = self.origins.probe().await;
        self.metrics.ready.set(i64::from(probed.is_ok()));
        let origin = probed?;
        if let Ok(mut last) = self.last_ready.lock() {
            *last = Some((self.clock.now(), origin));
        }
        Ok(origin)
    }

    /// The origin that answered a readiness probe within the readiness interval.
    fn recently_ready(&self) -> Option<&'static str> {
        let interval = self.config.server.readiness_interval;
        self.last_ready
            .lock()
            .ok()
            .and_then(|last| *last)
            .filter(|(at, _)| self.clock.since(*at) < interval)
            .map(|(_, origin)| origin)
    }
}

impl AppState {
    /// Brings the health gauges up to date for a scrape without making it wait on an
    /// origin: the store's circuit as it is now, and readiness as last evaluated, with a new
    /// evaluation started in the background when that is older than the readiness interval
    /// (so `release_edge_ready` follows the origins even when nothing calls `/readyz`).
    pub fn update_health_gauges(&self) {
        self.metrics
            .store_circuit_open
            .set(i64::from(self.origins.circuit_open()));
        if self.recently_ready().is_none() && !self.probing.swap(true, Ordering::AcqRel) {
            let state = self.clone();
            tokio::spawn(async move {
                // The outcome is in the gauge; `/readyz` logs failures.
                let _ = state.is_ready().await;
                state.probing.store(false, Ordering::Release);
            });
        }
    }
}
