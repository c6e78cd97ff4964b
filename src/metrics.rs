//! Prometheus metrics (names are part of the contract, SPEC §5), in one struct that owns
//! its registry: no global statics, so every test builds its own.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Request-duration buckets, seconds: from a cached manifest answered in well under a
/// millisecond to a large download that runs for minutes (duration is time to the end of
/// the handler, i.e. to response headers; streaming time is not included).
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

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
        })
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
}
