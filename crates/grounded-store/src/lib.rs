//! The metadata store: which documents a collection holds, their chunks, and
//! the embedding cache.
//!
//! The store is the source of truth for what search may show: a chunk is
//! visible only once its document's chunks are committed here, so a point
//! left in the vector index by an interrupted ingest is never returned. One
//! backend per file: [`SqliteStore`] is the embedded default,
//! [`PostgresStore`] the shared one for teams; [`open_store`] picks one by
//! database URL. Both also keep what access control needs
//! ([`AccessStore`]: API keys, usage, audit and prompt logs), each in its own
//! `*_access.rs` file.

pub mod access;
mod error;
mod open;
mod postgres;
mod postgres_access;
pub mod scratch;
mod sqlite;
mod sqlite_access;
pub mod vector_bytes;

pub use access::{AccessStore, ApiKeyRecord, AuditEvent, PromptLogEntry, UsageRecord};
pub use error::StoreError;
pub use open::{open_store, redact_url};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use std::collections::HashSet;

use async_trait::async_trait;
use grounded_core::{Chunk, ChunkId, Document, DocumentId, DocumentState};
use grounded_embed::EmbeddingCache;

/// Records documents and chunks, and caches embeddings; as an
/// [`AccessStore`], also keys, usage and the audit and prompt logs, so that
/// an `Arc<dyn MetadataStore>` upcasts to an `Arc<dyn AccessStore>`.
#[async_trait]
pub trait MetadataStore: EmbeddingCache + AccessStore {
    /// The document at `source_path` in `collection`, if recorded.
    async fn find_document(
        &self,
        collection: &str,
        source_path: &str,
    ) -> Result<Option<Document>, StoreError>;

    /// Every document of a collection, ordered by source path.
    async fn list_documents(&self, collection: &str) -> Result<Vec<Document>, StoreError>;

    /// Marks a document as being indexed, creating its record if it is new.
    ///
    /// A new document's record has an empty content hash and no chunks until
    /// [`commit_document`](Self::commit_document); an existing one keeps its
    /// committed chunks, which stay visible.
    async fn mark_indexing(&self, document: &Document) -> Result<(), StoreError>;

    /// Replaces a document's chunks and metadata in one transaction. The
    /// document stays `Indexing` until [`mark_ready`](Self::mark_ready).
    async fn commit_document(
        &self,
        document: &Document,
        chunks: &[Chunk],
    ) -> Result<(), StoreError>;

    /// Marks a document whose points all match its committed chunks.
    async fn mark_ready(&self, document: DocumentId) -> Result<(), StoreError>;

    /// Removes a document and its chunks.
    async fn delete_document(&self, document: DocumentId) -> Result<(), StoreError>;

    /// The committed chunks of a document, in order.
    async fn document_chunks(&self, document: DocumentId) -> Result<Vec<Chunk>, StoreError>;

    /// Which of `ids` are committed chunks, and so may be shown by search.
    async fn visible_chunks(&self, ids: &[ChunkId]) -> Result<HashSet<ChunkId>, StoreError>;

    /// Documents by state, and committed chunks, of a collection.
    async fn collection_counts(&self, collection: &str) -> Result<CollectionCounts, StoreError>;

    /// The names of the collections that hold documents, sorted.
    async fn collections(&self) -> Result<Vec<String>, StoreError>;

    /// Deletes every document and chunk of a collection; cached embeddings stay.
    async fn delete_collection(&self, collection: &str) -> Result<(), StoreError>;

    /// Claims a document for this process's ingest until
    /// [`release_claims`](Self::release_claims): while it holds the claim, no
    /// other process's claim of the document succeeds. `false` when another
    /// process holds it. A claim ends with the process that holds it, however
    /// that process ends.
    async fn try_claim(&self, document: DocumentId) -> Result<bool, StoreError>;

    /// Releases claims taken by [`try_claim`](Self::try_claim).
    async fn release_claims(&self, documents: &[DocumentId]) -> Result<(), StoreError>;

    /// Up to `limit` cached embeddings that sort after `after` by (model id,
    /// text hash), in that order: the whole cache, page by page.
    async fn cached_embeddings(
        &self,
        after: Option<&CacheKey>,
        limit: usize,
    ) -> Result<Vec<CachedEmbedding>, StoreError>;

    /// The dimension of the vectors cached for `model_id`, if any are.
    async fn cached_dimension(&self, model_id: &str) -> Result<Option<usize>, StoreError>;

    /// The schema version the database is migrated to.
    fn schema_version(&self) -> i64;

    /// Where the database is, with any password left out; for messages.
    fn location(&self) -> &str;

    /// Closes every connection, waiting for work in flight to finish.
    async fn close(&self);
}

/// What identifies a cached embedding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CacheKey {
    pub model_id: String,
    pub text_hash: String,
}

/// One entry of the embedding cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedEmbedding {
    pub key: CacheKey,
    pub vector: Vec<f32>,
}

/// How much a collection holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CollectionCounts {
    pub ready_documents: u64,
    pub indexing_documents: u64,
    pub chunks: u64,
}

impl CollectionCounts {
    /// The count of documents in `state`.
    pub fn documents(&self, state: DocumentState) -> u64 {
        match state {
            DocumentState::Ready => self.ready_documents,
            DocumentState::Indexing => self.indexing_documents,
        }
    }
}
