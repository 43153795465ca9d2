//! `GET /v1/audit`: the audit log, for a caller with the admin scope.

use axum::Json;
use axum::extract::State;
use grounded_store::access::AuditEvent;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ErrorBody;
use crate::extract::ApiQuery;
use crate::{ApiError, AppState};

/// The most events one request returns.
const MAX_EVENTS: u32 = 10_000;

/// Which events.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events at or after this Unix time (seconds).
    pub since: Option<i64>,
    /// At most this many, oldest first (default 1000, at most 10000).
    pub limit: Option<u32>,
}

/// One audit event: key management, a failed authentication, throttling,
/// a spent rate or quota. It never holds a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// `key.created`, `key.revoked`, `key.rotated`, `auth.failed`,
    /// `auth.throttled`, `rate.exceeded` or `quota.exceeded`.
    pub kind: String,
    /// The key id (or `jwt:<subject>`) concerned, when known.
    pub principal: Option<String>,
    /// The client's address, or `cli` for the command line.
    pub client: Option<String>,
    pub detail: String,
}

impl From<AuditEvent> for AuditEntry {
    fn from(event: AuditEvent) -> Self {
        Self {
            at: event.at,
            kind: event.kind,
            principal: event.principal,
            client: event.client,
            detail: event.detail,
        }
    }
}

/// The audit log's events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLog {
    pub events: Vec<AuditEntry>,
}

/// The audit log.
#[utoipa::path(get, path = "/v1/audit", tag = "access", params(AuditQuery),
    responses(
        (status = 200, description = "Events, oldest first", body = AuditLog),
        (status = 401, description = "No credential, or a bad one", body = ErrorBody),
        (status = 403, description = "The credential lacks the admin scope", body = ErrorBody),
        (status = 422, description = "A limit out of range", body = ErrorBody),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    let limit = query.limit.unwrap_or(1000);
    if !(1..=MAX_EVENTS).contains(&limit) {
        return Err(ApiError::unprocessable(format!(
            "limit must be from 1 to {MAX_EVENTS}, not {limit}"
        )));
    }
    let events = state
        .engine()
        .store
        .audit_events(query.since.unwrap_or(0), limit)
        .await?;
    Ok(Json(AuditLog {
        events: events.into_iter().map(AuditEntry::from).collect(),
    }))
}
