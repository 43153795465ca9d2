//! The Postgres backend of the [`AccessStore`]: API keys, the usage ledger,
//! the audit log and the prompt log, shared by every server of a database.
//!
//! Unlike the rest of this backend, queries here are runtime-checked
//! (`sqlx::query` and `query_as` with binds), not `query!` macros, so they
//! need no offline data in `.sqlx/`; the store's contract tests run every
//! one of them. Lists of a key are `text[]` columns.

use async_trait::async_trait;
use sqlx::PgExecutor;

use crate::access::{
    AccessStore, ApiKeyRecord, AuditEvent, PromptLogEntry, UsageRecord, UsageRow, insert_key_error,
    loaded_count, loaded_rate, stored_counters, stored_limits,
};
use crate::{PostgresStore, StoreError};

/// A row of `api_keys`, as the queries below select it.
#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    secret_hash: String,
    scopes: Vec<String>,
    collections: Option<Vec<String>>,
    allow_ips: Vec<String>,
    requests_per_minute: Option<i64>,
    tokens_per_day: Option<i64>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    rotated_to: Option<String>,
}

#[async_trait]
impl AccessStore for PostgresStore {
    async fn insert_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        write_key(self.pool(), key).await
    }

    async fn find_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT id, name, secret_hash, scopes, collections, allow_ips, requests_per_minute, \
             tokens_per_day, created_at, expires_at, revoked_at, last_used_at, rotated_to \
             FROM api_keys WHERE id = $1",
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
             WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1))",
        )
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(active)
    }

    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let revoked =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
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

        // LEAST skips NULL: a key that never expired now expires at the end
        // of the grace period.
        let ended = sqlx::query(
            "UPDATE api_keys SET expires_at = LEAST(expires_at, $1), rotated_to = $2 \
             WHERE id = $3",
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
        // Skipping a use no later than the recorded one spares Postgres a
        // new row version for every request of the same second.
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
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
             completion_tokens, embedding_tokens) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
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
             WHERE ($1::text IS NULL OR principal = $1) AND ($2::text IS NULL OR day >= $2) \
             ORDER BY day, principal, route, model",
        )
        .bind(principal)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(UsageRecord::try_from).collect()
    }

    async fn tokens_on_day(&self, principal: &str, day: &str) -> Result<u64, StoreError> {
        // SUM of bigint is numeric in Postgres; the cast brings it back.
        let tokens: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens + embedding_tokens), 0)::bigint \
             FROM usage WHERE principal = $1 AND day = $2",
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
             VALUES ($1, $2, $3, $4, $5)",
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
             WHERE at >= $1 ORDER BY at, id LIMIT $2",
        )
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(events)
    }

    async fn record_prompt(&self, entry: &PromptLogEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO prompt_log (at, principal, route, prompt, answer) \
             VALUES ($1, $2, $3, $4, $5)",
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
             WHERE at >= $1 ORDER BY at, id",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        Ok(entries)
    }

    async fn purge_prompts(&self, before: i64) -> Result<u64, StoreError> {
        let purged = sqlx::query("DELETE FROM prompt_log WHERE at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(purged.rows_affected())
    }
}

/// Inserts `key`, in a transaction or on its own.
async fn write_key<'e>(
    executor: impl PgExecutor<'e>,
    key: &ApiKeyRecord,
) -> Result<(), StoreError> {
    let (requests_per_minute, tokens_per_day) = stored_limits(key)?;
    sqlx::query(
        "INSERT INTO api_keys (id, name, secret_hash, scopes, collections, allow_ips, \
         requests_per_minute, tokens_per_day, created_at, expires_at, revoked_at, last_used_at, \
         rotated_to) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(&key.secret_hash)
    .bind(&key.scopes)
    .bind(&key.collections)
    .bind(&key.allow_ips)
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

impl TryFrom<KeyRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        let requests_per_minute = row
            .requests_per_minute
            .map(|rate| loaded_rate(rate, "api_keys.requests_per_minute"))
            .transpose()?;
        let tokens_per_day = row
            .tokens_per_day
            .map(|tokens| loaded_count(tokens, "api_keys.tokens_per_day"))
            .transpose()?;

        Ok(ApiKeyRecord {
            requests_per_minute,
            tokens_per_day,
            id: row.id,
            name: row.name,
            secret_hash: row.secret_hash,
            scopes: row.scopes,
            collections: row.collections,
            allow_ips: row.allow_ips,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
            rotated_to: row.rotated_to,
        })
    }
}
