//! The crate's errors: one enum per thing that can fail, so that a caller
//! branches on a variant instead of on a message.
//!
//! `Display` is the detail for the server log: it may name a key id, a
//! token's issuer or a URL, never a secret. What a client may see is
//! [`AuthError::public_message`].

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use grounded_store::StoreError;

/// A scope name that is not one of `search`, `answer`, `ingest`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {name:?}: expected search, answer, ingest or admin")]
pub struct ScopeError {
    /// The name as given, trimmed.
    pub name: String,
}

/// A day that is not a calendar day written `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DayError {
    #[error("{value:?} is not a day: expected YYYY-MM-DD, like 2025-01-31")]
    Malformed { value: String },

    #[error("{value:?} is not a day of the calendar")]
    NotOnCalendar { value: String },
}

/// A duration that is not a whole number followed by `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "invalid duration {input:?}: expected a whole number and a unit, like 90d, 24h, 30m or 45s"
    )]
    Invalid { input: String },

    #[error("duration {input:?} is too long")]
    Overflow { input: String },
}

/// A presented API key that does not have the shape of one of ours.
///
/// The reason is for the log; it never quotes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed API key: {reason}")]
pub struct MalformedKey {
    pub reason: &'static str,
}

/// An address block that is neither a CIDR (`10.0.0.0/8`) nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address block {value:?}: expected a CIDR like 10.0.0.0/8 or an address")]
pub struct IpBlockError {
    pub value: String,
}

/// Why a request's credential was refused.
///
/// Variants name the key id where there is one, so the audit log can say
/// which key failed; none holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credential presented")]
    Missing,

    #[error("malformed credential: {reason}")]
    Malformed { reason: &'static str },

    #[error("unknown API key {id}")]
    UnknownKey { id: String },

    #[error("wrong secret for API key {id}")]
    WrongSecret { id: String },

    #[error("API key {id} is revoked")]
    Revoked { id: String },

    #[error("API key {id} expired")]
    Expired { id: String },

    #[error("API key {id} may not be used from {client}")]
    IpNotAllowed { id: String, client: IpAddr },

    #[error("bearer token refused: {0}")]
    Token(#[from] JwtError),

    #[error("failed to look up API key: {0}")]
    Store(#[from] StoreError),
}

impl AuthError {
    /// The HTTP status for this refusal: 401 when the credential is missing
    /// or bad, 403 when a good key is used from an address it may not be
    /// used from, 503 when the store or the token issuer's keys cannot be
    /// reached (the credential may be fine; retrying may help).
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing
            | Self::Malformed { .. }
            | Self::UnknownKey { .. }
            | Self::WrongSecret { .. }
            | Self::Revoked { .. }
            | Self::Expired { .. } => 401,
            Self::IpNotAllowed { .. } => 403,
            Self::Token(error) if error.is_unavailable() => 503,
            Self::Token(_) => 401,
            Self::Store(_) => 503,
        }
    }

    /// A stable machine-readable code for the client's error body.
    ///
    /// An unknown key and a wrong secret share one code, so a client cannot
    /// tell whether a key id exists.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing_credential",
            Self::Malformed { .. } | Self::UnknownKey { .. } | Self::WrongSecret { .. } => {
                "invalid_credential"
            }
            Self::Revoked { .. } => "key_revoked",
            Self::Expired { .. } => "key_expired",
            Self::IpNotAllowed { .. } => "address_not_allowed",
            Self::Token(JwtError::Expired) => "token_expired",
            Self::Token(error) if error.is_unavailable() => "auth_unavailable",
            Self::Token(_) => "invalid_token",
            Self::Store(_) => "auth_unavailable",
        }
    }

    /// What the client is told. It says no more than the client already
    /// knows: revoked, expired and address refusals come only after the
    /// secret matched (or the token's signature verified), so only the
    /// holder of the secret ever reads them.
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::Missing => "missing credential: send Authorization: Bearer <API key or token>",
            Self::Malformed { .. } | Self::UnknownKey { .. } | Self::WrongSecret { .. } => {
                "invalid API key"
            }
            Self::Revoked { .. } => "this API key was revoked",
            Self::Expired { .. } => "this API key expired",
            Self::IpNotAllowed { .. } => "this API key may not be used from this address",
            Self::Token(JwtError::Expired) => "the bearer token expired",
            Self::Token(error) if error.is_unavailable() => {
                "authentication is unavailable: try again later"
            }
            Self::Token(_) => "invalid bearer token",
            Self::Store(_) => "authentication is unavailable: try again later",
        }
    }

    /// The key id the refusal concerns, for the audit log and metrics.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Self::UnknownKey { id }
            | Self::WrongSecret { id }
            | Self::Revoked { id }
            | Self::Expired { id }
            | Self::IpNotAllowed { id, .. } => Some(id),
            Self::Missing | Self::Malformed { .. } | Self::Token(_) | Self::Store(_) => None,
        }
    }
}

impl From<MalformedKey> for AuthError {
    fn from(error: MalformedKey) -> Self {
        Self::Malformed {
            reason: error.reason,
        }
    }
}

/// Why a bearer token (JWT) was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token: {reason}")]
    Malformed { reason: String },

    #[error("token algorithm {alg:?} is not accepted")]
    AlgorithmNotAccepted { alg: String },

    #[error("no verification key {kid:?} for a {alg} token")]
    UnknownKey { kid: Option<String>, alg: String },

    #[error("token signature does not verify")]
    BadSignature,

    #[error("token expired")]
    Expired,

    #[error("token is not valid yet")]
    NotYetValid,

    #[error("token is for another audience")]
    WrongAudience,

    #[error("token is from another issuer")]
    WrongIssuer,

    #[error("token lacks the {0} claim")]
    MissingClaim(String),

    #[error("token claim {0} is malformed")]
    InvalidClaim(String),

    #[error("token verification failed: {0}")]
    Verification(jsonwebtoken::errors::Error),

    #[error("verification keys are unavailable: {0}")]
    KeysUnavailable(#[source] KeySourceError),
}

impl JwtError {
    /// Whether the failure is on the server's side (its issuer's keys could
    /// not be fetched) rather than the token's.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable(_))
    }
}

/// Why the keys that verify tokens could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error("failed to read JWKS file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error("JWKS URL {url} is not https: keys fetched in the clear can be swapped in transit")]
    InsecureUrl { url: String },

    #[error("invalid JWKS URL {url:?}")]
    InvalidUrl { url: String },

    #[error("failed to fetch JWKS from {url}: {source}")]
    Fetch { url: String, source: reqwest::Error },

    #[error("failed to fetch JWKS from {url}: HTTP {status}")]
    Status { url: String, status: u16 },

    #[error("failed to parse JWKS from {origin}: {source}")]
    Parse {
        origin: String,
        source: serde_json::Error,
    },

    #[error("JWKS from {origin} holds no RS256 or ES256 signing key")]
    NoUsableKeys { origin: String },

    #[error("the shared secret for HS256 tokens is empty")]
    EmptySecret,

    #[error("the shared secret for HS256 tokens is {len} bytes; at least 32 are needed")]
    ShortSecret { len: usize },
}

/// Why creating, rotating or revoking a key failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a key needs at least one scope")]
    NoScopes,

    #[error("a key's name must not be empty")]
    EmptyName,

    #[error("collection names must not be empty")]
    EmptyCollection,

    #[error("expiry {seconds} s from now is out of range")]
    ExpiryOutOfRange { seconds: u64 },

    #[error("no API key {id}")]
    NotFound { id: String },

    #[error("API key {id} is revoked")]
    Revoked { id: String },

    #[error("API key {id} expired: create a new key instead of rotating it")]
    Expired { id: String },

    #[error("API key {id} was already rotated to {successor}: rotate {successor} instead")]
    AlreadyRotated { id: String, successor: String },

    #[error("key store failed: {0}")]
    Store(#[from] StoreError),
}
