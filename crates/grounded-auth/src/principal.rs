//! Who is calling, once authenticated: what the rest of the server decides
//! on (scopes, collections, limits), whatever the credential was.

use grounded_store::access::ApiKeyRecord;
use serde::Serialize;

use crate::scope::{Scope, Scopes};

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// An API key of ours.
    Key,
    /// A bearer token (JWT) from an OAuth 2 issuer.
    Token,
    /// Nobody: authentication is turned off.
    Anonymous,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The key id, `jwt:<subject>` for a token, or `anonymous`: what the
    /// usage ledger, the audit log and metrics name the caller by.
    pub id: String,
    pub kind: PrincipalKind,
    pub scopes: Scopes,
    /// The collections the caller may use; `None` means every collection.
    pub collections: Option<Vec<String>>,
    /// Requests per minute; `None` means the server's default.
    pub requests_per_minute: Option<u32>,
    /// Tokens per UTC day; `None` means no quota.
    pub tokens_per_day: Option<u64>,
}

impl Principal {
    /// The caller when authentication is off: every scope, every
    /// collection, the server's default rate and no quota.
    pub fn anonymous() -> Self {
        Principal {
            id: "anonymous".to_owned(),
            kind: PrincipalKind::Anonymous,
            scopes: Scopes::all(),
            collections: None,
            requests_per_minute: None,
            tokens_per_day: None,
        }
    }

    /// The principal an API key record stands for.
    ///
    /// A scope name this build does not know (one written by a newer
    /// version) is skipped with a warning, so the key gets fewer rights,
    /// never more.
    pub fn from_key_record(record: &ApiKeyRecord) -> Self {
        let scopes = record
            .scopes
            .iter()
            .filter_map(|name| match name.parse::<Scope>() {
                Ok(scope) => Some(scope),
                Err(_) => {
                    tracing::warn!(key = %record.id, scope = %name, "unknown stored scope ignored");
                    None
                }
            })
            .collect();

        Principal {
            id: record.id.clone(),
            kind: PrincipalKind::Key,
            scopes,
            collections: record.collections.clone(),
            requests_per_minute: record.requests_per_minute,
            tokens_per_day: record.tokens_per_day,
        }
    }

    /// Whether the principal holds `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(scope)
    }

    /// Whether the principal may use `collection`.
    pub fn sees(&self, collection: &str) -> bool {
        match &self.collections {
            None => true,
            Some(allowed) => allowed.iter().any(|name| name == collection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scopes: &[&str], collections: Option<&[&str]>) -> ApiKeyRecord {
        ApiKeyRecord {
            id: "abcdefghijkl".to_owned(),
            name: "test".to_owned(),
            secret_hash: String::new(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            collections: collections.map(|c| c.iter().map(|s| s.to_string()).collect()),
            allow_ips: Vec::new(),
            requests_per_minute: Some(60),
            tokens_per_day: Some(1000),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            rotated_to: None,
        }
    }

    #[test]
    fn key_principal_carries_the_record_rights() {
        let principal = Principal::from_key_record(&record(&["answer", "search"], Some(&["docs"])));

        assert_eq!(principal.id, "abcdefghijkl");
        assert_eq!(principal.kind, PrincipalKind::Key);
        assert!(principal.allows(Scope::Search));
        assert!(principal.allows(Scope::Answer));
        assert!(!principal.allows(Scope::Ingest));
        assert!(!principal.allows(Scope::Admin));
        assert!(principal.sees("docs"));
        assert!(!principal.sees("other"));
        assert_eq!(principal.requests_per_minute, Some(60));
        assert_eq!(principal.tokens_per_day, Some(1000));
    }

    #[test]
    fn admin_does_not_imply_other_scopes() {
        let principal = Principal::from_key_record(&record(&["admin"], None));

        assert!(principal.allows(Scope::Admin));
        assert!(!principal.allows(Scope::Search));
    }

    #[test]
    fn no_collection_list_sees_everything_and_an_empty_one_nothing() {
        assert!(Principal::from_key_record(&record(&["search"], None)).sees("any"));
        assert!(!Principal::from_key_record(&record(&["search"], Some(&[]))).sees("any"));
    }

    #[test]
    fn unknown_stored_scopes_are_dropped() {
        let principal = Principal::from_key_record(&record(&["search", "superuser"], None));

        assert_eq!(principal.scopes, "search".parse().unwrap());
    }
}
