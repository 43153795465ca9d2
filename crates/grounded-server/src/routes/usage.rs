//! `GET /v1/usage`: the usage ledger, for a caller with the admin scope.

use axum::Json;
use axum::extract::State;
use grounded_store::access::UsageRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ErrorBody;
use crate::extract::ApiQuery;
use crate::{ApiError, AppState};

/// Which rows of the ledger.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Only this key id (or `jwt:<subject>`).
    pub key: Option<String>,
    /// Only days on or after this one, `YYYY-MM-DD` (UTC).
    pub since: Option<String>,
}

/// One ledger row: what one caller spent on one route and model in a day.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRow {
    pub principal: String,
    pub route: String,
    pub model: String,
    pub day: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub embedding_tokens: u64,
}

impl From<UsageRecord> for UsageRow {
    fn from(row: UsageRecord) -> Self {
        Self {
            principal: row.principal,
            route: row.route,
            model: row.model,
            day: row.day,
            requests: row.requests,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            embedding_tokens: row.embedding_tokens,
        }
    }
}

/// The ledger's rows, by day.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub rows: Vec<UsageRow>,
}

/// The usage ledger.
#[utoipa::path(get, path = "/v1/usage", tag = "access", params(UsageQuery),
    responses(
        (status = 200, description = "Ledger rows by day, caller, route and model", body = UsageReport),
        (status = 401, description = "No credential, or a bad one", body = ErrorBody),
        (status = 403, description = "The credential lacks the admin scope", body = ErrorBody),
        (status = 422, description = "A malformed day", body = ErrorBody),
    ))]
pub async fn usage(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    if let Some(since) = &query.since {
        grounded_auth::check_day(since)
            .map_err(|error| ApiError::unprocessable(format!("since: {error}")))?;
    }
    let rows = state
        .engine()
        .store
        .usage(query.key.as_deref(), query.since.as_deref())
        .await?;
    Ok(Json(UsageReport {
        rows: rows.into_iter().map(UsageRow::from).collect(),
    }))
}
