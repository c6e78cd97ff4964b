//! Prometheus metrics (names are part of the contract, SPEC §5), in one struct that owns
//! its registry: no global statics, so every test builds its own.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::FallbackReason;
use crate::release::policy::Rollout;

/// Request-duration buckets, seconds: from a cached manifest answered in well under a
/// millisecond to a large download that runs for minutes (duration is time to the end of
/// the handler, i.e. to response headers; streaming time is not included).
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Actions of the release manager's API, each a value of
/// `release_edge_admin_changes_total{action}` that exists (at 0) from the start.
pub const ADMIN_ACTIONS: &[&str] = &[
    "rollback", "policy", "halt", "resume", "rollout", "yank", "unyank", "purge",
];

/// `outcome` values of `release_edge_origin_requests_total{origin="store"}`.
const STORE_OUTCOMES: &[&str] = &["ok", "not_found", "error", "timeout"];

/// `outcome` values of `release_edge_origin_requests_total{origin="github"}`.
const GITHUB_OUTCOMES: &[&str] = &[
    "ok",
    "not_modified",
    "not_found",
    "error",
    "timeout",
    "rate_limited",
];

/// What a response body is, for `release_edge_served_bytes_total{origin,kind}`: a handler
/// puts one in the response's extensions, and the observe layer counts the body's bytes
/// under it as they are sent (a client that goes away is counted for what it got).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Where the bytes came from: `store`, `github`, `stale` (a last good copy) or `cache`
    /// (a feed rendered from the manifest cache).
    pub origin: &'static str,
    /// What they are.
    pub kind: ServedKind,
}

/// The `kind` label of `release_edge_served_bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServedKind {
    /// Channel files, feeds and other mutable objects.
    Manifest,
    /// Objects under `releases/v*/`: installers, update archives, blockmaps, signatures.
    Artifact,
    /// A redirect to another host, which sends the bytes (GitHub's public download links).
    /// What is counted is what release-edge sent: the redirect's empty body. The size of the
    /// object handed off is not known here yet (the GitHub origin does not pass it on).
    Redirect,
}

impl ServedKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedKind::Manifest => "manifest",
            ServedKind::Artifact => "artifact",
            ServedKind::Redirect => "redirect",
        }
    }
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// `release_edge_http_requests_total{route,method,status}`.
    pub http_requests: IntCounterVec,
    /// `release_edge_http_request_duration_seconds{route}`: time to response headers.
    pub http_duration: HistogramVec,
    /// `release_edge_response_bytes_total{route}`: body bytes handed to the connection.
    pub response_bytes: IntCounterVec,
    /// `release_edge_inflight_downloads`: `/releases/*` bodies being streamed right now.
    pub inflight_downloads: IntGauge,
    /// `release_edge_build_info{version}`, always 1.
    pub build_info: IntGaugeVec,
    /// `release_edge_update_checks_total{protocol,platform,arch,outcome}`.
    pub update_checks: IntCounterVec,
    /// `release_edge_downloads_total{channel,version,platform,arch}`: artifact downloads
    /// started (a response that carries the first byte of an installer or update archive).
    pub downloads: IntCounterVec,
    /// `release_edge_cache_lookups_total{cache,result}` (hit, miss, stale).
    pub cache_lookups: IntCounterVec,
    /// `release_edge_origin_requests_total{origin,outcome}`.
    pub origin_requests: IntCounterVec,
    /// `release_edge_origin_request_duration_seconds{origin}`.
    pub origin_duration: HistogramVec,
    /// `release_edge_fallback_total{reason}`.
    pub fallback: IntCounterVec,
    /// `release_edge_served_bytes_total{origin,kind}`: body bytes by where they came from
    /// and what they are (see [`Served`]).
    pub served_bytes: IntCounterVec,
    /// `release_edge_client_versions_total{channel,version}`: answered update checks by the
    /// version the client runs (adoption); versions and channels the store does not hold
    /// are `other`.
    pub client_versions: IntCounterVec,
    /// `release_edge_admin_changes_total{action}`: changes made through the admin API.
    pub admin_changes: IntCounterVec,
    /// `release_edge_cdn_purges_total{outcome}` (`ok`, `error`): CDN purges, retries done.
    pub cdn_purges: IntCounterVec,
    /// `release_edge_channel_rollout_percentage{channel}`: the rollout percentage of each
    /// channel's current release, as this node's policy cache holds it (100 without one).
    pub channel_rollout: IntGaugeVec,
    /// `release_edge_channel_halted{channel}`: 1 while a channel's rollout is halted.
    pub channel_halted: IntGaugeVec,
    /// `release_edge_ready`: 1 when the last readiness evaluation found an origin answering.
    pub ready: IntGauge,
    /// `release_edge_store_circuit_open`: 1 while the store's circuit breaker is open.
    pub store_circuit_open: IntGauge,
    routes: RwLock<HashMap<Box<str>, Arc<RouteMetrics>>>,
    served_handles: Handles<(&'static str, ServedKind), IntCounter>,
}

impl Metrics {
    /// Creates the metrics and registers them in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "release_edge_http_requests_total",
                "HTTP requests by matched route, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "release_edge_http_request_duration_seconds",
                "Time from request to response headers, by matched route.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )?;
        let response_bytes = IntCounterVec::new(
            Opts::new(
                "release_edge_response_bytes_total",
                "Response body bytes sent, by matched route.",
            ),
            &["route"],
        )?;
        let inflight_downloads = IntGauge::new(
            "release_edge_inflight_downloads",
            "Artifact bodies being streamed right now.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("release_edge_build_info", "Build information; always 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let update_checks = IntCounterVec::new(
            Opts::new(
                "release_edge_update_checks_total",
                "Update checks by protocol, platform, arch and outcome (update|none).",
            ),
            &["protocol", "platform", "arch", "outcome"],
        )?;
        let downloads = IntCounterVec::new(
            Opts::new(
                "release_edge_downloads_total",
                "Artifact downloads started, by channel, version, platform and arch.",
            ),
            &["channel", "version", "platform", "arch"],
        )?;
        let cache_lookups = IntCounterVec::new(
            Opts::new(
                "release_edge_cache_lookups_total",
                "Cache lookups by cache and result (hit, miss, stale).",
            ),
            &["cache", "result"],
        )?;
        let origin_requests = IntCounterVec::new(
            Opts::new(
                "release_edge_origin_requests_total",
                "Requests to the origins (store, github) by outcome.",
            ),
            &["origin", "outcome"],
        )?;
        let origin_duration = HistogramVec::new(
            HistogramOpts::new(
                "release_edge_origin_request_duration_seconds",
                "Duration of origin requests (manifest reads, metadata).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["origin"],
        )?;
        let fallback = IntCounterVec::new(
            Opts::new(
                "release_edge_fallback_total",
                "Answers served by the fallback origin or a stale copy, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(response_bytes.clone()))?;
        registry.register(Box::new(inflight_downloads.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(update_checks.clone()))?;
        registry.register(Box::new(downloads.clone()))?;
        registry.register(Box::new(cache_lookups.clone()))?;
        registry.register(Box::new(origin_requests.clone()))?;
        registry.register(Box::new(origin_duration.clone()))?;
        registry.register(Box::new(fallback.clone()))?;
        let served_bytes = IntCounterVec::new(
            Opts::new(
                "release_edge_served_bytes_total",
                "Response body bytes by origin (store, github, stale, cache) and kind (manifest, artifact, redirect).",
            ),
            &["origin", "kind"],
        )?;
        let client_versions = IntCounterVec::new(
            Opts::new(
                "release_edge_client_versions_total",
                "Answered update checks by channel and the version the client runs; versions and channels the store does not hold are `other`.",
            ),
            &["channel", "version"],
        )?;
        let admin_changes = IntCounterVec::new(
            Opts::new(
                "release_edge_admin_changes_total",
                "Changes made through the admin API, by action.",
            ),
            &["action"],
        )?;
        for action in ADMIN_ACTIONS {
            admin_changes.with_label_values(&[action]);
        }
        let cdn_purges = IntCounterVec::new(
            Opts::new(
                "release_edge_cdn_purges_total",
                "CDN purges by outcome (ok, error), after retries.",
            ),
            &["outcome"],
        )?;
        for outcome in ["ok", "error"] {
            cdn_purges.with_label_values(&[outcome]);
        }
        let channel_rollout = IntGaugeVec::new(
            Opts::new(
                "release_edge_channel_rollout_percentage",
                "Rollout percentage of each channel's current release (its release policy; 100 without one), by channel.",
            ),
            &["channel"],
        )?;
        let channel_halted = IntGaugeVec::new(
            Opts::new(
                "release_edge_channel_halted",
                "1 while a channel's rollout is halted (its release policy), by channel.",
            ),
            &["channel"],
        )?;
        let ready = IntGauge::new(
            "release_edge_ready",
            "1 when an origin answered the last readiness probe (/readyz), else 0.",
        )?;
        let store_circuit_open = IntGauge::new(
            "release_edge_store_circuit_open",
            "1 while the store's circuit breaker is open (requests skip the store), else 0.",
        )?;
        for collector in [
            Box::new(served_bytes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(client_versions.clone()),
            Box::new(admin_changes.clone()),
            Box::new(cdn_purges.clone()),
            Box::new(channel_rollout.clone()),
            Box::new(channel_halted.clone()),
            Box::new(ready.clone()),
            Box::new(store_circuit_open.clone()),
        ] {
            registry.register(collector)?;
        }
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            response_bytes,
            inflight_downloads,
            build_info,
            update_checks,
            downloads,
            cache_lookups,
            origin_requests,
            origin_duration,
            fallback,
            served_bytes,
            client_versions,
            admin_changes,
            cdn_purges,
            channel_rollout,
            channel_halted,
            ready,
            store_circuit_open,
            routes: RwLock::new(HashMap::new()),
            served_handles: Handles::new(),
        })
    }

    /// Creates at 0 the series of the configured origins that the alerts and the dashboard
    /// watch. A counter whose series first appears at 1 shows no increase to `rate()` and
    /// `increase()`, so without this the first store error, fallback or rate-limit refusal
    /// after a start would go unseen.
    pub fn init_origin_series(&self, store: bool, github: bool) {
        let mut caches = vec!["manifest"];
        if store {
            for outcome in STORE_OUTCOMES {
                self.origin_requests.with_label_values(&["store", outcome]);
            }
        }
        if github {
            for outcome in GITHUB_OUTCOMES {
                self.origin_requests.with_label_values(&["github", outcome]);
            }
            // GitHub is the only fallback: without it no request falls back.
            for reason in FallbackReason::ALL {
                self.fallback.with_label_values(&[reason.as_str()]);
            }
            caches.push("github_releases");
        }
        for cache in caches {
            for result in ["hit", "miss", "stale"] {
                self.cache_lookups.with_label_values(&[cache, result]);
            }
        }
        self.fallback.with_label_values(&["stale"]);
    }

    /// Sets the rollout gauges of `channel` (at scrape time and after a change: never on
    /// the request path). Channels come from the store's listing or a policy document, so
    /// the series are bounded.
    pub fn set_rollout(&self, channel: &str, rollout: Rollout) {
        self.channel_rollout
            .with_label_values(&[channel])
            .set(i64::from(rollout.percentage));
        self.channel_halted
            .with_label_values(&[channel])
            .set(i64::from(rollout.halted));
    }

    /// Exports `release_edge_egress_cost_per_gib` (`cost.egress_per_gib`), the price a
    /// dashboard multiplies egress by. Not called without a price, so the metric is absent
    /// rather than a misleading 0.
    pub fn export_egress_cost(&self, per_gib: f64) -> Result<(), prometheus::Error> {
        let gauge = Gauge::new(
            "release_edge_egress_cost_per_gib",
            "Configured price of one GiB of egress (cost.egress_per_gib), in the operator's currency.",
        )?;
        gauge.set(per_gib);
        self.registry.register(Box::new(gauge))
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(err) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// A guard that counts one in-flight download until it is dropped.
    pub fn download_guard(&self) -> InflightGuard {
        self.inflight_downloads.inc();
        InflightGuard(self.inflight_downloads.clone())
    }
}

/// The request metrics of one matched route, resolved once: a request costs no labelled
/// lookup in the registry, only a small map lookup of its method and status.
pub struct RouteMetrics {
    /// `release_edge_http_request_duration_seconds{route}`.
    pub duration: Histogram,
    /// `release_edge_response_bytes_total{route}`.
    pub bytes: IntCounter,
    route: Box<str>,
    requests: IntCounterVec,
    by_status: RwLock<HashMap<(&'static str, u16), IntCounter>>,
}

impl RouteMetrics {
    /// `release_edge_http_requests_total{route,method,status}` for one request.
    pub fn count(&self, method: &'static str, status: http::StatusCode) {
        let key = (method, status.as_u16());
        if let Ok(known) = self.by_status.read()
            && let Some(counter) = known.get(&key)
        {
            counter.inc();
            return;
        }
        let counter = self
            .requests
            .with_label_values(&[&self.route, method, status.as_str()]);
        counter.inc();
        if let Ok(mut known) = self.by_status.write() {
            known.insert(key, counter);
        }
    }
}

/// Handles resolved once per label values and reused (the label sets are bounded: routes,
/// methods, statuses, origins).
struct Handles<K, V> {
    known: RwLock<HashMap<K, V>>,
}

impl<K: std::hash::Hash + Eq + Copy, V: Clone> Handles<K, V> {
    fn new() -> Self {
        Self {
            known: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, key: K, make: impl FnOnce() -> V) -> V {
        if let Ok(known) = self.known.read()
            && let Some(value) = known.get(&key)
        {
            return value.clone();
        }
        let value = make();
        if let Ok(mut known) = self.known.write() {
            known.insert(key, value.clone());
        }
        value
    }
}

impl Metrics {
    /// The metrics of the matched route `route` (a route pattern, never a raw path).
    pub fn route(&self, route: &str) -> Arc<RouteMetrics> {
        if let Ok(known) = self.routes.read()
            && let Some(metrics) = known.get(route)
        {
            return metrics.clone();
        }
        let metrics = Arc::new(RouteMetrics {
            duration: self.http_duration.with_label_values(&[route]),
            bytes: self.response_bytes.with_label_values(&[route]),
            route: route.into(),
            requests: self.http_requests.clone(),
            by_status: RwLock::new(HashMap::new()),
        });
        if let Ok(mut known) = self.routes.write() {
            known.insert(route.into(), metrics.clone());
        }
        metrics
    }

    /// `release_edge_served_bytes_total{origin,kind}` for `served`.
    pub fn served(&self, served: Served) -> IntCounter {
        self.served_handles.get((served.origin, served.kind), || {
            self.served_bytes
                .with_label_values(&[served.origin, served.kind.as_str()])
        })
    }
}

/// Decrements `release_edge_inflight_downloads` when the body it lives in is dropped,
/// whether it finished or the client went away.
pub struct InflightGuard(IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_contract_names() {
        let metrics = Metrics::new().unwrap();
        metrics
            .http_requests
            .with_label_values(&["/releases/{*path}", "GET", "200"])
            .inc();
        metrics
            .http_duration
            .with_label_values(&["/healthz"])
            .observe(0.001);
        metrics
            .response_bytes
            .with_label_values(&["/healthz"])
            .inc_by(2);
        {
            let _guard = metrics.download_guard();
            assert_eq!(metrics.inflight_downloads.get(), 1);
        }
        assert_eq!(metrics.inflight_downloads.get(), 0);
        let text = metrics.render();
        for needle in [
            "release_edge_http_requests_total{method=\"GET\",route=\"/releases/{*path}\",status=\"200\"} 1",
            "release_edge_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.001\"} 1",
            "release_edge_response_bytes_total{route=\"/healthz\"} 2",
            "release_edge_inflight_downloads 0",
            "release_edge_build_info{version=\"",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn series_the_alerts_watch_exist_from_the_start() {
        let metrics = Metrics::new().unwrap();
        let text = metrics.render();
        for needle in [
            "release_edge_admin_changes_total{action=\"rollback\"} 0",
            "release_edge_admin_changes_total{action=\"yank\"} 0",
            "release_edge_cdn_purges_total{outcome=\"ok\"} 0",
            "release_edge_cdn_purges_total{outcome=\"error\"} 0",
            "release_edge_ready 0",
            "release_edge_store_circuit_open 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        // No price configured: no cost metric (a dashboard shows "no data", not 0).
        assert!(!text.contains("release_edge_egress_cost_per_gib"));
        metrics.export_egress_cost(0.085).unwrap();
        assert!(
            metrics
                .render()
                .contains("release_edge_egress_cost_per_gib 0.085"),
            "{}",
            metrics.render()
        );
    }

    #[test]
    fn origin_series_exist_only_for_configured_origins() {
        let metrics = Metrics::new().unwrap();
        metrics.init_origin_series(true, false);
        let text = metrics.render();
        for needle in [
            "release_edge_origin_requests_total{origin=\"store\",outcome=\"error\"} 0",
            "release_edge_origin_requests_total{origin=\"store\",outcome=\"timeout\"} 0",
            "release_edge_fallback_total{reason=\"stale\"} 0",
            "release_edge_cache_lookups_total{cache=\"manifest\",result=\"hit\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(!text.contains("origin=\"github\""), "{text}");
        assert!(!text.contains("github_releases"), "{text}");
        assert!(!text.contains("reason=\"circuit_open\""), "{text}");
        metrics.init_origin_series(true, true);
        let text = metrics.render();
        for needle in [
            "release_edge_origin_requests_total{origin=\"github\",outcome=\"rate_limited\"} 0",
            "release_edge_fallback_total{reason=\"circuit_open\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
