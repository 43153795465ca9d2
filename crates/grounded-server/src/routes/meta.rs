//! `GET /metrics` (Prometheus) and `GET /openapi.json` (this API described).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;

static OPENAPI_JSON: OnceLock<String> = OnceLock::new();

/// Metrics in Prometheus's text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "No credential, or a bad one (once authentication is on)", body = crate::error::ErrorBody),
        (status = 403, description = "The credential lacks the admin scope", body = crate::error::ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
}

/// The OpenAPI 3.1 document of this API, generated from the handlers.
#[utoipa::path(get, path = "/openapi.json", tag = "health", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> impl IntoResponse {
    let json = OPENAPI_JSON.get_or_init(|| {
        crate::openapi()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".into())
    });
    ([(header::CONTENT_TYPE, "application/json")], json.clone())
}
