//! Every route of the server, in one place.

use axum::Router;
use axum::handler::Handler;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, get, post};

use crate::handlers::{self, admin, health, latest, releases, sparkle, update, velopack};
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
        .route("/velopack/{base}/{file}", get(velopack::feed))
        .route("/sparkle/{channel}/appcast.xml", get(sparkle::appcast))
        .fallback(handlers::not_found);
    // The admin API is here unless it has its own listener; without tokens it is off (its
    // paths are unmatched: 404).
    let api = if state.config.admin_listen.is_none() {
        api.merge(admin_routes(&state))
    } else {
        api
    };
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

/// The admin API's routes (SPEC §2.4), behind the token check; none without tokens.
fn admin_routes(state: &AppState) -> Router<AppState> {
    if state.admin_tokens.is_empty() {
        return Router::new();
    }
    Router::new()
        .route(
            "/admin/releases",
            get(admin::releases).fallback(admin::get_only),
        )
        .route("/admin/cache/purge", admin_post(admin::purge))
        .route("/admin/rollback", admin_post(admin::rollback))
        .route(
            "/admin/channels/{channel}/policy",
            get(admin::get_policy)
                .put(admin::put_policy)
                .fallback(admin::get_or_put),
        )
        .route("/admin/channels/{channel}/halt", admin_post(admin::halt))
        .route(
            "/admin/channels/{channel}/resume",
            admin_post(admin::resume),
        )
        .route(
            "/admin/channels/{channel}/rollout",
            admin_post(admin::rollout),
        )
        .route("/admin/versions/{version}/yank", admin_post(admin::yank))
        .route(
            "/admin/versions/{version}/unyank",
            admin_post(admin::unyank),
        )
        .route("/admin/audit", get(admin::audit).fallback(admin::get_only))
        .route_layer(from_fn_with_state(state.clone(), admin::authorize))
}

/// A `POST` admin route: other methods get `405` with `Allow: POST`.
fn admin_post<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    post(handler).fallback(admin::post_only)
}

/// The router of the separate admin listener (`admin_listen`).
pub fn admin(state: AppState) -> Router {
    let routes = admin_routes(&state).fallback(handlers::not_found);
    middleware::apply(routes, state.clone())
        .route("/healthz", get(health::healthz))
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
