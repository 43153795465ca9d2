//! What access control keeps in the store: API keys (a hash of each secret,
//! never the secret), the usage ledger, the audit log and the prompt log.
//!
//! The records are plain data; what they mean (scopes, expiry, rotation
//! grace, quotas) is decided by `grounded-auth`. Times are Unix seconds,
//! UTC; days are `YYYY-MM-DD`, UTC.

use async_trait::async_trait;

use crate::StoreError;

/// One API key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The public id part of the key, unique; what `keys list`, the usage
    /// ledger, the audit log and metrics name the key by.
    pub id: String,
    pub name: String,
    /// Lowercase hex SHA-256 of the key's secret part.
    pub secret_hash: String,
    /// Scope names (`search`, `answer`, `ingest`, `admin`), sorted.
    pub scopes: Vec<String>,
    /// The collections the key may use; `None` means every collection.
    pub collections: Option<Vec<String>>,
    /// CIDR blocks the key may be used from; empty means anywhere.
    pub allow_ips: Vec<String>,
    /// Requests per minute; `None` means the server's default.
    pub requests_per_minute: Option<u32>,
    /// Tokens (prompt, completion and embedding together) per UTC day;
    /// `None` means no quota.
    pub tokens_per_day: Option<u64>,
    pub created_at: i64,
    /// From this time on the key no longer works: it works while
    /// `now < expires_at`. Rotation sets it to the end of the grace period.
    pub expires_at: Option<i64>,
    /// Set when revoked; a revoked key never works again.
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// The id of the key that replaced this one in a rotation.
    pub rotated_to: Option<String>,
}

/// One row of the usage ledger: what one key spent on one route and model
/// on one day. Recording adds to the row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRecord {
    /// The key id, or `jwt:<subject>` for a bearer token, or `anonymous`
    /// when authentication is off.
    pub principal: String,
    /// The route pattern, for example `/v1/answer`.
    pub route: String,
    /// The chat or embedding model id; empty when none was used.
    pub model: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub embedding_tokens: u64,
}

impl UsageRecord {
    /// Every token the row counts: what a daily quota is measured in.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens + self.embedding_tokens
    }
}

/// One entry of the audit log. `detail` never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    pub at: i64,
    /// For example `key.created`, `key.revoked`, `key.rotated`,
    /// `auth.failed`, `quota.exceeded`, `rate.exceeded`.
    pub kind: String,
    pub principal: Option<String>,
    /// The client's address as the server resolved it.
    pub client: Option<String>,
    pub detail: String,
}

/// One logged prompt and its answer, already redacted.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PromptLogEntry {
    pub at: i64,
    pub principal: String,
    pub route: String,
    pub prompt: String,
    pub answer: String,
}

/// Keys, usage, audit and prompts, on the same database as the documents.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores a new key. An id already taken is [`StoreError::Conflict`].
    async fn insert_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;

    /// The key with this id, revoked and expired ones included.
    async fn find_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Every key, revoked and expired ones included, oldest first.
    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Whether any key exists that is neither revoked nor expired at `now`.
    /// A key that expires at `now` has expired.
    async fn has_active_keys(&self, now: i64) -> Result<bool, StoreError>;

    /// Revokes a key at `at`; `false` when no key has this id. Revoking a
    /// revoked key keeps its first revocation time.
    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError>;

    /// In one transaction: stores `successor`, and makes the key `id`
    /// expire at `old_expires_at` (or earlier, if it already expired
    /// earlier) with `rotated_to` naming the successor. `false`, and nothing
    /// written, when no key has this id.
    async fn rotate_key(
        &self,
        id: &str,
        successor: &ApiKeyRecord,
        old_expires_at: i64,
    ) -> Result<bool, StoreError>;

    /// Records that a key was used at `at`: one indexed update, which
    /// writes nothing when the key is unknown or was last used at `at` or
    /// later.
    async fn touch_key(&self, id: &str, at: i64) -> Result<(), StoreError>;

    /// Adds `usage` to its (principal, route, model, day) row, creating it.
    async fn record_usage(&self, usage: &UsageRecord) -> Result<(), StoreError>;

    /// Ledger rows, by day then principal, route and model; only those of
    /// `principal` when given, and only days on or after `since` (a
    /// `YYYY-MM-DD`) when given.
    async fn usage(
        &self,
        principal: Option<&str>,
        since: Option<&str>,
    ) -> Result<Vec<UsageRecord>, StoreError>;

    /// The tokens `principal` spent on `day`, over every route and model.
    async fn tokens_on_day(&self, principal: &str, day: &str) -> Result<u64, StoreError>;

    /// Appends to the audit log.
    async fn record_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// Audit events at or after `since`, oldest first, at most `limit`.
    async fn audit_events(&self, since: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;

    /// Appends to the prompt log.
    async fn record_prompt(&self, entry: &PromptLogEntry) -> Result<(), StoreError>;

    /// Prompt log entries at or after `since`, oldest first.
    async fn prompts(&self, since: i64) -> Result<Vec<PromptLogEntry>, StoreError>;

    /// Deletes prompt log entries older than `before`; how many went.
    async fn purge_prompts(&self, before: i64) -> Result<u64, StoreError>;
}

// What both backends share: the databases count in signed 64-bit integers,
// the records in unsigned ones, so every count is converted on the way in
// and checked on the way out.

/// `value` as the signed integer a column stores.
pub(crate) fn stored_count(value: u64, column: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { column, value })
}

/// A count read from `column`, which must not be negative.
pub(crate) fn loaded_count(value: i64, column: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        column,
        value: value.to_string(),
    })
}

/// A requests-per-minute limit read from `column`.
pub(crate) fn loaded_rate(value: i64, column: &'static str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt {
        column,
        value: value.to_string(),
    })
}

/// A key's limits as its columns store them: requests per minute, tokens
/// per day.
pub(crate) fn stored_limits(key: &ApiKeyRecord) -> Result<(Option<i64>, Option<i64>), StoreError> {
    let rate = key.requests_per_minute.map(i64::from);
    let tokens = key
        .tokens_per_day
        .map(|tokens| stored_count(tokens, "api_keys.tokens_per_day"))
        .transpose()?;
    Ok((rate, tokens))
}

/// The failure of inserting key `id`: [`StoreError::Conflict`] when the id
/// is taken, the database's error otherwise.
pub(crate) fn insert_key_error(error: sqlx::Error, id: &str) -> StoreError {
    let taken = matches!(&error, sqlx::Error::Database(db) if db.is_unique_violation());
    if taken {
        return StoreError::Conflict {
            what: format!("API key {id}"),
        };
    }
    StoreError::Query(error)
}

/// A usage record's counters as stored, in column order: requests, prompt,
/// completion and embedding tokens.
pub(crate) fn stored_counters(usage: &UsageRecord) -> Result<[i64; 4], StoreError> {
    Ok([
        stored_count(usage.requests, "usage.requests")?,
        stored_count(usage.prompt_tokens, "usage.prompt_tokens")?,
        stored_count(usage.completion_tokens, "usage.completion_tokens")?,
        stored_count(usage.embedding_tokens, "usage.embedding_tokens")?,
    ])
}

/// A row of the usage ledger as both backends select it.
#[derive(sqlx::FromRow)]
pub(crate) struct UsageRow {
    principal: String,
    route: String,
    model: String,
    day: String,
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    embedding_tokens: i64,
}

impl TryFrom<UsageRow> for UsageRecord {
    type Error = StoreError;

    fn try_from(row: UsageRow) -> Result<Self, StoreError> {
        Ok(UsageRecord {
            requests: loaded_count(row.requests, "usage.requests")?,
            prompt_tokens: loaded_count(row.prompt_tokens, "usage.prompt_tokens")?,
            completion_tokens: loaded_count(row.completion_tokens, "usage.completion_tokens")?,
            embedding_tokens: loaded_count(row.embedding_tokens, "usage.embedding_tokens")?,
            principal: row.principal,
            route: row.route,
            model: row.model,
            day: row.day,
        })
    }
}
