//! Vector index backends: where chunk embeddings live as points, and where
//! nearest neighbours are found.
//!
//! A point's id is its chunk id; its payload carries what a hit needs to be
//! shown without a trip to the metadata store (text, source, location). The
//! metadata store stays the source of truth for which chunks exist: a caller
//! must drop hits whose chunk the store does not know (see `grounded-query`).

mod edge;
mod error;

pub use edge::EdgeIndex;
pub use error::IndexError;

use async_trait::async_trait;
use grounded_core::{ChunkId, ChunkLocation, DocumentId, DocumentKind};
use serde::{Deserialize, Serialize};

/// The name of the dense vector in every point.
pub const DENSE_VECTOR: &str = "dense";

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
}

/// A chunk as the index stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub id: ChunkId,
    pub vector: Vec<f32>,
    pub payload: PointPayload,
}

/// One nearest neighbour.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    pub id: ChunkId,
    pub score: f32,
    pub payload: PointPayload,
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
    /// Creates the collection if it is missing.
    ///
    /// # Errors
    /// [`IndexError::DimensionMismatch`] when it exists with another dimension;
    /// [`IndexError::InvalidInput`] for a dimension of zero.
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

    /// The `limit` points nearest to `vector` by cosine similarity, best first;
    /// the score is the cosine similarity itself, at most 1.
    ///
    /// # Errors
    /// [`IndexError::CollectionNotFound`]; [`IndexError::DimensionMismatch`] when
    /// `vector` has another length than the collection's vectors;
    /// [`IndexError::Payload`] when a hit's payload is not a [`PointPayload`].
    async fn search(
        &self,
        collection: &str,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<ScoredPoint>, IndexError>;

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
