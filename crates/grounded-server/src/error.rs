//! The one error shape of the API: `{"error": {"code", "message"}}` with the
//! status that says whose fault it is.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use grounded_index::IndexError;
use grounded_ingest::IngestError;
use grounded_provider::{ErrorClass, ProviderError};
use grounded_query::QueryError;
use grounded_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `invalid_request` or `not_found`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request cannot be read (malformed JSON, an unknown field).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 422: the request reads, but a value is out of range or not allowed.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), code = self.code, message = %self.message, "request failed");
        }
        (self.status, Json(self.body())).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(rejection) => {
                body_rejection(rejection.status(), rejection.body_text())
            }
            other => Self::invalid(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid(rejection.body_text())
    }
}

/// A body that could not be read: too large (413) or cut off (400).
pub fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "payload_too_large",
            "the request body is larger than this server accepts",
        );
    }
    ApiError::invalid(text)
}

impl From<ProviderError> for ApiError {
    fn from(error: ProviderError) -> Self {
        let message = error.to_string();
        match error.class() {
            ErrorClass::RateLimited => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "provider_rate_limited",
                message,
            ),
            ErrorClass::BadGateway => Self::new(StatusCode::BAD_GATEWAY, "provider_error", message),
            ErrorClass::Timeout => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "provider_timeout", message)
            }
            ErrorClass::InvalidRequest => Self::unprocessable(message),
            ErrorClass::Internal => Self::internal(message),
        }
    }
}

impl From<IndexError> for ApiError {
    fn from(error: IndexError) -> Self {
        match &error {
            IndexError::CollectionNotFound(_) => Self::new(
                StatusCode::NOT_FOUND,
                "collection_not_found",
                error.to_string(),
            ),
            IndexError::InvalidFilter { .. } => Self::unprocessable(error.to_string()),
            IndexError::DimensionMismatch { .. } | IndexError::SchemaMismatch { .. } => Self::new(
                StatusCode::CONFLICT,
                "collection_mismatch",
                error.to_string(),
            ),
            _ => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "index_unavailable",
                error.to_string(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            error.to_string(),
        )
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::EmptyQuery => Self::unprocessable("the query is empty"),
            QueryError::Index(error) => error.into(),
            QueryError::Store(error) => error.into(),
            QueryError::Provider(error) => error.into(),
            QueryError::Embed(grounded_embed::EmbedError::Provider(error)) => error.into(),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Index(error) => error.into(),
            IngestError::Store(error) => error.into(),
            IngestError::Embed(grounded_embed::EmbedError::Provider(error)) => error.into(),
            other => Self::internal(other.to_string()),
        }
    }
}
