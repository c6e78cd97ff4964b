//! Every route of the server, in one place.

use axum::Router;
use axum::routing::get;

use crate::handlers::{self, health, latest, releases, update};
use crate::middleware;
use crate::state::AppState;

/// The public router: what `listen` serves. `/metrics` is here too unless it has its own
/// listener (`metrics_listen`).
pub fn build(state: AppState) -> Router {
    let api = Router::new()
        .route("/releases/{*path}", get(releases::get_release))
        .route("/latest", get(latest::latest))
        .route("/latest/{platform}", get(latest::latest_platform))
        .route(
            "/latest/{platform}/{arch}",
            get(latest::latest_platform_arch),
        )
        .route("/update/{platform}/{arch}/{version}", get(update::check))
        .route(
            "/update/{platform}/{arch}/{version}/{file}",
            get(update::feed_file),
        )
        .fallback(handlers::not_found);
    let api = middleware::apply(api, state.clone());

    // Health checks sit outside the heavy layers: probes every second must stay cheap.
    let mut ops = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if state.config.metrics_listen.is_none() {
        ops = ops.route("/metrics", get(health::metrics));
    }
    ops.merge(api)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state)
}

/// The router of the separate metrics listener.
pub fn metrics(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .with_state(state)
}
