//! `GET /healthz` (the process is alive) and `GET /readyz` (the store, the
//! index and the model all answer).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;
use crate::api::HealthResponse;

/// Always 200 while the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "Alive", body = HealthResponse)))]
pub async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
        checks: BTreeMap::new(),
    })
}

/// 200 when the store, the index and the embedding model each answer a
/// small request; 503 naming what does not.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "A component is not ready", body = HealthResponse),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    let engine = state.engine();
    let mut checks = BTreeMap::new();

    let store = engine.store.collections().await.map(|_| ());
    checks.insert("store".to_string(), outcome(store));
    let index = engine.index.list_collections().await.map(|_| ());
    checks.insert("index".to_string(), outcome(index));
    let model = engine
        .embedder
        .embed(&["ready?".to_string()])
        .await
        .map(|_| ());
    checks.insert("embedding_model".to_string(), outcome(model));
    // A chat API is not called here: a probe would cost tokens on every
    // check, so an unreachable API shows only in answers (502).
    checks.insert(
        "answer_model".to_string(),
        format!(
            "ok ({}, loaded or configured; an API is not probed)",
            engine.answerer.model().id()
        ),
    );

    let ready = checks.values().all(|check| check.starts_with("ok"));
    let status = if ready { "ready" } else { "not_ready" };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(HealthResponse {
            status: status.into(),
            checks,
        }),
    )
}

fn outcome<E: std::fmt::Display>(result: Result<(), E>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(error) => error.to_string(),
    }
}
