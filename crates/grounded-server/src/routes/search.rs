//! `POST /v1/search`: the top hits for a query, with scores and locations.

use std::time::Instant;

use axum::extract::State;
use axum::{Extension, Json};
use grounded_auth::Principal;
use grounded_core::Hit;
use grounded_query::{Retriever, SearchRequest};

use crate::access::{Spend, record_spend};
use crate::api::{HitBody, Mode, Retrieval, SearchBody, SearchResponse};
use crate::error::ErrorBody;
use crate::extract::ApiJson;
use crate::{ApiError, AppState, metrics};

/// Searches a collection.
#[utoipa::path(
    post,
    path = "/v1/search",
    tag = "search",
    request_body = SearchBody,
    responses(
        (status = 200, description = "The hits, best first", body = SearchResponse),
        (status = 400, description = "Malformed JSON or an unknown field", body = ErrorBody),
        (status = 401, description = "No credential, or a bad one", body = ErrorBody),
        (status = 403, description = "The credential lacks the search scope", body = ErrorBody),
        (status = 404, description = "No such collection, or one the credential may not see", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A value out of range", body = ErrorBody),
        (status = 429, description = "The credential's rate or daily quota is spent", body = ErrorBody),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Json<SearchResponse>, ApiError> {
    let collection = state.collection(&principal, body.collection.as_deref())?;
    let retrieval = Retrieval {
        query: &body.query,
        top_k: body.top_k,
        mode: body.mode,
        filters: &body.filters,
        min_score: body.min_score,
        rrf_k: body.rrf_k,
    };
    let request = retrieval.request(&collection)?;

    let started = Instant::now();
    let hits = retrieve(&state, &request).await?;
    let took = started.elapsed();
    let spend: Vec<Spend> = query_spend(&state, body.mode, &body.query)
        .into_iter()
        .collect();
    record_spend(&state, &principal, "/v1/search", &spend).await;

    Ok(Json(SearchResponse {
        collection,
        mode: body.mode,
        hits: hits.iter().map(HitBody::from).collect(),
        took_ms: took.as_secs_f64() * 1000.0,
    }))
}

/// Runs a search and records its latency.
pub async fn retrieve(state: &AppState, request: &SearchRequest) -> Result<Vec<Hit>, ApiError> {
    let engine = state.engine();
    let retriever = Retriever::new(
        engine.embedder.as_ref(),
        engine.index.as_ref(),
        engine.store.as_ref(),
    );
    let started = Instant::now();
    let hits = retriever.search(request).await?;
    metrics::record_retrieval(request.mode.as_str(), started.elapsed());
    Ok(hits)
}

/// The tokens of embedding `query`, unless `mode` embeds nothing. A cached
/// query vector is counted all the same: the ledger measures what the
/// caller asked for, the same for every replica.
pub fn query_spend(state: &AppState, mode: Mode, query: &str) -> Option<Spend> {
    if mode == Mode::Sparse {
        return None;
    }
    let embedder = state.engine().embedder.as_ref();
    let tokens = embedder.token_counter().try_count(query).unwrap_or(0);
    Some(Spend {
        model: embedder.model_id().to_owned(),
        embedding_tokens: tokens as u64,
        ..Spend::default()
    })
}
