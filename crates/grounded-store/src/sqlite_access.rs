//! The SQLite backend of the [`AccessStore`]: API keys, the usage ledger,
//! the audit log and the prompt log, in the same file as the documents.
//!
//! Queries are runtime-checked (`sqlx::query` and `query_as` with binds),
//! as in the rest of this backend: the store's contract tests run every one
//! of them. Lists of a key are JSON arrays in text columns.
//!
//! A transaction here begins with a write, never with a read: one that reads
//! first and writes later can fail at once with `SQLITE_BUSY` when another
//! connection wrote in between, where a first write waits its turn.

use async_trait::async_trait;
use sqlx::SqliteExecutor;

use crate::access::{
    AccessStore, ApiKeyRecord, AuditEvent, PromptLogEntry, UsageRecord, UsageRow, insert_key_error,
    loaded_count, loaded_rate, stored_counters, stored_limits,
};
use crate::{SqliteStore, StoreError};

/// A row of `api_keys`, as the queries below select it.
#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    secret_hash: String,
    scopes: String,
    collections: Option<String>,
    allow_ips: String,
    requests_per_minute: Option<i64>,
    tokens_per_day: Option<i64>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    rotated_to: Option<String>,
}

#[async_trait]
impl AccessStore for SqliteStore {
    async fn insert_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        write_key(self.pool(), key).await
    }

    async fn find_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT id, name, secret_hash, scopes, collections, allow_ips, requests_per_minute, \
             tokens_per_day, created_at, expires_at, revoked_at, last_used_at, rotated_to \
             FROM api_keys WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(ApiKeyRecord::try_from).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT id, name, secret_hash, scopes, collections, allow_ips, requests_per_minute, \
             tokens_per_day, created_at, expires_at, revoked_at, last_used_at, rotated_to \
             FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(ApiKeyRecord::try_from).collect()
    }

    async fn has_active_keys(&self, now: i64) -> Result<bool, StoreError> {
        let active: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys \
             WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?))",
        )
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(active)
    }

    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let revoked =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
                .bind(at)
                .bind(id)
                .execute(self.pool())
                .await?;
        Ok(revoked.rows_affected() > 0)
    }

    async fn rotate_key(
        &self,
        id: &str,
        successor: &ApiKeyRecord,
        old_expires_at: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;

        // SQLite's two-argument MIN is NULL when either is, hence COALESCE.
        let ended = sqlx::query(
            "UPDATE api_keys SET expires_at = MIN(COALESCE(expires_at, ?1), ?1), rotated_to = ?2 \
             WHERE id = ?3",
        )
        .bind(old_expires_at)
        .bind(&successor.id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if ended.rows_affected() == 0 {
            return Ok(false);
        }
        write_key(&mut *tx, successor).await?;

        tx.commit().await?;
        Ok(true)
    }

    async fn touch_key(&self, id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = ?1 \
             WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)",
        )
        .bind(at)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn record_usage(&self, usage: &UsageRecord) -> Result<(), StoreError> {
        let [requests, prompt, completion, embedding] = stored_counters(usage)?;
        sqlx::query(
            "INSERT INTO usage (principal, day, route, model, requests, prompt_tokens, \
             completion_tokens, embedding_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (principal, day, route, model) DO UPDATE SET \
             requests = usage.requests + excluded.requests, \
             prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens, \
             completion_tokens = usage.completion_tokens + excluded.completion_tokens, \
             embedding_tokens = usage.embedding_tokens + excluded.embedding_tokens",
        )
        .bind(&usage.principal)
        .bind(&usage.day)
        .bind(&usage.route)
        .bind(&usage.model)
        .bind(requests)
        .bind(prompt)
        .bind(completion)
        .bind(embedding)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn usage(
        &self,
        principal: Option<&str>,
        since: Option<&str>,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let rows: Vec<UsageRow> = sqlx::query_as(
            "SELECT principal, route, model, day, requests, prompt_tokens, completion_tokens, \
             embedding_tokens FROM usage \
             WHERE (?1 IS NULL OR principal = ?1) AND (?2 IS NULL OR day >= ?2) \
             ORDER BY day, principal, route, model",
        )
        .bind(principal)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(UsageRecord::try_from).collect()
    }

    async fn tokens_on_day(&self, principal: &str, day: &str) -> Result<u64, StoreError> {
        let tokens: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens + embedding_tokens), 0) \
             FROM usage WHERE principal = ? AND day = ?",
        )
        .bind(principal)
        .bind(day)
        .fetch_one(self.pool())
        .await?;
        loaded_count(tokens, "usage tokens")
    }

    async fn record_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_events (at, kind, principal, client, detail) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(event.at)
        .bind(&event.kind)
        .bind(&event.principal)
        .bind(&event.client)
        .bind(&event.detail)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn audit_events(&self, since: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        let events = sqlx::query_as(
            "SELECT at, kind, principal, client, detail FROM audit_events \
             WHERE at >= ? ORDER BY at, id LIMIT ?",
        )
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(events)
    }

    async fn record_prompt(&self, entry: &PromptLogEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO prompt_log (at, principal, route, prompt, answer) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(entry.at)
        .bind(&entry.principal)
        .bind(&entry.route)
        .bind(&entry.prompt)
        .bind(&entry.answer)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn prompts(&self, since: i64) -> Result<Vec<PromptLogEntry>, StoreError> {
        let entries = sqlx::query_as(
            "SELECT at, principal, route, prompt, answer FROM prompt_log \
             WHERE at >= ? ORDER BY at, id",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        Ok(entries)
    }

    async fn purge_prompts(&self, before: i64) -> Result<u64, StoreError> {
        let purged = sqlx::query("DELETE FROM prompt_log WHERE at < ?")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(purged.rows_affected())
    }
}

/// Inserts `key`, in a transaction or on its own.
async fn write_key<'e>(
    executor: impl SqliteExecutor<'e>,
    key: &ApiKeyRecord,
) -> Result<(), StoreError> {
    let (requests_per_minute, tokens_per_day) = stored_limits(key)?;
    sqlx::query(
        "INSERT INTO api_keys (id, name, secret_hash, scopes, collections, allow_ips, \
         requests_per_minute, tokens_per_day, created_at, expires_at, revoked_at, last_used_at, \
         rotated_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(&key.secret_hash)
    .bind(list_json(&key.scopes))
    .bind(key.collections.as_deref().map(list_json))
    .bind(list_json(&key.allow_ips))
    .bind(requests_per_minute)
    .bind(tokens_per_day)
    .bind(key.created_at)
    .bind(key.expires_at)
    .bind(key.revoked_at)
    .bind(key.last_used_at)
    .bind(&key.rotated_to)
    .execute(executor)
    .await
    .map_err(|error| insert_key_error(error, &key.id))?;
    Ok(())
}

/// A list as the JSON array its column stores.
fn list_json(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

/// The list stored in `column` as a JSON array.
fn parse_list(json: String, column: &'static str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(&json).map_err(|_| StoreError::Corrupt {
        column,
        value: json,
    })
}

impl TryFrom<KeyRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        let collections = row
            .collections
            .map(|json| parse_list(json, "api_keys.collections"))
            .transpose()?;
        let requests_per_minute = row
            .requests_per_minute
            .map(|rate| loaded_rate(rate, "api_keys.requests_per_minute"))
            .transpose()?;
        let tokens_per_day = row
            .tokens_per_day
            .map(|tokens| loaded_count(tokens, "api_keys.tokens_per_day"))
            .transpose()?;

        Ok(ApiKeyRecord {
            scopes: parse_list(row.scopes, "api_keys.scopes")?,
            allow_ips: parse_list(row.allow_ips, "api_keys.allow_ips")?,
            collections,
            requests_per_minute,
            tokens_per_day,
            id: row.id,
            name: row.name,
            secret_hash: row.secret_hash,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
            rotated_to: row.rotated_to,
        })
    }
}
