//! The Postgres backend of the metadata store: several ingest workers and
//! query servers share one record of what has been ingested and one
//! embedding cache.
//!
//! Queries are checked against the schema at compile time (`sqlx::query!`;
//! the offline data lives in `.sqlx/` at the workspace root, see
//! `ARCHITECTURE.md`). Work is one statement per batch: a batch's cache
//! look-up takes every text hash as one array, and chunks and embeddings are
//! inserted with `UNNEST` over one array per column.
//!
//! Claims of documents are session advisory locks, all taken on one
//! connection kept for them: when an ingest dies, the server ends its
//! session and so its claims.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use grounded_core::{
    Chunk, ChunkId, ChunkLocation, Document, DocumentId, DocumentKind, DocumentMetadata,
    DocumentState,
};
use grounded_embed::{EmbedError, Embedding, EmbeddingCache};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::error::{latest_version, migrate};
use crate::{
    CacheKey, CachedEmbedding, CollectionCounts, MetadataStore, StoreError, redact_url,
    vector_bytes,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Connections of the pool; with the one kept for claims, a process uses at
/// most one more than this.
const POOL_CONNECTIONS: u32 = 8;

/// How long the first connection may take before the server counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a query waits for a free connection of the pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Documents, chunks and cached embeddings in a Postgres database.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// The session that holds this process's claims.
    claims: Mutex<PgConnection>,
    location: String,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…`) and migrates it.
    ///
    /// One connection is made first, with a deadline, so that a wrong or
    /// unreachable database fails at once with the server's own reason
    /// instead of after a pool's retries.
    ///
    /// # Errors
    /// [`StoreError::Open`] for a malformed URL or a refused connection,
    /// [`StoreError::ConnectTimeout`] when the server does not answer,
    /// [`StoreError::NewerSchema`] or [`StoreError::ChangedSchema`] for a
    /// database of another schema, [`StoreError::Migrate`] when a migration
    /// fails.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let location = redact_url(url);
        if !names_database(url) {
            return Err(StoreError::NoDatabaseName { location });
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|source| StoreError::Open {
                location: location.clone(),
                source,
            })?
            .application_name("grounded");

        let claims = connect_once(&options, &location).await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                location: location.clone(),
                source,
            })?;

        migrate(&MIGRATOR, &pool, &location).await?;
        Ok(Self {
            pool,
            claims: Mutex::new(claims),
            location,
        })
    }

    /// The connection pool, for the other queries of this backend.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Whether a `postgres://` URL names its database, in its path or as a
/// `dbname` parameter; without one, the connection would fall back on
/// defaults (the user's name) and could fill an unrelated database.
fn names_database(url: &str) -> bool {
    let (url, query) = url.split_once('?').unwrap_or((url, ""));
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let in_path = after_scheme
        .split_once('/')
        .is_some_and(|(_, path)| !path.trim_matches('/').is_empty());
    in_path || query.split('&').any(|pair| pair.starts_with("dbname="))
}

async fn connect_once(
    options: &PgConnectOptions,
    location: &str,
) -> Result<PgConnection, StoreError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(source)) => Err(StoreError::Open {
            location: location.to_owned(),
            source,
        }),
        Err(_) => Err(StoreError::ConnectTimeout {
            location: location.to_owned(),
            seconds: CONNECT_TIMEOUT.as_secs(),
        }),
    }
}

/// A row of `documents`, as the queries below select it.
struct DocumentRow {
    id: Uuid,
    collection: String,
    source_path: String,
    kind: String,
    content_hash: String,
    settings_hash: String,
    title: Option<String>,
    state: String,
    chunk_count: i32,
    metadata: serde_json::Value,
}

/// A row of `chunks`, as the queries below select it.
struct ChunkRow {
    id: Uuid,
    document_id: Uuid,
    ordinal: i32,
    text: String,
    text_hash: String,
    token_count: i32,
    line_start: i32,
    line_end: i32,
    section: serde_json::Value,
    anchor: Option<String>,
}

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn find_document(
        &self,
        collection: &str,
        source_path: &str,
    ) -> Result<Option<Document>, StoreError> {
        let row = sqlx::query_as!(
            DocumentRow,
            "SELECT id, collection, source_path, kind, content_hash, settings_hash, title, state, \
             chunk_count, metadata FROM documents WHERE collection = $1 AND source_path = $2",
            collection,
            source_path
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(document_from_row).transpose()
    }

    async fn list_documents(&self, collection: &str) -> Result<Vec<Document>, StoreError> {
        let rows = sqlx::query_as!(
            DocumentRow,
            "SELECT id, collection, source_path, kind, content_hash, settings_hash, title, state, \
             chunk_count, metadata FROM documents WHERE collection = $1 ORDER BY source_path",
            collection
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(document_from_row).collect()
    }

    async fn mark_indexing(&self, document: &Document) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO documents (id, collection, source_path, kind, content_hash, title, \
             state, metadata) VALUES ($1, $2, $3, $4, '', $5, 'indexing', $6) \
             ON CONFLICT (id) DO UPDATE SET state = 'indexing', updated_at = now()",
            document.id.0,
            document.collection,
            document.source_path,
            document.kind.as_str(),
            document.title,
            metadata_json(&document.metadata)
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn commit_document(
        &self,
        document: &Document,
        chunks: &[Chunk],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;

        // Commits of one document take turns, so that two writers never
        // interleave their deletes and inserts.
        sqlx::query!(
            "SELECT id FROM documents WHERE id = $1 FOR UPDATE",
            document.id.0
        )
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query!("DELETE FROM chunks WHERE document_id = $1", document.id.0)
            .execute(&mut *tx)
            .await?;
        insert_chunks(&mut tx, chunks).await?;
        sqlx::query!(
            "UPDATE documents SET kind = $2, content_hash = $3, settings_hash = $4, title = $5, \
             chunk_count = $6, metadata = $7, updated_at = now() WHERE id = $1",
            document.id.0,
            document.kind.as_str(),
            document.content_hash,
            document.settings_hash,
            document.title,
            chunks.len() as i32,
            metadata_json(&document.metadata)
        )
        .execute(&mut *tx)
        .await?;

        tx.commit().await?;
        Ok(())
    }

    async fn mark_ready(&self, document: DocumentId) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE documents SET state = 'ready', updated_at = now() WHERE id = $1",
            document.0
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_document(&self, document: DocumentId) -> Result<(), StoreError> {
        sqlx::query!("DELETE FROM documents WHERE id = $1", document.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn document_chunks(&self, document: DocumentId) -> Result<Vec<Chunk>, StoreError> {
        let rows = sqlx::query_as!(
            ChunkRow,
            "SELECT id, document_id, ordinal, text, text_hash, token_count, line_start, \
             line_end, section, anchor FROM chunks WHERE document_id = $1 ORDER BY ordinal",
            document.0
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(chunk_from_row).collect()
    }

    async fn visible_chunks(&self, ids: &[ChunkId]) -> Result<HashSet<ChunkId>, StoreError> {
        let wanted: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let found = sqlx::query_scalar!("SELECT id FROM chunks WHERE id = ANY($1)", &wanted)
            .fetch_all(&self.pool)
            .await?;
        Ok(found.into_iter().map(ChunkId).collect())
    }

    async fn collection_counts(&self, collection: &str) -> Result<CollectionCounts, StoreError> {
        let row = sqlx::query!(
            r#"SELECT
                 COUNT(*) FILTER (WHERE state = 'ready') AS "ready!",
                 COUNT(*) FILTER (WHERE state = 'indexing') AS "indexing!",
                 (SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.document_id
                  WHERE d.collection = $1) AS "chunks!"
               FROM documents WHERE collection = $1"#,
            collection
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(CollectionCounts {
            ready_documents: row.ready as u64,
            indexing_documents: row.indexing as u64,
            chunks: row.chunks as u64,
        })
    }

    async fn collections(&self) -> Result<Vec<String>, StoreError> {
        let names =
            sqlx::query_scalar!("SELECT DISTINCT collection FROM documents ORDER BY collection")
                .fetch_all(&self.pool)
                .await?;
        Ok(names)
    }

    async fn delete_collection(&self, collection: &str) -> Result<(), StoreError> {
        sqlx::query!("DELETE FROM documents WHERE collection = $1", collection)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn try_claim(&self, document: DocumentId) -> Result<bool, StoreError> {
        let mut claims = self.claims.lock().await;
        let claimed = sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_lock($1) AS "claimed!""#,
            claim_key(document)
        )
        .fetch_one(&mut *claims)
        .await?;
        Ok(claimed)
    }

    async fn release_claims(&self, documents: &[DocumentId]) -> Result<(), StoreError> {
        if documents.is_empty() {
            return Ok(());
        }
        let keys: Vec<i64> = documents.iter().map(|id| claim_key(*id)).collect();
        let mut claims = self.claims.lock().await;
        sqlx::query!(
            "SELECT pg_advisory_unlock(key) FROM UNNEST($1::int8[]) AS claims(key)",
            &keys
        )
        .fetch_all(&mut *claims)
        .await?;
        Ok(())
    }

    async fn cached_embeddings(
        &self,
        after: Option<&CacheKey>,
        limit: usize,
    ) -> Result<Vec<CachedEmbedding>, StoreError> {
        let (model_id, text_hash) = after
            .map(|key| (key.model_id.as_str(), key.text_hash.as_str()))
            .unwrap_or_default();
        let rows = sqlx::query!(
            "SELECT model_id, text_hash, vector FROM embeddings \
             WHERE (model_id, text_hash) > ($1, $2) ORDER BY model_id, text_hash LIMIT $3",
            model_id,
            text_hash,
            limit as i64
        )
        .fetch_all(&self.pool)
        .await?;

        rows.into_iter()
            .map(|row| {
                Ok(CachedEmbedding {
                    vector: decode_vector(&row.vector)?,
                    key: CacheKey {
                        model_id: row.model_id,
                        text_hash: row.text_hash,
                    },
                })
            })
            .collect()
    }

    async fn cached_dimension(&self, model_id: &str) -> Result<Option<usize>, StoreError> {
        let dimension = sqlx::query_scalar!(
            "SELECT dimension FROM embeddings WHERE model_id = $1 LIMIT 1",
            model_id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(dimension.map(|d| d as usize))
    }

    fn schema_version(&self) -> i64 {
        latest_version(&MIGRATOR)
    }

    fn location(&self) -> &str {
        &self.location
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl EmbeddingCache for PostgresStore {
    async fn get_embeddings(
        &self,
        model_id: &str,
        text_hashes: &[String],
    ) -> Result<HashMap<String, Embedding>, EmbedError> {
        let rows = sqlx::query!(
            "SELECT text_hash, vector FROM embeddings WHERE model_id = $1 AND text_hash = ANY($2)",
            model_id,
            text_hashes
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from)?;

        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            found.insert(row.text_hash, decode_vector(&row.vector)?);
        }
        Ok(found)
    }

    async fn put_embeddings(
        &self,
        model_id: &str,
        entries: &[(String, Embedding)],
    ) -> Result<usize, EmbedError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let (hashes, dimensions, vectors) = embedding_columns(entries);
        let inserted = sqlx::query!(
            "INSERT INTO embeddings (model_id, text_hash, dimension, vector) \
             SELECT $1, hash, dimension, vector \
             FROM UNNEST($2::text[], $3::int4[], $4::bytea[]) AS e(hash, dimension, vector) \
             ON CONFLICT DO NOTHING",
            model_id,
            &hashes,
            &dimensions,
            &vectors
        )
        .execute(&self.pool)
        .await
        .map_err(StoreError::from)?;
        Ok(inserted.rows_affected() as usize)
    }

    async fn replace_embeddings(
        &self,
        model_id: &str,
        entries: &[(String, Embedding)],
    ) -> Result<(), EmbedError> {
        let (hashes, dimensions, vectors) = embedding_columns(entries);
        sqlx::query!(
            "INSERT INTO embeddings (model_id, text_hash, dimension, vector) \
             SELECT $1, hash, dimension, vector \
             FROM UNNEST($2::text[], $3::int4[], $4::bytea[]) AS e(hash, dimension, vector) \
             ON CONFLICT (model_id, text_hash) \
             DO UPDATE SET dimension = excluded.dimension, vector = excluded.vector",
            model_id,
            &hashes,
            &dimensions,
            &vectors
        )
        .execute(&self.pool)
        .await
        .map_err(StoreError::from)?;
        Ok(())
    }
}

/// Embedding entries as one array per column, for `UNNEST`.
fn embedding_columns(entries: &[(String, Embedding)]) -> (Vec<String>, Vec<i32>, Vec<Vec<u8>>) {
    let hashes = entries.iter().map(|(hash, _)| hash.clone()).collect();
    let dimensions = entries.iter().map(|(_, v)| v.len() as i32).collect();
    let vectors = entries
        .iter()
        .map(|(_, vector)| vector_bytes::encode(vector))
        .collect();
    (hashes, dimensions, vectors)
}

/// Inserts chunks with one statement: one array per column, zipped by `UNNEST`.
async fn insert_chunks(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    chunks: &[Chunk],
) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = chunks.iter().map(|c| c.id.0).collect();
    let documents: Vec<Uuid> = chunks.iter().map(|c| c.document_id.0).collect();
    let ordinals: Vec<i32> = chunks.iter().map(|c| c.ordinal as i32).collect();
    let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
    let hashes: Vec<String> = chunks.iter().map(|c| c.text_hash.clone()).collect();
    let tokens: Vec<i32> = chunks.iter().map(|c| c.token_count as i32).collect();
    let starts: Vec<i32> = chunks
        .iter()
        .map(|c| c.location.line_start as i32)
        .collect();
    let ends: Vec<i32> = chunks.iter().map(|c| c.location.line_end as i32).collect();
    let sections: Vec<serde_json::Value> = chunks
        .iter()
        .map(|c| serde_json::Value::from(c.location.section.clone()))
        .collect();
    // An empty string stands for "no anchor": arrays of nullable text do not
    // pass the compile-time type check. A real anchor is never empty.
    let anchors: Vec<String> = chunks
        .iter()
        .map(|c| c.location.anchor.clone().unwrap_or_default())
        .collect();

    sqlx::query!(
        "INSERT INTO chunks (id, document_id, ordinal, text, text_hash, token_count, \
         line_start, line_end, section, anchor) \
         SELECT id, document_id, ordinal, text, text_hash, token_count, line_start, line_end, \
         section, NULLIF(anchor, '') \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::int4[], $4::text[], $5::text[], $6::int4[], \
         $7::int4[], $8::int4[], $9::jsonb[], $10::text[]) \
         AS c(id, document_id, ordinal, text, text_hash, token_count, line_start, line_end, \
         section, anchor)",
        &ids,
        &documents,
        &ordinals,
        &texts,
        &hashes,
        &tokens,
        &starts,
        &ends,
        &sections,
        &anchors
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The advisory lock key of a document: the first 8 bytes of its id, which
/// is a name-based UUID, so keys are as unlikely to collide as ids.
fn claim_key(document: DocumentId) -> i64 {
    let bytes = document.0.as_bytes();
    i64::from_be_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

fn metadata_json(metadata: &DocumentMetadata) -> serde_json::Value {
    serde_json::to_value(metadata).unwrap_or_else(|_| serde_json::json!({}))
}

fn decode_vector(bytes: &[u8]) -> Result<Vec<f32>, StoreError> {
    vector_bytes::decode(bytes).ok_or_else(|| StoreError::Corrupt {
        column: "embeddings.vector",
        value: format!("{} bytes", bytes.len()),
    })
}

fn document_from_row(row: DocumentRow) -> Result<Document, StoreError> {
    Ok(Document {
        id: DocumentId(row.id),
        kind: DocumentKind::parse(&row.kind).ok_or(StoreError::Corrupt {
            column: "documents.kind",
            value: row.kind.clone(),
        })?,
        state: DocumentState::parse(&row.state).ok_or(StoreError::Corrupt {
            column: "documents.state",
            value: row.state.clone(),
        })?,
        metadata: serde_json::from_value(row.metadata.clone()).map_err(|_| {
            StoreError::Corrupt {
                column: "documents.metadata",
                value: row.metadata.to_string(),
            }
        })?,
        collection: row.collection,
        source_path: row.source_path,
        content_hash: row.content_hash,
        settings_hash: row.settings_hash,
        title: row.title,
        chunk_count: row.chunk_count as u32,
    })
}

fn chunk_from_row(row: ChunkRow) -> Result<Chunk, StoreError> {
    let section = serde_json::from_value(row.section.clone()).map_err(|_| StoreError::Corrupt {
        column: "chunks.section",
        value: row.section.to_string(),
    })?;
    Ok(Chunk {
        id: ChunkId(row.id),
        document_id: DocumentId(row.document_id),
        ordinal: row.ordinal as u32,
        text: row.text,
        text_hash: row.text_hash,
        token_count: row.token_count as u32,
        location: ChunkLocation {
            line_start: row.line_start as u32,
            line_end: row.line_end as u32,
            section,
            anchor: row.anchor,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::names_database;

    #[test]
    fn a_url_must_name_its_database() {
        assert!(names_database("postgres://u@h:5432/grounded"));
        assert!(names_database("postgres://u@h/grounded?sslmode=require"));
        assert!(names_database("postgres://u@h/?dbname=grounded"));
        assert!(!names_database("postgres://"));
        assert!(!names_database("postgres://u@h:5432"));
        assert!(!names_database("postgres://u@h:5432/"));
        assert!(!names_database("postgres://u@h?sslmode=require"));
    }
}
