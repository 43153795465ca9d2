//! Turning a request's credential into a [`Principal`]: an API key checked
//! against the store, or a bearer token checked by a [`JwtVerifier`].
//!
//! The checks run in a fixed order: shape and checksum, lookup, secret,
//! then revocation, expiry and address. Nothing about a key's state is
//! revealed before its secret has matched. Creating, rotating and revoking
//! keys is in [`keys`](crate::keys).

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use grounded_store::access::{AccessStore, ApiKeyRecord};

use crate::client::allowed_from;
use crate::error::AuthError;
use crate::jwt::JwtVerifier;
use crate::key::{KEY_PREFIX, ParsedKey};
use crate::principal::Principal;

/// How often, at most, a key's `last_used_at` is written: a write per
/// request would serialize every request on SQLite for no gain.
const TOUCH_INTERVAL_SECONDS: i64 = 60;

/// A stored hash no secret has: what an unknown key's secret is compared
/// against, so an unknown id costs about the same time as a wrong secret.
const NO_KEY_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Authenticates requests against the key store and, optionally, an OAuth 2
/// issuer's tokens.
pub struct Authenticator {
    pub(crate) store: Arc<dyn AccessStore>,
    jwt: Option<JwtVerifier>,
}

impl Authenticator {
    /// API keys only.
    pub fn new(store: Arc<dyn AccessStore>) -> Self {
        Authenticator { store, jwt: None }
    }

    /// API keys, and bearer tokens that are not API keys verified by
    /// `verifier`.
    pub fn with_jwt(mut self, verifier: JwtVerifier) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// The store the keys live in.
    pub fn store(&self) -> &Arc<dyn AccessStore> {
        &self.store
    }

    /// Who presented `credential` (the `Authorization` value without
    /// `Bearer `) from `client` at `now` (Unix seconds).
    ///
    /// A value starting with `gnd_` is an API key; anything else is a token
    /// when a verifier is configured.
    ///
    /// # Errors
    /// Every refusal is an [`AuthError`]; see its `status()` and
    /// `public_message()` for what the client gets.
    pub async fn authenticate(
        &self,
        credential: Option<&str>,
        client: IpAddr,
        now: i64,
    ) -> Result<Principal, AuthError> {
        let credential = credential
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .ok_or(AuthError::Missing)?;

        if credential.starts_with(KEY_PREFIX) {
            return self.authenticate_key(credential, client, now).await;
        }
        match &self.jwt {
            Some(verifier) => Ok(verifier.verify(credential, now).await?),
            None => Err(AuthError::Malformed {
                reason: "not an API key",
            }),
        }
    }

    async fn authenticate_key(
        &self,
        credential: &str,
        client: IpAddr,
        now: i64,
    ) -> Result<Principal, AuthError> {
        let presented = ParsedKey::parse(credential)?;
        let id = presented.id().to_owned();

        let Some(record) = self.store.find_key(&id).await? else {
            black_box(presented.matches(black_box(NO_KEY_HASH)));
            return Err(AuthError::UnknownKey { id });
        };
        if !presented.matches(&record.secret_hash) {
            return Err(AuthError::WrongSecret { id });
        }

        check_usable(&record, client, now)?;
        self.touch(&record, now).await;
        tracing::debug!(key = %record.id, "api key accepted");
        Ok(Principal::from_key_record(&record))
    }

    /// Records the use, at most once a minute per key. A failure to record
    /// it does not refuse the request: `last_used_at` is informational.
    async fn touch(&self, record: &ApiKeyRecord, now: i64) {
        let recent = record
            .last_used_at
            .is_some_and(|at| now - at < TOUCH_INTERVAL_SECONDS);
        if recent {
            return;
        }
        if let Err(error) = self.store.touch_key(&record.id, now).await {
            tracing::warn!(key = %record.id, error = %error, "failed to record key use");
        }
    }
}

/// Refuses a key whose secret matched but that is revoked, expired, or used
/// from an address it may not be used from.
fn check_usable(record: &ApiKeyRecord, client: IpAddr, now: i64) -> Result<(), AuthError> {
    let id = || record.id.clone();

    if record.revoked_at.is_some() {
        return Err(AuthError::Revoked { id: id() });
    }
    if record.expires_at.is_some_and(|at| now >= at) {
        return Err(AuthError::Expired { id: id() });
    }
    if !allowed_from(&record.allow_ips, client) {
        return Err(AuthError::IpNotAllowed { id: id(), client });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::verify_secret;

    #[test]
    fn no_key_hash_matches_no_secret_of_ours() {
        let generated = crate::key::generate_key();
        let parsed = ParsedKey::parse(generated.key.expose_secret()).unwrap();

        assert!(!parsed.matches(NO_KEY_HASH));
        assert!(!verify_secret("", NO_KEY_HASH));
    }
}
