//! The SQLite backend of the metadata store, the embedded default.

use std::collections::{HashMap, HashSet};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use grounded_core::{
    Chunk, ChunkId, ChunkLocation, Document, DocumentId, DocumentKind, DocumentMetadata,
    DocumentState,
};
use grounded_embed::{EmbedError, Embedding, EmbeddingCache};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};
use tokio::sync::OnceCell;
use tracing::warn;
use uuid::Uuid;

use crate::error::{latest_version, migrate};
use crate::{CacheKey, CachedEmbedding, CollectionCounts, MetadataStore, StoreError, vector_bytes};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Documents, chunks and cached embeddings in one SQLite file.
///
/// SQLite serves one ingest at a time well: instead of claiming documents
/// one by one, the first claim locks the file `<database>.ingest.lock` for
/// as long as the store is open, so a second ingest of the same database
/// waits for the first to end (the operating system drops the lock of a
/// process that dies).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    location: String,
    /// `None` for an in-memory database, which no other process can reach.
    ingest_lock_path: Option<PathBuf>,
    ingest_lock: Arc<OnceCell<File>>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it if missing, and migrates it.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file cannot be opened,
    /// [`StoreError::NewerSchema`] or [`StoreError::ChangedSchema`] when it
    /// holds another schema, [`StoreError::Migrate`] when a migration fails.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        let directory = match path.parent() {
            Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
            Some(parent) => parent,
            None => Path::new("/"),
        };
        if !directory.is_dir() {
            return Err(StoreError::MissingDirectory {
                location,
                directory: directory.display().to_string(),
            });
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        // SQLite has no lock that spans a migration, so processes that start
        // together take turns through a lock file.
        let _migrating = lock_file_blocking(sibling(path, ".migrate.lock"), false).await?;
        Self::connect(options, location, Some(sibling(path, ".ingest.lock"))).await
    }

    /// Opens a private in-memory database, for tests.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|source| StoreError::Open {
                location: "memory".into(),
                source,
            })?
            .foreign_keys(true);
        Self::connect(options, "memory".into(), None).await
    }

    async fn connect(
        options: SqliteConnectOptions,
        location: String,
        ingest_lock_path: Option<PathBuf>,
    ) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                location: location.clone(),
                source,
            })?;

        migrate(&MIGRATOR, &pool, &location).await?;
        Ok(Self {
            pool,
            location,
            ingest_lock_path,
            ingest_lock: Arc::default(),
        })
    }

    /// The connection pool, for the other queries of this backend.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Takes the ingest lock of the database file, waiting while another
    /// process holds it.
    async fn lock_for_ingest(&self) -> Result<(), StoreError> {
        let Some(path) = self.ingest_lock_path.clone() else {
            return Ok(());
        };
        self.ingest_lock
            .get_or_try_init(|| lock_file_blocking(path, true))
            .await?;
        Ok(())
    }
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// [`lock_file`] on tokio's blocking pool.
async fn lock_file_blocking(path: PathBuf, tell: bool) -> Result<File, StoreError> {
    let shown = path.display().to_string();
    let locked = tokio::task::spawn_blocking(move || lock_file(&path, tell)).await;
    let locked = locked.unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
    locked.map_err(|source| StoreError::Lock {
        path: shown,
        source,
    })
}

/// Opens and locks `path`, waiting while another process holds it; says so
/// first when `tell` is set.
fn lock_file(path: &Path, tell: bool) -> std::io::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(TryLockError::Error(error)) => return Err(error),
        Err(TryLockError::WouldBlock) => {}
    }
    if tell {
        warn!(lock = %path.display(), "waiting for another ingest of this database to finish");
    }
    file.lock()?;
    Ok(file)
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn find_document(
        &self,
        collection: &str,
        source_path: &str,
    ) -> Result<Option<Document>, StoreError> {
        let row = sqlx::query(
            "SELECT id, collection, source_path, kind, content_hash, settings_hash, title, state, \
             chunk_count, metadata \
             FROM documents WHERE collection = ? AND source_path = ?",
        )
        .bind(collection)
        .bind(source_path)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| document_from_row(&row)).transpose()
    }

    async fn list_documents(&self, collection: &str) -> Result<Vec<Document>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, collection, source_path, kind, content_hash, settings_hash, title, state, \
             chunk_count, metadata \
             FROM documents WHERE collection = ? ORDER BY source_path",
        )
        .bind(collection)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(document_from_row).collect()
    }

    async fn mark_indexing(&self, document: &Document) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO documents (id, collection, source_path, kind, content_hash, title, state, \
             metadata) VALUES (?, ?, ?, ?, '', ?, 'indexing', ?) \
             ON CONFLICT (id) DO UPDATE SET state = 'indexing', \
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        )
        .bind(document.id.0.to_string())
        .bind(&document.collection)
        .bind(&document.source_path)
        .bind(document.kind.as_str())
        .bind(&document.title)
        .bind(metadata_json(&document.metadata))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn commit_document(
        &self,
        document: &Document,
        chunks: &[Chunk],
    ) -> Result<(), StoreError> {
        let id = document.id.0.to_string();
        let mut tx = self.pool.begin().await?;

        sqlx::query("DELETE FROM chunks WHERE document_id = ?")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        for chunk in chunks {
            insert_chunk(&mut tx, chunk).await?;
        }
        sqlx::query(
            "UPDATE documents SET kind = ?, content_hash = ?, settings_hash = ?, title = ?, \
             chunk_count = ?, metadata = ?, \
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
        )
        .bind(document.kind.as_str())
        .bind(&document.content_hash)
        .bind(&document.settings_hash)
        .bind(&document.title)
        .bind(chunks.len() as i64)
        .bind(metadata_json(&document.metadata))
        .bind(&id)
        .execute(&mut *tx)
        .await?;

        tx.commit().await?;
        Ok(())
    }

    async fn mark_ready(&self, document: DocumentId) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE documents SET state = 'ready', \
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
        )
        .bind(document.0.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_document(&self, document: DocumentId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM documents WHERE id = ?")
            .bind(document.0.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn document_chunks(&self, document: DocumentId) -> Result<Vec<Chunk>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, document_id, ordinal, text, text_hash, token_count, line_start, line_end, \
             section, anchor FROM chunks WHERE document_id = ? ORDER BY ordinal",
        )
        .bind(document.0.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(chunk_from_row).collect()
    }

    async fn visible_chunks(&self, ids: &[ChunkId]) -> Result<HashSet<ChunkId>, StoreError> {
        let wanted: Vec<String> = ids.iter().map(|id| id.0.to_string()).collect();
        let rows =
            sqlx::query("SELECT id FROM chunks WHERE id IN (SELECT value FROM json_each(?))")
                .bind(serde_json::to_string(&wanted).unwrap_or_default())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| parse_uuid(row.get("id"), "chunks.id").map(ChunkId))
            .collect()
    }

    async fn collection_counts(&self, collection: &str) -> Result<CollectionCounts, StoreError> {
        let row = sqlx::query(
            "SELECT \
             COUNT(*) FILTER (WHERE state = 'ready') AS ready, \
             COUNT(*) FILTER (WHERE state = 'indexing') AS indexing, \
             (SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.document_id \
              WHERE d.collection = ?1) AS chunks \
             FROM documents WHERE collection = ?1",
        )
        .bind(collection)
        .fetch_one(&self.pool)
        .await?;
        Ok(CollectionCounts {
            ready_documents: row.get::<i64, _>("ready") as u64,
            indexing_documents: row.get::<i64, _>("indexing") as u64,
            chunks: row.get::<i64, _>("chunks") as u64,
        })
    }

    async fn collections(&self) -> Result<Vec<String>, StoreError> {
        let names = sqlx::query_scalar("SELECT DISTINCT collection FROM documents ORDER BY 1")
            .fetch_all(&self.pool)
            .await?;
        Ok(names)
    }

    async fn delete_collection(&self, collection: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM documents WHERE collection = ?")
            .bind(collection)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn try_claim(&self, _document: DocumentId) -> Result<bool, StoreError> {
        self.lock_for_ingest().await?;
        Ok(true)
    }

    async fn release_claims(&self, _documents: &[DocumentId]) -> Result<(), StoreError> {
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
        let rows = sqlx::query(
            "SELECT model_id, text_hash, vector FROM embeddings \
             WHERE (model_id, text_hash) > (?, ?) ORDER BY model_id, text_hash LIMIT ?",
        )
        .bind(model_id)
        .bind(text_hash)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;

        rows.iter()
            .map(|row| {
                let bytes: Vec<u8> = row.get("vector");
                Ok(CachedEmbedding {
                    key: CacheKey {
                        model_id: row.get("model_id"),
                        text_hash: row.get("text_hash"),
                    },
                    vector: decode_vector(&bytes)?,
                })
            })
            .collect()
    }

    async fn cached_dimension(&self, model_id: &str) -> Result<Option<usize>, StoreError> {
        let dimension: Option<i64> =
            sqlx::query_scalar("SELECT dimension FROM embeddings WHERE model_id = ? LIMIT 1")
                .bind(model_id)
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
impl EmbeddingCache for SqliteStore {
    async fn get_embeddings(
        &self,
        model_id: &str,
        text_hashes: &[String],
    ) -> Result<HashMap<String, Embedding>, EmbedError> {
        let wanted = serde_json::to_string(text_hashes).unwrap_or_default();
        let rows = sqlx::query(
            "SELECT text_hash, vector FROM embeddings \
             WHERE model_id = ? AND text_hash IN (SELECT value FROM json_each(?))",
        )
        .bind(model_id)
        .bind(wanted)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from)?;

        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            let bytes: Vec<u8> = row.get("vector");
            found.insert(row.get("text_hash"), decode_vector(&bytes)?);
        }
        Ok(found)
    }

    async fn put_embeddings(
        &self,
        model_id: &str,
        entries: &[(String, Embedding)],
    ) -> Result<usize, EmbedError> {
        let sql = "INSERT INTO embeddings (model_id, text_hash, dimension, vector) \
                   VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING";
        Ok(self.write_embeddings(sql, model_id, entries).await?)
    }

    async fn replace_embeddings(
        &self,
        model_id: &str,
        entries: &[(String, Embedding)],
    ) -> Result<(), EmbedError> {
        let sql = "INSERT INTO embeddings (model_id, text_hash, dimension, vector) \
                   VALUES (?, ?, ?, ?) ON CONFLICT (model_id, text_hash) DO UPDATE \
                   SET dimension = excluded.dimension, vector = excluded.vector";
        self.write_embeddings(sql, model_id, entries).await?;
        Ok(())
    }
}

impl SqliteStore {
    /// Runs `sql`, an insert of one embedding, for every entry in one
    /// transaction; returns how many rows it changed.
    async fn write_embeddings(
        &self,
        sql: &str,
        model_id: &str,
        entries: &[(String, Embedding)],
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut changed = 0;
        for (text_hash, vector) in entries {
            changed += sqlx::query(sql)
                .bind(model_id)
                .bind(text_hash)
                .bind(vector.len() as i64)
                .bind(vector_bytes::encode(vector))
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(changed)
    }
}

async fn insert_chunk(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    chunk: &Chunk,
) -> Result<(), StoreError> {
    let section = serde_json::to_string(&chunk.location.section).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO chunks (id, document_id, ordinal, text, text_hash, token_count, \
         line_start, line_end, section, anchor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(chunk.id.0.to_string())
    .bind(chunk.document_id.0.to_string())
    .bind(chunk.ordinal as i64)
    .bind(&chunk.text)
    .bind(&chunk.text_hash)
    .bind(chunk.token_count as i64)
    .bind(chunk.location.line_start as i64)
    .bind(chunk.location.line_end as i64)
    .bind(section)
    .bind(&chunk.location.anchor)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn metadata_json(metadata: &DocumentMetadata) -> String {
    serde_json::to_string(metadata).unwrap_or_else(|_| "{}".into())
}

fn decode_vector(bytes: &[u8]) -> Result<Vec<f32>, StoreError> {
    vector_bytes::decode(bytes).ok_or_else(|| StoreError::Corrupt {
        column: "embeddings.vector",
        value: format!("{} bytes", bytes.len()),
    })
}

fn document_from_row(row: &SqliteRow) -> Result<Document, StoreError> {
    let kind: String = row.get("kind");
    let state: String = row.get("state");
    let metadata: String = row.get("metadata");
    Ok(Document {
        id: DocumentId(parse_uuid(row.get("id"), "documents.id")?),
        collection: row.get("collection"),
        source_path: row.get("source_path"),
        kind: DocumentKind::parse(&kind).ok_or(StoreError::Corrupt {
            column: "documents.kind",
            value: kind,
        })?,
        content_hash: row.get("content_hash"),
        settings_hash: row.get("settings_hash"),
        title: row.get("title"),
        state: DocumentState::parse(&state).ok_or(StoreError::Corrupt {
            column: "documents.state",
            value: state,
        })?,
        chunk_count: row.get::<i64, _>("chunk_count") as u32,
        metadata: serde_json::from_str(&metadata).map_err(|_| StoreError::Corrupt {
            column: "documents.metadata",
            value: metadata,
        })?,
    })
}

fn chunk_from_row(row: &SqliteRow) -> Result<Chunk, StoreError> {
    let section: String = row.get("section");
    Ok(Chunk {
        id: ChunkId(parse_uuid(row.get("id"), "chunks.id")?),
        document_id: DocumentId(parse_uuid(row.get("document_id"), "chunks.document_id")?),
        ordinal: row.get::<i64, _>("ordinal") as u32,
        text: row.get("text"),
        text_hash: row.get("text_hash"),
        token_count: row.get::<i64, _>("token_count") as u32,
        location: ChunkLocation {
            line_start: row.get::<i64, _>("line_start") as u32,
            line_end: row.get::<i64, _>("line_end") as u32,
            section: serde_json::from_str(&section).map_err(|_| StoreError::Corrupt {
                column: "chunks.section",
                value: section,
            })?,
            anchor: row.get("anchor"),
        },
    })
}

fn parse_uuid(value: String, column: &'static str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(&value).map_err(|_| StoreError::Corrupt { column, value })
}
