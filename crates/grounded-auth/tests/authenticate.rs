//! The authenticator and key management against an in-memory key store.
//!
//! The SQLite and Postgres stores are tested against the store contract in
//! `grounded-store`; here the store only has to keep records faithfully,
//! so the tests can look at what authentication decides.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use grounded_auth::{
    AuthError, Authenticator, KeyError, KeySpec, PrincipalKind, Scope, Scopes, hash_secret,
    parse_ip_block,
};
use grounded_store::StoreError;
use grounded_store::access::{AccessStore, ApiKeyRecord, AuditEvent, PromptLogEntry, UsageRecord};

const NOW: i64 = 1_700_000_000;

/// Keys in a vector; usage, audit and prompts in vectors too. `fail` makes
/// every call fail, as a store that cannot be reached does.
#[derive(Default)]
pub struct MemoryStore {
    keys: Mutex<Vec<ApiKeyRecord>>,
    usage: Mutex<Vec<UsageRecord>>,
    audit: Mutex<Vec<AuditEvent>>,
    prompts: Mutex<Vec<PromptLogEntry>>,
    fail: bool,
}

impl MemoryStore {
    fn failing() -> Self {
        MemoryStore {
            fail: true,
            ..MemoryStore::default()
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.fail {
            return Err(StoreError::Corrupt {
                column: "api_keys",
                value: "store unreachable in this test".to_owned(),
            });
        }
        Ok(())
    }

    fn key(&self, id: &str) -> Option<ApiKeyRecord> {
        self.keys
            .lock()
            .unwrap()
            .iter()
            .find(|key| key.id == id)
            .cloned()
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut ApiKeyRecord)) -> bool {
        let mut keys = self.keys.lock().unwrap();
        match keys.iter_mut().find(|key| key.id == id) {
            Some(key) => {
                change(key);
                true
            }
            None => false,
        }
    }
}

#[async_trait]
impl AccessStore for MemoryStore {
    async fn insert_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.check()?;
        let mut keys = self.keys.lock().unwrap();
        assert!(
            keys.iter().all(|k| k.id != key.id),
            "duplicate key id {}",
            key.id
        );
        keys.push(key.clone());
        Ok(())
    }

    async fn find_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.check()?;
        Ok(self.key(id))
    }

    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.check()?;
        Ok(self.keys.lock().unwrap().clone())
    }

    async fn has_active_keys(&self, now: i64) -> Result<bool, StoreError> {
        self.check()?;
        let keys = self.keys.lock().unwrap();
        Ok(keys
            .iter()
            .any(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|at| now < at)))
    }

    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.check()?;
        Ok(self.update(id, |key| {
            key.revoked_at.get_or_insert(at);
        }))
    }

    async fn rotate_key(
        &self,
        id: &str,
        successor: &ApiKeyRecord,
        old_expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.check()?;
        let found = self.update(id, |key| {
            let expires_at = key
                .expires_at
                .map_or(old_expires_at, |at| at.min(old_expires_at));
            key.expires_at = Some(expires_at);
            key.rotated_to = Some(successor.id.clone());
        });
        if found {
            self.keys.lock().unwrap().push(successor.clone());
        }
        Ok(found)
    }

    async fn touch_key(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.check()?;
        self.update(id, |key| key.last_used_at = Some(at));
        Ok(())
    }

    async fn record_usage(&self, usage: &UsageRecord) -> Result<(), StoreError> {
        self.check()?;
        self.usage.lock().unwrap().push(usage.clone());
        Ok(())
    }

    async fn usage(
        &self,
        principal: Option<&str>,
        since: Option<&str>,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        self.check()?;
        let usage = self.usage.lock().unwrap();
        Ok(usage
            .iter()
            .filter(|row| principal.is_none_or(|p| row.principal == p))
            .filter(|row| since.is_none_or(|day| row.day.as_str() >= day))
            .cloned()
            .collect())
    }

    async fn tokens_on_day(&self, principal: &str, day: &str) -> Result<u64, StoreError> {
        self.check()?;
        let usage = self.usage.lock().unwrap();
        Ok(usage
            .iter()
            .filter(|row| row.principal == principal && row.day == day)
            .map(UsageRecord::tokens)
            .sum())
    }

    async fn record_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.check()?;
        self.audit.lock().unwrap().push(event.clone());
        Ok(())
    }

    async fn audit_events(&self, since: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        self.check()?;
        let audit = self.audit.lock().unwrap();
        let events = audit.iter().filter(|event| event.at >= since).cloned();
        Ok(events.take(limit as usize).collect())
    }

    async fn record_prompt(&self, entry: &PromptLogEntry) -> Result<(), StoreError> {
        self.check()?;
        self.prompts.lock().unwrap().push(entry.clone());
        Ok(())
    }

    async fn prompts(&self, since: i64) -> Result<Vec<PromptLogEntry>, StoreError> {
        self.check()?;
        let prompts = self.prompts.lock().unwrap();
        Ok(prompts
            .iter()
            .filter(|entry| entry.at >= since)
            .cloned()
            .collect())
    }

    async fn purge_prompts(&self, before: i64) -> Result<u64, StoreError> {
        self.check()?;
        let mut prompts = self.prompts.lock().unwrap();
        let count = prompts.len();
        prompts.retain(|entry| entry.at >= before);
        Ok((count - prompts.len()) as u64)
    }
}

fn ip(address: &str) -> IpAddr {
    address.parse().unwrap()
}

fn client() -> IpAddr {
    ip("198.51.100.20")
}

fn setup() -> (Arc<MemoryStore>, Authenticator) {
    let store = Arc::new(MemoryStore::default());
    let authenticator = Authenticator::new(store.clone());
    (store, authenticator)
}

fn search_answer() -> Scopes {
    [Scope::Search, Scope::Answer].into_iter().collect()
}

/// Creates a key and returns its id and whole key string.
async fn create(authenticator: &Authenticator, spec: KeySpec) -> (String, String) {
    let issued = authenticator.create_key(&spec, NOW).await.unwrap();
    (
        issued.record.id.clone(),
        issued.key.expose_secret().to_owned(),
    )
}

#[tokio::test]
async fn valid_key_gives_its_principal() {
    let (_, authenticator) = setup();
    let spec = KeySpec {
        collections: Some(vec!["docs".to_owned()]),
        requests_per_minute: Some(20),
        tokens_per_day: Some(5_000),
        ..KeySpec::new("ci", search_answer())
    };
    let (id, key) = create(&authenticator, spec).await;

    let principal = authenticator
        .authenticate(Some(&key), client(), NOW)
        .await
        .unwrap();

    assert_eq!(principal.id, id);
    assert_eq!(principal.kind, PrincipalKind::Key);
    assert!(principal.allows(Scope::Search) && principal.allows(Scope::Answer));
    assert!(!principal.allows(Scope::Admin));
    assert!(principal.sees("docs") && !principal.sees("hr"));
    assert_eq!(principal.requests_per_minute, Some(20));
    assert_eq!(principal.tokens_per_day, Some(5_000));
}

#[tokio::test]
async fn surrounding_whitespace_is_tolerated() {
    let (_, authenticator) = setup();
    let (id, key) = create(&authenticator, KeySpec::new("ci", search_answer())).await;

    let principal = authenticator
        .authenticate(Some(&format!(" {key}\t")), client(), NOW)
        .await
        .unwrap();

    assert_eq!(principal.id, id);
}

#[tokio::test]
async fn missing_credential_is_refused() {
    let (_, authenticator) = setup();

    for credential in [None, Some(""), Some("   ")] {
        let error = authenticator
            .authenticate(credential, client(), NOW)
            .await
            .unwrap_err();

        assert!(
            matches!(error, AuthError::Missing),
            "{credential:?}: {error}"
        );
        assert_eq!(error.status(), 401);
    }
}

#[tokio::test]
async fn malformed_credential_is_refused_without_a_lookup() {
    let store = Arc::new(MemoryStore::failing());
    let authenticator = Authenticator::new(store);
    let (_, good) = create(&setup().1, KeySpec::new("ci", search_answer())).await;
    let mistyped = format!(
        "{}{}",
        &good[..good.len() - 1],
        if good.ends_with('a') { 'b' } else { 'a' }
    );

    for credential in [
        mistyped.as_str(),
        "gnd_short",
        "not-a-key",
        "eyJhbGciOiJub25lIn0.e30.",
    ] {
        let error = authenticator
            .authenticate(Some(credential), client(), NOW)
            .await
            .unwrap_err();

        // The store fails every call, so reaching it would be a Store error.
        assert!(
            matches!(error, AuthError::Malformed { .. }),
            "{credential}: {error}"
        );
        assert_eq!(error.status(), 401);
    }
}

#[tokio::test]
async fn unknown_key_and_wrong_secret_look_the_same_to_the_client() {
    let (store, authenticator) = setup();
    let (id, key) = create(&authenticator, KeySpec::new("ci", search_answer())).await;
    let (_, unknown) = create(&setup().1, KeySpec::new("elsewhere", search_answer())).await;
    store.update(&id, |record| {
        record.secret_hash = hash_secret("another secret")
    });

    let unknown_error = authenticator
        .authenticate(Some(&unknown), client(), NOW)
        .await
        .unwrap_err();
    let wrong_error = authenticator
        .authenticate(Some(&key), client(), NOW)
        .await
        .unwrap_err();

    assert!(
        matches!(unknown_error, AuthError::UnknownKey { .. }),
        "{unknown_error}"
    );
    assert!(matches!(&wrong_error, AuthError::WrongSecret { id: failed } if *failed == id));
    assert_eq!(unknown_error.status(), wrong_error.status());
    assert_eq!(unknown_error.code(), wrong_error.code());
    assert_eq!(unknown_error.public_message(), wrong_error.public_message());
}

#[tokio::test]
async fn log_detail_names_the_key_but_not_the_secret() {
    let (store, authenticator) = setup();
    let (id, key) = create(&authenticator, KeySpec::new("ci", search_answer())).await;
    store.update(&id, |record| {
        record.secret_hash = hash_secret("another secret")
    });

    let error = authenticator
        .authenticate(Some(&key), client(), NOW)
        .await
        .unwrap_err();
    let secret = &key[17..];

    for shown in [
        error.to_string(),
        format!("{error:?}"),
        error.public_message().to_owned(),
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(error.to_string().contains(&id));
    assert!(!error.public_message().contains(&id));
    assert_eq!(error.key_id(), Some(id.as_str()));
}

#[tokio::test]
async fn expired_key_is_refused_from_its_expiry_on() {
    let (_, authenticator) = setup();
    let spec = KeySpec {
        expires_in: Some(Duration::from_secs(3600)),
        ..KeySpec::new("ci", search_answer())
    };
    let (_, key) = create(&authenticator, spec).await;

    let before = authenticator
        .authenticate(Some(&key), client(), NOW + 3599)
        .await;
    let at = authenticator
        .authenticate(Some(&key), client(), NOW + 3600)
        .await
        .unwrap_err();

    assert!(before.is_ok());
    assert!(matches!(at, AuthError::Expired { .. }), "{at}");
    assert_eq!(at.status(), 401);
    assert_eq!(at.code(), "key_expired");
}

#[tokio::test]
async fn revoked_key_is_refused() {
    let (_, authenticator) = setup();
    let (id, key) = create(&authenticator, KeySpec::new("ci", search_answer())).await;

    authenticator.revoke_key(&id, NOW + 10).await.unwrap();
    let error = authenticator
        .authenticate(Some(&key), client(), NOW + 20)
        .await
        .unwrap_err();

    assert!(matches!(error, AuthError::Revoked { .. }), "{error}");
    assert_eq!(error.status(), 401);
    let missing = authenticator
        .revoke_key("nosuchkeyid0", NOW)
        .await
        .unwrap_err();
    assert!(matches!(missing, KeyError::NotFound { .. }));
}

#[tokio::test]
async fn rotated_key_works_within_the_grace_period_and_not_after() {
    let (store, authenticator) = setup();
    let spec = KeySpec {
        collections: Some(vec!["docs".to_owned()]),
        ..KeySpec::new("ci", search_answer())
    };
    let (old_id, old_key) = create(&authenticator, spec).await;

    let grace = Duration::from_secs(24 * 3600);
    let rotated = authenticator
        .rotate_key(&old_id, grace, NOW + 100)
        .await
        .unwrap();
    let new_key = rotated.key.expose_secret().to_owned();
    let end_of_grace = NOW + 100 + 24 * 3600;

    let within = authenticator
        .authenticate(Some(&old_key), client(), end_of_grace - 1)
        .await;
    let after = authenticator
        .authenticate(Some(&old_key), client(), end_of_grace)
        .await;
    let successor = authenticator
        .authenticate(Some(&new_key), client(), end_of_grace)
        .await;

    assert_eq!(within.unwrap().id, old_id);
    assert!(matches!(after.unwrap_err(), AuthError::Expired { .. }));
    let successor = successor.unwrap();
    assert_eq!(successor.id, rotated.record.id);
    assert_eq!(successor.scopes, search_answer());
    assert_eq!(successor.collections, Some(vec!["docs".to_owned()]));
    let old = store.key(&old_id).unwrap();
    assert_eq!(old.rotated_to.as_deref(), Some(rotated.record.id.as_str()));
    assert_eq!(old.expires_at, Some(end_of_grace));
}

#[tokio::test]
async fn rotation_refuses_keys_it_cannot_rotate() {
    let (_, authenticator) = setup();
    let grace = Duration::from_secs(60);
    let (rotated_id, _) = create(&authenticator, KeySpec::new("a", search_answer())).await;
    let successor = authenticator
        .rotate_key(&rotated_id, grace, NOW)
        .await
        .unwrap();
    let (revoked_id, _) = create(&authenticator, KeySpec::new("b", search_answer())).await;
    authenticator.revoke_key(&revoked_id, NOW).await.unwrap();

    let again = authenticator
        .rotate_key(&rotated_id, grace, NOW)
        .await
        .unwrap_err();
    let revoked = authenticator
        .rotate_key(&revoked_id, grace, NOW)
        .await
        .unwrap_err();
    let missing = authenticator
        .rotate_key("nosuchkeyid0", grace, NOW)
        .await
        .unwrap_err();
    let expired = authenticator
        .rotate_key(&rotated_id, grace, NOW + 61)
        .await
        .unwrap_err();

    assert!(
        matches!(&again, KeyError::AlreadyRotated { successor: s, .. } if *s == successor.record.id)
    );
    assert!(matches!(revoked, KeyError::Revoked { .. }), "{revoked}");
    assert!(matches!(missing, KeyError::NotFound { .. }), "{missing}");
    assert!(matches!(expired, KeyError::Expired { .. }), "{expired}");
}

#[tokio::test]
async fn key_is_refused_outside_its_allowed_addresses() {
    let (_, authenticator) = setup();
    let spec = KeySpec {
        allow_ips: vec![
            parse_ip_block("192.0.2.0/24").unwrap(),
            parse_ip_block("2001:db8::/32").unwrap(),
        ],
        ..KeySpec::new("office", search_answer())
    };
    let (id, key) = create(&authenticator, spec).await;

    let inside = authenticator
        .authenticate(Some(&key), ip("192.0.2.44"), NOW)
        .await;
    let inside_v6 = authenticator
        .authenticate(Some(&key), ip("2001:db8::7"), NOW)
        .await;
    let outside = authenticator
        .authenticate(Some(&key), ip("203.0.113.9"), NOW)
        .await
        .unwrap_err();

    assert!(inside.is_ok() && inside_v6.is_ok());
    assert!(matches!(&outside, AuthError::IpNotAllowed { id: failed, .. } if *failed == id));
    assert_eq!(outside.status(), 403);
}

#[tokio::test]
async fn wrong_secret_is_reported_before_the_key_state() {
    // A revoked, expired key from a foreign address, presented with the
    // wrong secret, says only that the secret is wrong.
    let (store, authenticator) = setup();
    let spec = KeySpec {
        expires_in: Some(Duration::from_secs(1)),
        allow_ips: vec![parse_ip_block("192.0.2.0/24").unwrap()],
        ..KeySpec::new("ci", search_answer())
    };
    let (id, key) = create(&authenticator, spec).await;
    authenticator.revoke_key(&id, NOW).await.unwrap();
    store.update(&id, |record| {
        record.secret_hash = hash_secret("another secret")
    });

    let error = authenticator
        .authenticate(Some(&key), client(), NOW + 10)
        .await
        .unwrap_err();

    assert!(matches!(error, AuthError::WrongSecret { .. }), "{error}");
}

#[tokio::test]
async fn store_failure_is_a_503() {
    let authenticator = Authenticator::new(Arc::new(MemoryStore::failing()));
    let (_, key) = create(&setup().1, KeySpec::new("ci", search_answer())).await;

    let error = authenticator
        .authenticate(Some(&key), client(), NOW)
        .await
        .unwrap_err();

    assert!(matches!(error, AuthError::Store(_)), "{error}");
    assert_eq!(error.status(), 503);
    assert_eq!(
        error.public_message(),
        "authentication is unavailable: try again later"
    );
}

#[tokio::test]
async fn token_without_a_verifier_is_malformed() {
    let (_, authenticator) = setup();

    let error = authenticator
        .authenticate(
            Some("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"),
            client(),
            NOW,
        )
        .await
        .unwrap_err();

    assert!(matches!(error, AuthError::Malformed { .. }), "{error}");
}

#[tokio::test]
async fn use_is_recorded_at_most_once_a_minute() {
    let (store, authenticator) = setup();
    let (id, key) = create(&authenticator, KeySpec::new("ci", search_answer())).await;

    authenticator
        .authenticate(Some(&key), client(), NOW)
        .await
        .unwrap();
    authenticator
        .authenticate(Some(&key), client(), NOW + 30)
        .await
        .unwrap();
    let after_first = store.key(&id).unwrap().last_used_at;
    authenticator
        .authenticate(Some(&key), client(), NOW + 61)
        .await
        .unwrap();

    assert_eq!(after_first, Some(NOW));
    assert_eq!(store.key(&id).unwrap().last_used_at, Some(NOW + 61));
}

#[tokio::test]
async fn created_record_is_what_the_store_holds() {
    let (store, authenticator) = setup();

    let issued = authenticator
        .create_key(&KeySpec::new("ci", Scopes::all()), NOW)
        .await
        .unwrap();

    assert_eq!(store.key(&issued.record.id), Some(issued.record.clone()));
    assert_eq!(
        issued.record.scopes,
        ["admin", "answer", "ingest", "search"]
    );
    assert!(
        !issued
            .record
            .secret_hash
            .contains(&issued.key.expose_secret()[17..])
    );
    let no_scopes = authenticator
        .create_key(&KeySpec::new("ci", Scopes::empty()), NOW)
        .await;
    assert!(matches!(no_scopes, Err(KeyError::NoScopes)));
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
}
