//! Who may do what: API keys, bearer tokens (JWT), scopes, client addresses,
//! and redaction of secrets and personal data from logged text.
//!
//! The crate decides; the server enforces. A request's way through it:
//!
//! 1. [`client_address`] resolves the caller's address from the peer and
//!    `X-Forwarded-For`, believing only trusted proxies.
//! 2. [`Authenticator::authenticate`] turns the bearer value into a
//!    [`Principal`]: an API key (`gnd_…`, see [`key`]) checked against the
//!    [`AccessStore`](grounded_store::access::AccessStore), or a JWT checked
//!    by a [`JwtVerifier`]. A refusal is an [`AuthError`] that knows its
//!    HTTP status and the message a client may see.
//! 3. The route asks [`Principal::allows`] for its [`Scope`] and
//!    [`Principal::sees`] for the collection; rate limits and quotas read
//!    the principal's limits.
//! 4. Before anything is written to the prompt log, [`redact`] removes
//!    keys, tokens, emails, phone and card numbers.
//!
//! Keys are created, rotated and revoked with [`Authenticator::create_key`],
//! [`Authenticator::rotate_key`] and [`Authenticator::revoke_key`] (see
//! [`keys`]); [`parse_duration`] reads the `90d` an operator types for an
//! expiry or a grace period.
//!
//! Not here: HTTP (headers, status responses, middleware), rate limiting
//! and quota accounting, and the store's SQL.

mod authenticate;
pub mod calendar;
mod client;
mod duration;
mod error;
pub mod jwt;
pub mod key;
pub mod keys;
mod principal;
mod redact;
mod scope;

pub use authenticate::Authenticator;
pub use calendar::{check_day, unix_now, utc_day, utc_time};
pub use client::{client_address, parse_ip_block};
pub use duration::parse_duration;
pub use error::{
    AuthError, DayError, DurationError, IpBlockError, JwtError, KeyError, KeySourceError,
    MalformedKey, ScopeError,
};
pub use jwt::{JwtConfig, JwtVerifier, KeySource};
pub use key::{ApiKey, GeneratedKey, ParsedKey, generate_key, hash_secret, verify_secret};
pub use keys::{IssuedKey, KeySpec, successor};
pub use principal::{Principal, PrincipalKind};
pub use redact::redact;
pub use scope::{Scope, Scopes};
