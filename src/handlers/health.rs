//! Liveness, readiness and metrics: outside the heavy layers, cheap to call often.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`: 200 while the process runs.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when an origin (the store, else GitHub) answered within the
/// readiness interval, else 503.
pub async fn readyz(State(app): State<AppState>) -> Response {
    match app.is_ready().await {
        Ok(origin) => Json(json!({
            "status": "ready",
            "origin": origin,
            "origins": app.origins.describe(),
            "store_circuit_open": app.origins.circuit_open(),
        }))
        .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "no origin ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "not_ready", "message": err.to_string() })),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<AppState>) -> Response {
    app.update_health_gauges();
    crate::policy::update_gauges(&app).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
