//! Creating, rotating and revoking API keys: building the records the
//! store keeps, and the key string shown once.
//!
//! These functions write nothing to the audit log; the caller knows who
//! asked (a CLI user, an admin key) and records `key.created`,
//! `key.rotated` or `key.revoked` itself.

use std::time::Duration;

use grounded_store::access::ApiKeyRecord;
use ipnet::IpNet;

use crate::authenticate::Authenticator;
use crate::duration::whole_seconds;
use crate::error::KeyError;
use crate::key::{ApiKey, generate_key};
use crate::scope::Scopes;

/// What a new key may do, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// A label for people (`ci`, `alice laptop`); not unique.
    pub name: String,
    pub scopes: Scopes,
    /// The collections the key may use; `None` means every collection.
    pub collections: Option<Vec<String>>,
    /// How long the key works; `None` means until revoked.
    pub expires_in: Option<Duration>,
    /// Where the key may be used from; empty means anywhere. Parse entries
    /// with [`parse_ip_block`](crate::parse_ip_block).
    pub allow_ips: Vec<IpNet>,
    /// Requests per minute; `None` means the server's default.
    pub requests_per_minute: Option<u32>,
    /// Tokens per UTC day; `None` means no quota.
    pub tokens_per_day: Option<u64>,
}

impl KeySpec {
    /// A key named `name` with `scopes`, every collection, no expiry, from
    /// anywhere, with the server's default rate and no quota.
    pub fn new(name: impl Into<String>, scopes: Scopes) -> Self {
        KeySpec {
            name: name.into(),
            scopes,
            collections: None,
            expires_in: None,
            allow_ips: Vec::new(),
            requests_per_minute: None,
            tokens_per_day: None,
        }
    }

    /// Generates a key for this spec, created at `now`: the record to store
    /// and the key string to show once.
    ///
    /// # Errors
    /// [`KeyError::EmptyName`], [`KeyError::NoScopes`],
    /// [`KeyError::EmptyCollection`], or [`KeyError::ExpiryOutOfRange`]
    /// when `now + expires_in` does not fit in an `i64`.
    pub fn issue(&self, now: i64) -> Result<IssuedKey, KeyError> {
        self.validate()?;
        let expires_at = self.expires_in.map(|d| expiry(now, d)).transpose()?;

        let generated = generate_key();
        let record = ApiKeyRecord {
            id: generated.id,
            name: self.name.trim().to_owned(),
            secret_hash: generated.secret_hash,
            scopes: self.scopes.to_sorted_names(),
            collections: self.collections.as_deref().map(sorted_unique),
            allow_ips: self
                .allow_ips
                .iter()
                .map(|net| net.trunc().to_string())
                .collect(),
            requests_per_minute: self.requests_per_minute,
            tokens_per_day: self.tokens_per_day,
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            rotated_to: None,
        };
        Ok(IssuedKey {
            record,
            key: generated.key,
        })
    }

    fn validate(&self) -> Result<(), KeyError> {
        if self.name.trim().is_empty() {
            return Err(KeyError::EmptyName);
        }
        if self.scopes.is_empty() {
            return Err(KeyError::NoScopes);
        }
        let empty_collection = self
            .collections
            .iter()
            .flatten()
            .any(|name| name.trim().is_empty());
        if empty_collection {
            return Err(KeyError::EmptyCollection);
        }
        Ok(())
    }
}

/// A new key: what to store, and the key string to show once.
#[derive(Debug)]
pub struct IssuedKey {
    pub record: ApiKeyRecord,
    pub key: ApiKey,
}

/// The successor of `old` in a rotation at `now`: a new id and secret with
/// the same name, scopes, collections, addresses and limits. When `old`
/// expires, the successor lives as long as `old` was meant to (its
/// `expires_at - created_at`), counted from `now`.
pub fn successor(old: &ApiKeyRecord, now: i64) -> IssuedKey {
    let generated = generate_key();
    let lifetime = old
        .expires_at
        .map(|at| at.saturating_sub(old.created_at).max(0));

    let record = ApiKeyRecord {
        id: generated.id,
        secret_hash: generated.secret_hash,
        created_at: now,
        expires_at: lifetime.map(|seconds| now.saturating_add(seconds)),
        revoked_at: None,
        last_used_at: None,
        rotated_to: None,
        ..old.clone()
    };
    IssuedKey {
        record,
        key: generated.key,
    }
}

impl Authenticator {
    /// Creates and stores a key for `spec` at `now`.
    ///
    /// # Errors
    /// What [`KeySpec::issue`] refuses, or [`KeyError::Store`].
    pub async fn create_key(&self, spec: &KeySpec, now: i64) -> Result<IssuedKey, KeyError> {
        let issued = spec.issue(now)?;

        self.store.insert_key(&issued.record).await?;
        tracing::info!(key = %issued.record.id, name = %issued.record.name, "api key created");
        Ok(issued)
    }

    /// Replaces key `id` with a successor of the same rights, stored in the
    /// same transaction that makes `id` expire `grace` after `now` (or
    /// earlier, if it was due to expire sooner). Until then both keys work.
    ///
    /// # Errors
    /// [`KeyError::NotFound`], [`KeyError::Revoked`], [`KeyError::Expired`];
    /// [`KeyError::AlreadyRotated`] when `id` already has a successor (the
    /// successor is the one to rotate); [`KeyError::ExpiryOutOfRange`];
    /// [`KeyError::Store`].
    pub async fn rotate_key(
        &self,
        id: &str,
        grace: Duration,
        now: i64,
    ) -> Result<IssuedKey, KeyError> {
        let old = self.rotatable_key(id, now).await?;
        let old_expires_at = expiry(now, grace)?;

        let issued = successor(&old, now);
        let rotated = self
            .store
            .rotate_key(id, &issued.record, old_expires_at)
            .await?;
        if !rotated {
            return Err(KeyError::NotFound { id: id.to_owned() });
        }

        tracing::info!(key = %id, successor = %issued.record.id, old_expires_at, "api key rotated");
        Ok(issued)
    }

    /// Revokes key `id` at `now`; it never works again.
    ///
    /// # Errors
    /// [`KeyError::NotFound`] or [`KeyError::Store`].
    pub async fn revoke_key(&self, id: &str, now: i64) -> Result<(), KeyError> {
        if !self.store.revoke_key(id, now).await? {
            return Err(KeyError::NotFound { id: id.to_owned() });
        }
        tracing::info!(key = %id, "api key revoked");
        Ok(())
    }

    async fn rotatable_key(&self, id: &str, now: i64) -> Result<ApiKeyRecord, KeyError> {
        let record = self.store.find_key(id).await?;
        let record = record.ok_or_else(|| KeyError::NotFound { id: id.to_owned() })?;

        if record.revoked_at.is_some() {
            return Err(KeyError::Revoked { id: id.to_owned() });
        }
        if record.expires_at.is_some_and(|at| now >= at) {
            return Err(KeyError::Expired { id: id.to_owned() });
        }
        if let Some(successor) = &record.rotated_to {
            return Err(KeyError::AlreadyRotated {
                id: id.to_owned(),
                successor: successor.clone(),
            });
        }
        Ok(record)
    }
}

/// `now + duration`, or an error when it does not fit.
fn expiry(now: i64, duration: Duration) -> Result<i64, KeyError> {
    whole_seconds(duration)
        .and_then(|seconds| now.checked_add(seconds))
        .ok_or(KeyError::ExpiryOutOfRange {
            seconds: duration.as_secs(),
        })
}

fn sorted_unique(names: &[String]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| name.trim().to_owned()).collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use crate::client::parse_ip_block;
    use crate::key::ParsedKey;
    use crate::scope::Scope;

    use super::*;

    fn spec() -> KeySpec {
        KeySpec {
            collections: Some(vec![
                "web".to_owned(),
                " docs ".to_owned(),
                "web".to_owned(),
            ]),
            expires_in: Some(Duration::from_secs(3600)),
            allow_ips: vec![parse_ip_block("192.0.2.7/24").unwrap()],
            requests_per_minute: Some(30),
            tokens_per_day: Some(10_000),
            ..KeySpec::new(" ci ", [Scope::Search, Scope::Answer].into_iter().collect())
        }
    }

    #[test]
    fn issue_builds_the_record_and_a_key_that_matches_it() {
        let issued = spec().issue(1_000).unwrap();
        let record = &issued.record;

        assert_eq!(record.id, issued.key.id());
        assert_eq!(record.name, "ci");
        assert_eq!(record.scopes, ["answer", "search"]);
        assert_eq!(
            record.collections,
            Some(vec!["docs".to_owned(), "web".to_owned()])
        );
        assert_eq!(record.allow_ips, ["192.0.2.0/24"]);
        assert_eq!(record.requests_per_minute, Some(30));
        assert_eq!(record.tokens_per_day, Some(10_000));
        assert_eq!(record.created_at, 1_000);
        assert_eq!(record.expires_at, Some(4_600));
        assert_eq!(record.revoked_at, None);
        let parsed = ParsedKey::parse(issued.key.expose_secret()).unwrap();
        assert!(parsed.matches(&record.secret_hash));
    }

    #[test]
    fn issue_refuses_a_key_without_scopes_or_name() {
        let no_scopes = KeySpec::new("ci", Scopes::empty());
        let no_name = KeySpec::new("  ", Scopes::all());
        let blank_collection = KeySpec {
            collections: Some(vec![" ".to_owned()]),
            ..KeySpec::new("ci", Scopes::all())
        };

        assert!(matches!(no_scopes.issue(0), Err(KeyError::NoScopes)));
        assert!(matches!(no_name.issue(0), Err(KeyError::EmptyName)));
        assert!(matches!(
            blank_collection.issue(0),
            Err(KeyError::EmptyCollection)
        ));
    }

    #[test]
    fn issue_refuses_an_expiry_past_the_end_of_time() {
        let spec = KeySpec {
            expires_in: Some(Duration::from_secs(u64::MAX)),
            ..KeySpec::new("ci", Scopes::all())
        };

        assert!(matches!(
            spec.issue(0),
            Err(KeyError::ExpiryOutOfRange { .. })
        ));
    }

    #[test]
    fn successor_keeps_the_rights_and_the_lifetime() {
        let old = spec().issue(1_000).unwrap();

        let new = successor(&old.record, 2_000);

        assert_ne!(new.record.id, old.record.id);
        assert_ne!(new.record.secret_hash, old.record.secret_hash);
        assert_eq!(new.record.name, old.record.name);
        assert_eq!(new.record.scopes, old.record.scopes);
        assert_eq!(new.record.collections, old.record.collections);
        assert_eq!(new.record.allow_ips, old.record.allow_ips);
        assert_eq!(new.record.tokens_per_day, old.record.tokens_per_day);
        assert_eq!(new.record.created_at, 2_000);
        assert_eq!(new.record.expires_at, Some(5_600));
        assert!(
            ParsedKey::parse(new.key.expose_secret())
                .unwrap()
                .matches(&new.record.secret_hash)
        );
    }

    #[test]
    fn successor_of_a_key_without_expiry_has_none() {
        let old = KeySpec::new("ci", Scopes::all()).issue(0).unwrap();

        assert_eq!(successor(&old.record, 10).record.expires_at, None);
    }
}
