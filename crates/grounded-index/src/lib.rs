//! Vector index backends: where chunk embeddings live as points, and where
//! nearest neighbours are found.
//!
//! A point's id is its chunk id; its payload carries what a hit needs to be
//! shown without a trip to the metadata store (text, source, location). The
//! metadata store stays the source of truth for which chunks exist: a caller
//! must drop hits whose chunk the store does not know (see `grounded-query`).

mod edge;
mod error;
mod filter;
mod server;
mod sparse;

pub use edge::EdgeIndex;
pub use error::IndexError;
pub use filter::{FieldMatch, PointFilter, path_prefixes};
pub use server::{ServerIndex, ServerOptions};
pub use sparse::{Bm25, SparseVector, english_bm25};

use async_trait::async_trait;
use grounded_core::{ChunkId, ChunkLocation, DocumentId, DocumentKind};
use serde::{Deserialize, Serialize};

/// The name of the dense vector in every point: the chunk's embedding.
pub const DENSE_VECTOR: &str = "dense";

/// The name of the sparse vector in every point: the chunk's BM25 term
/// weights, which the index multiplies by each term's inverse document
/// frequency at query time.
pub const SPARSE_VECTOR: &str = "bm25";

/// The reciprocal rank fusion constant used unless a query names another.
///
/// A hit at 0-based position p of one list adds 1 / (k + p) to its fused
/// score (Qdrant counts from 0, so a list's first hit adds 1 / k). On the
/// 809 BEIR SciFact train queries nDCG@10 was 0.720-0.725 for k from 2 to
/// 20, and fell to 0.715 at the literature's usual 60 and 0.720 at 1; 10 sits
/// in the middle of the flat part (see README, "Retrieval quality").
pub const DEFAULT_RRF_K: usize = 10;

/// Payload fields with a keyword index: the document id for deletes by
/// document, the others for filtered searches.
pub const INDEXED_FIELDS: [&str; 5] = [
    "document_id",
    "source_path",
    "kind",
    "tags",
    "path_prefixes",
];

/// What every point carries besides its vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointPayload {
    pub document_id: DocumentId,
    pub source_path: String,
    pub kind: DocumentKind,
    pub title: Option<String>,
    pub ordinal: u32,
    pub text: String,
    pub location: ChunkLocation,
    /// The tags its document was ingested with.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The source path and each directory above it (see [`path_prefixes`]),
    /// so that a path-prefix filter is one keyword match.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
}

/// A chunk as the index stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub id: ChunkId,
    /// The chunk's embedding, stored as [`DENSE_VECTOR`].
    pub vector: Vec<f32>,
    /// The chunk's BM25 term weights ([`Bm25::document`]), stored as [`SPARSE_VECTOR`].
    pub sparse: SparseVector,
    pub payload: PointPayload,
}

/// Which of a point's vectors a query is scored against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Cosine similarity of the embeddings.
    Dense,
    /// BM25 over the terms of query and chunk.
    Sparse,
    /// Both, fused by reciprocal rank fusion.
    #[default]
    Hybrid,
}

impl SearchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Sparse => "sparse",
            Self::Hybrid => "hybrid",
        }
    }
}

/// One query against a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub mode: SearchMode,
    /// The query's embedding; unused (and may be empty) in sparse mode.
    pub dense: Vec<f32>,
    /// The query's terms ([`Bm25::query`]); unused in dense mode.
    pub sparse: SparseVector,
    pub filter: PointFilter,
    pub limit: usize,
    /// Hits scoring below this are dropped. The score is the mode's own:
    /// cosine similarity (dense), BM25 (sparse) or the fused rank score
    /// (hybrid, at most 2 / k: first in both lists).
    pub min_score: Option<f32>,
    /// The reciprocal rank fusion constant of hybrid mode.
    pub rrf_k: usize,
}

impl Query {
    /// A dense query with no filter and no threshold.
    pub fn dense(vector: Vec<f32>, limit: usize) -> Self {
        Self {
            mode: SearchMode::Dense,
            dense: vector,
            sparse: SparseVector::default(),
            filter: PointFilter::default(),
            limit,
            min_score: None,
            rrf_k: DEFAULT_RRF_K,
        }
    }

    /// How many candidates each list of a hybrid query contributes to the fusion.
    pub fn prefetch_limit(&self) -> usize {
        (self.limit * 4).max(50)
    }
}

/// One nearest neighbour.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    pub id: ChunkId,
    pub score: f32,
    pub payload: PointPayload,
}

impl ScoredPoint {
    /// A hit whose payload arrives as a JSON object, as both backends return it.
    fn from_json(id: ChunkId, score: f32, payload: serde_json::Value) -> Result<Self, IndexError> {
        let payload = serde_json::from_value(payload).map_err(|err| IndexError::Payload {
            id: id.to_string(),
            message: err.to_string(),
        })?;
        Ok(Self { id, score, payload })
    }
}

/// The shape of a collection's vectors; checked against the embedder in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionSpec {
    pub dimension: usize,
}

/// A store of points, one collection per grounded collection.
///
/// Every method may also fail with [`IndexError::Backend`] when the backend
/// itself fails, and with [`IndexError::InvalidInput`] for a collection name
/// that is not safe as a directory name (see
/// [`grounded_core::validate_collection_name`]).
#[async_trait]
pub trait VectorIndex: Send + Sync {
    /// Creates the collection if it is missing, with a dense cosine vector of
    /// `spec.dimension` named [`DENSE_VECTOR`], a sparse vector with the IDF
    /// modifier named [`SPARSE_VECTOR`], and keyword indexes on
    /// [`INDEXED_FIELDS`].
    ///
    /// # Errors
    /// [`IndexError::DimensionMismatch`] when it exists with another dimension;
    /// [`IndexError::SchemaMismatch`] when it exists with other vector names,
    /// another distance or no IDF modifier; [`IndexError::InvalidInput`] for a
    /// dimension of zero.
    async fn ensure_collection(&self, name: &str, spec: CollectionSpec) -> Result<(), IndexError>;

    /// The names of existing collections, sorted.
    async fn list_collections(&self) -> Result<Vec<String>, IndexError>;

    /// Deletes a collection and all its points; deleting a missing one is not an error.
    async fn delete_collection(&self, name: &str) -> Result<(), IndexError>;

    /// Inserts or replaces points, durably, before returning.
    ///
    /// # Errors
    /// [`IndexError::CollectionNotFound`]; [`IndexError::DimensionMismatch`] when
    /// a vector's length is not the collection's dimension, in which case no
    /// point of the call is written.
    async fn upsert(&self, collection: &str, points: Vec<Point>) -> Result<(), IndexError>;

    /// Deletes points by id; unknown ids are ignored.
    ///
    /// # Errors
    /// [`IndexError::CollectionNotFound`].
    async fn delete_points(&self, collection: &str, ids: &[ChunkId]) -> Result<(), IndexError>;

    /// Deletes every point of a document.
    ///
    /// # Errors
    /// [`IndexError::CollectionNotFound`].
    async fn delete_document(
        &self,
        collection: &str,
        document: DocumentId,
    ) -> Result<(), IndexError>;

    /// The ids of every point of a document, each once, in no promised order.
    ///
    /// # Errors
    /// [`IndexError::CollectionNotFound`].
    async fn document_points(
        &self,
        collection: &str,
        document: DocumentId,
    ) -> Result<Vec<ChunkId>, IndexError>;

    /// The best `query.limit` points that pass `query.filter`, best first.
    ///
    /// Dense scores are cosine similarities (at most 1); sparse scores are
    /// BM25; hybrid scores are reciprocal rank fusion of the two. A filter on
    /// a payload field that no point has matches nothing. A sparse query
    /// without terms (only stop words) finds nothing by its terms.
    ///
    /// # Errors
    /// [`IndexError::CollectionNotFound`]; [`IndexError::DimensionMismatch`] when
    /// the dense vector has another length than the collection's vectors;
    /// [`IndexError::InvalidFilter`] for a field name that is not a payload
    /// path; [`IndexError::Payload`] when a hit's payload is not a
    /// [`PointPayload`].
    async fn search(&self, collection: &str, query: &Query)
    -> Result<Vec<ScoredPoint>, IndexError>;

    /// How many points the collection holds, counted exactly.
    ///
    /// # Errors
    /// [`IndexError::CollectionNotFound`].
    async fn count(&self, collection: &str) -> Result<usize, IndexError>;

    /// Lets other processes use the collection until this one uses it again.
    ///
    /// An index that many processes share anyway (a server) has nothing to
    /// do; the in-process index flushes and closes the collection's files.
    async fn release(&self, _collection: &str) -> Result<(), IndexError> {
        Ok(())
    }
}
