//! Errors of providers, classed by what the caller of grounded should be told.

use std::time::Duration;

/// What kind of failure an error is, for mapping to an HTTP status: rate
/// limited (429), the provider failed or answered badly (502), the provider
/// took too long (504), grounded was asked something invalid (400), or the
/// local model could not run (500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    RateLimited,
    BadGateway,
    Timeout,
    InvalidRequest,
    Internal,
}

/// A failed provider call. Messages never hold an API key.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider kept answering 429 until the retry bound was reached.
    #[error("{provider} rate-limited the request {attempts} times (last: {message})")]
    RateLimited {
        provider: String,
        attempts: u32,
        /// The last `Retry-After` the provider sent.
        retry_after: Option<Duration>,
        message: String,
    },

    /// The provider answered with an error status that retrying did not fix
    /// or cannot fix.
    #[error("{provider} answered {status}: {message}")]
    Status {
        provider: String,
        status: u16,
        /// The `error.code` (or `error.type`) of the provider's error body.
        code: Option<String>,
        message: String,
        attempts: u32,
    },

    /// No answer in time, after the retries.
    #[error("{provider} did not answer within {timeout:?} ({attempts} attempts)")]
    Timeout {
        provider: String,
        timeout: Duration,
        attempts: u32,
    },

    /// The provider could not be reached, after the retries.
    #[error("cannot reach {provider}: {message} ({attempts} attempts)")]
    Connect {
        provider: String,
        message: String,
        attempts: u32,
    },

    /// The provider's answer did not follow its wire format, or a stream was
    /// cut off before its end.
    #[error("{provider} sent an answer that cannot be read: {message}")]
    Protocol { provider: String, message: String },

    /// A request grounded refuses before sending it (for example one larger
    /// than the token limit per minute).
    #[error("invalid request to {provider}: {message}")]
    Invalid { provider: String, message: String },

    /// The local model's files are missing or cannot be obtained.
    #[error("local model files: {0}")]
    ModelFiles(String),

    /// The local model failed while running.
    #[error("local model: {0}")]
    Local(String),
}

impl ProviderError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::RateLimited { .. } => ErrorClass::RateLimited,
            Self::Status { status: 429, .. } => ErrorClass::RateLimited,
            Self::Status { status, .. } if *status == 408 || *status == 504 => ErrorClass::Timeout,
            Self::Status { .. } | Self::Connect { .. } | Self::Protocol { .. } => {
                ErrorClass::BadGateway
            }
            Self::Timeout { .. } => ErrorClass::Timeout,
            Self::Invalid { .. } => ErrorClass::InvalidRequest,
            Self::ModelFiles(_) | Self::Local(_) => ErrorClass::Internal,
        }
    }
}
