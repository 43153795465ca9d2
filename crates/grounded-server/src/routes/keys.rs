//! `/v1/keys`: API keys, managed by a caller with the admin scope. A key's
//! secret appears once, in the response that creates it; listings show
//! everything else.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use grounded_auth::{KeyError, KeySpec, Principal, Scopes, parse_duration, parse_ip_block};
use grounded_store::access::ApiKeyRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::{ClientAddress, now};
use crate::error::ErrorBody;
use crate::extract::ApiJson;
use crate::{ApiError, AppState};

/// A key as listed: never its secret or the secret's hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// The collections the key may use; absent means every collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<String>>,
    pub allow_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// Unix seconds, as every time here.
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    /// The key that replaced this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_to: Option<String>,
    /// `active`, `expired` or `revoked`, now.
    pub state: &'static str,
}

impl From<&ApiKeyRecord> for KeyInfo {
    fn from(record: &ApiKeyRecord) -> Self {
        let state = if record.revoked_at.is_some() {
            "revoked"
        } else if record.expires_at.is_some_and(|at| now() >= at) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: record.id.clone(),
            name: record.name.clone(),
            scopes: record.scopes.clone(),
            collections: record.collections.clone(),
            allow_ips: record.allow_ips.clone(),
            requests_per_minute: record.requests_per_minute,
            tokens_per_day: record.tokens_per_day,
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            last_used_at: record.last_used_at,
            rotated_to: record.rotated_to.clone(),
            state,
        }
    }
}

/// Every key.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    pub name: String,
    /// Any of `search`, `answer`, `ingest`, `admin`.
    pub scopes: Vec<String>,
    /// The collections the key may use; absent means every collection.
    #[serde(default)]
    pub collections: Option<Vec<String>>,
    /// How long the key works, as `90d`, `24h`, `30m`; absent means until
    /// revoked.
    #[serde(default)]
    pub expires_in: Option<String>,
    /// CIDR blocks the key may be used from; absent means anywhere.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
}

/// How to rotate a key.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyBody {
    /// How long the old key keeps working, as `24h` (the default) or `0s`.
    #[serde(default)]
    pub grace: Option<String>,
}

/// A new key: shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKey {
    /// The key to send as `Authorization: Bearer …`. It is not stored and
    /// cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub info: KeyInfo,
    /// For a rotation: when the old key stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_key_expires_at: Option<i64>,
}

/// The grace of a rotation that names none.
const DEFAULT_GRACE: &str = "24h";

/// Lists every key, revoked and expired ones included.
#[utoipa::path(get, path = "/v1/keys", tag = "access",
    responses(
        (status = 200, description = "Every key, without secrets", body = KeyList),
        (status = 401, description = "No credential, or a bad one", body = ErrorBody),
        (status = 403, description = "The credential lacks the admin scope", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>) -> Result<Json<KeyList>, ApiError> {
    let keys = state.engine().store.list_keys().await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(KeyInfo::from).collect(),
    }))
}

/// Creates a key and returns it, once.
#[utoipa::path(post, path = "/v1/keys", tag = "access", request_body = CreateKeyBody,
    responses(
        (status = 201, description = "The new key, shown once", body = NewKey),
        (status = 400, description = "Malformed JSON or an unknown field", body = ErrorBody),
        (status = 401, description = "No credential, or a bad one", body = ErrorBody),
        (status = 403, description = "The credential lacks the admin scope", body = ErrorBody),
        (status = 422, description = "A bad scope, duration or address block", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Extension(ClientAddress(client)): Extension<ClientAddress>,
    ApiJson(body): ApiJson<CreateKeyBody>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    let spec = key_spec(body)?;

    let access = state.access();
    let issued = access
        .authenticator()
        .create_key(&spec, now())
        .await
        .map_err(key_error)?;
    let detail = format!("name {:?}, scopes {}", issued.record.name, spec.scopes);
    access
        .audit("key.created", Some(&issued.record.id), client, detail)
        .await;

    let new = NewKey {
        key: issued.key.expose_secret().to_owned(),
        info: KeyInfo::from(&issued.record),
        replaced_key_expires_at: None,
    };
    Ok((StatusCode::CREATED, Json(new)))
}

/// Revokes a key at once, on every server.
#[utoipa::path(post, path = "/v1/keys/{id}/revoke", tag = "access",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No credential, or a bad one", body = ErrorBody),
        (status = 403, description = "The credential lacks the admin scope", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAddress(client)): Extension<ClientAddress>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let access = state.access();
    access
        .authenticator()
        .revoke_key(&id, now())
        .await
        .map_err(key_error)?;
    access
        .audit(
            "key.revoked",
            Some(&id),
            client,
            format!("by {}", principal.id),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a key with a new one of the same rights; the old one works
/// until its grace ends.
#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "access",
    params(("id" = String, Path, description = "The key's id")),
    request_body(content = RotateKeyBody, description = "Optional"),
    responses(
        (status = 201, description = "The new key, shown once", body = NewKey),
        (status = 401, description = "No credential, or a bad one", body = ErrorBody),
        (status = 403, description = "The credential lacks the admin scope", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 409, description = "The key is revoked, expired or already rotated", body = ErrorBody),
        (status = 422, description = "A bad grace period", body = ErrorBody),
    ))]
pub async fn rotate(
    State(state): State<AppState>,
    Extension(ClientAddress(client)): Extension<ClientAddress>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    let body = rotate_body(&body)?;
    let grace = body.grace.as_deref().unwrap_or(DEFAULT_GRACE);
    let grace =
        parse_duration(grace).map_err(|error| ApiError::unprocessable(error.to_string()))?;

    let access = state.access();
    let issued = access
        .authenticator()
        .rotate_key(&id, grace, now())
        .await
        .map_err(key_error)?;
    let detail = format!("{id} replaced by {}", issued.record.id);
    access.audit("key.rotated", Some(&id), client, detail).await;

    let new = NewKey {
        key: issued.key.expose_secret().to_owned(),
        info: KeyInfo::from(&issued.record),
        replaced_key_expires_at: Some(now() + grace.as_secs() as i64),
    };
    Ok((StatusCode::CREATED, Json(new)))
}

/// The optional body of a rotation: none, or JSON.
fn rotate_body(body: &[u8]) -> Result<RotateKeyBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RotateKeyBody::default());
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid(format!("malformed rotation body: {error}")))
}

fn key_spec(body: CreateKeyBody) -> Result<KeySpec, ApiError> {
    let unprocessable = |error: &dyn std::fmt::Display| ApiError::unprocessable(error.to_string());
    let scopes: Scopes = body
        .scopes
        .join(",")
        .parse()
        .map_err(|error| unprocessable(&error))?;
    let expires_in = body
        .expires_in
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|error| unprocessable(&error))?;
    let allow_ips = body
        .allow_ips
        .iter()
        .map(|block| parse_ip_block(block))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| unprocessable(&error))?;

    for (name, value) in [
        (
            "requests_per_minute",
            body.requests_per_minute.map(u64::from),
        ),
        ("tokens_per_day", body.tokens_per_day),
    ] {
        if value == Some(0) {
            return Err(ApiError::unprocessable(format!(
                "{name} must be at least 1; leave it out for the server's default"
            )));
        }
    }
    Ok(KeySpec {
        collections: body.collections,
        expires_in,
        allow_ips,
        requests_per_minute: body.requests_per_minute,
        tokens_per_day: body.tokens_per_day,
        ..KeySpec::new(body.name, scopes)
    })
}

fn key_error(error: KeyError) -> ApiError {
    let message = error.to_string();
    match error {
        KeyError::NotFound { .. } => ApiError::not_found(message),
        KeyError::Revoked { .. } | KeyError::Expired { .. } | KeyError::AlreadyRotated { .. } => {
            ApiError::new(StatusCode::CONFLICT, "key_not_rotatable", message)
        }
        KeyError::Store(error) => error.into(),
        _ => ApiError::unprocessable(message),
    }
}
