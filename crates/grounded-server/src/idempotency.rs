//! `Idempotency-Key`: a retried request with the same key and the same
//! content gets the first one's response instead of being carried out again;
//! the same key with other content is refused.
//!
//! Responses are kept in this process's memory for a day, at most
//! [`MAX_KEYS`] of them. A restarted server, or another replica behind the
//! same load balancer, does not know the keys: a retry that reaches it is
//! carried out again. For uploads that costs no duplicate, since a document
//! is identified by its collection and path and unchanged content is not
//! embedded again, but it does cost a second ingest pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;

use crate::ApiError;

/// How long a response is replayed.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The most keys remembered; the oldest are forgotten first.
const MAX_KEYS: usize = 10_000;

/// The header that carries the key.
pub const HEADER: &str = "idempotency-key";

/// The header set on a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// A stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: StatusCode,
    pub body: Bytes,
}

#[derive(Debug)]
struct Entry {
    fingerprint: String,
    created: Instant,
    response: Option<Stored>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Entry>>>;

/// The keys seen, each behind a lock so that a retry arriving while the
/// first request runs waits for its response.
#[derive(Debug, Default)]
pub struct IdempotencyCache {
    slots: Mutex<HashMap<String, Slot>>,
}

/// What to do with a request that carries a key.
pub enum Claim {
    /// Carry it out, then [`Guard::store`] its response.
    Run(Guard),
    /// Send this response again.
    Replay(Stored),
}

/// Holds a key while its first request runs.
pub struct Guard {
    slot: tokio::sync::OwnedMutexGuard<Option<Entry>>,
    fingerprint: String,
}

impl Guard {
    /// Keeps `response` for retries; only successes are kept, so a retry
    /// of a failed request is carried out again.
    pub fn store(mut self, response: Stored) {
        if response.status.is_success() {
            *self.slot = Some(Entry {
                fingerprint: self.fingerprint,
                created: Instant::now(),
                response: Some(response),
            });
        }
    }
}

impl IdempotencyCache {
    /// Claims `key` for a request whose content hashes to `fingerprint`.
    ///
    /// # Errors
    /// 400 for a key that is empty, longer than 255 bytes or not printable
    /// ASCII; 422 when the key was used for other content.
    pub async fn claim(&self, key: &str, fingerprint: String) -> Result<Claim, ApiError> {
        validate_key(key)?;
        let slot = self.slot(key);
        let mut entry = slot.lock_owned().await;

        let expired = entry
            .as_ref()
            .is_some_and(|entry| entry.created.elapsed() > TTL);
        if expired {
            *entry = None;
        }
        match entry.as_ref() {
            Some(stored) if stored.fingerprint != fingerprint => Err(ApiError::unprocessable(
                "this Idempotency-Key was used for a request with other content; use a new key",
            )),
            Some(Entry {
                response: Some(response),
                ..
            }) => Ok(Claim::Replay(response.clone())),
            _ => Ok(Claim::Run(Guard {
                slot: entry,
                fingerprint,
            })),
        }
    }

    fn slot(&self, key: &str) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slots.len() >= MAX_KEYS && !slots.contains_key(key) {
            forget_oldest(&mut slots);
        }
        slots.entry(key.to_string()).or_default().clone()
    }
}

/// Drops expired and unused keys, and if none were, the oldest tenth.
fn forget_oldest(slots: &mut HashMap<String, Slot>) {
    let mut ages: Vec<(String, Option<Instant>)> = slots
        .iter()
        .map(|(key, slot)| {
            let created = slot
                .try_lock()
                .ok()
                .and_then(|entry| entry.as_ref().map(|e| e.created));
            (key.clone(), created)
        })
        .collect();
    ages.retain(|(_, created)| {
        created.is_some_and(|created| created.elapsed() > TTL) || created.is_none()
    });
    if ages.is_empty() {
        let mut all: Vec<(String, Instant)> = slots
            .iter()
            .filter_map(|(key, slot)| {
                let entry = slot.try_lock().ok()?;
                Some((key.clone(), entry.as_ref()?.created))
            })
            .collect();
        all.sort_by_key(|(_, created)| *created);
        all.truncate(MAX_KEYS / 10);
        ages = all
            .into_iter()
            .map(|(key, created)| (key, Some(created)))
            .collect();
    }
    for (key, _) in ages {
        slots.remove(&key);
    }
}

fn validate_key(key: &str) -> Result<(), ApiError> {
    let printable = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if key.is_empty() || key.len() > 255 || !printable {
        return Err(ApiError::invalid(
            "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &'static str) -> Stored {
        Stored {
            status: StatusCode::CREATED,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[tokio::test]
    async fn the_same_key_and_content_replays_the_first_response() {
        let cache = IdempotencyCache::default();
        let Claim::Run(guard) = cache.claim("k1", "a".into()).await.expect("claim") else {
            panic!("a new key runs");
        };
        guard.store(ok("first"));

        let Claim::Replay(stored) = cache.claim("k1", "a".into()).await.expect("claim") else {
            panic!("a used key replays");
        };
        assert_eq!(stored.body, "first");
        assert_eq!(stored.status, StatusCode::CREATED);
    }

    #[tokio::test]
    async fn other_content_under_a_used_key_is_refused() {
        let cache = IdempotencyCache::default();
        if let Claim::Run(guard) = cache.claim("k1", "a".into()).await.expect("claim") {
            guard.store(ok("first"));
        }
        let error = cache.claim("k1", "b".into()).await.err().expect("refused");
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[tokio::test]
    async fn a_failed_request_is_not_replayed_and_bad_keys_are_refused() {
        let cache = IdempotencyCache::default();
        if let Claim::Run(guard) = cache.claim("k1", "a".into()).await.expect("claim") {
            guard.store(Stored {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: Bytes::new(),
            });
        }
        assert!(matches!(
            cache.claim("k1", "a".into()).await,
            Ok(Claim::Run(_))
        ));

        for key in ["", "has space", &"x".repeat(256)] {
            let error = cache.claim(key, "a".into()).await.err().expect("refused");
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{key:?}");
        }
    }

    #[tokio::test]
    async fn a_retry_waits_for_the_first_request_to_finish() {
        let cache = Arc::new(IdempotencyCache::default());
        let Claim::Run(guard) = cache.claim("k1", "a".into()).await.expect("claim") else {
            panic!("a new key runs");
        };
        let waiting = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.claim("k1", "a".into()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the retry must wait while the first runs"
        );

        guard.store(ok("first"));
        let claim = waiting.await.expect("join").expect("claim");
        assert!(matches!(claim, Claim::Replay(stored) if stored.body == "first"));
    }
}
