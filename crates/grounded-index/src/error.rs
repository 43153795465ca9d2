//! The errors of vector index backends.
//!
//! Variants a caller must branch on (a missing collection, a dimension that does
//! not match the model in use, a request that can never succeed) are typed; a
//! failure inside the backend itself carries only the path it happened at and a
//! message, because no caller can do more with it than report it.

/// Errors of vector index backends.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The collection has never been created, or has been deleted.
    #[error("collection {0:?} does not exist")]
    CollectionNotFound(String),

    /// A collection exists with vectors of another size than the ones given.
    ///
    /// Returned by `ensure_collection` for an existing collection, and by `upsert`
    /// and `search` for a vector whose length is not the collection's dimension.
    #[error(
        "collection {collection:?} holds vectors of dimension {existing}, but the model in use \
         produces {requested}; use another collection or delete this one"
    )]
    DimensionMismatch {
        collection: String,
        existing: usize,
        requested: usize,
    },

    /// A collection exists with vectors laid out otherwise than grounded lays
    /// them out: other vector names, another distance, no IDF modifier (made by
    /// another tool, or by a grounded before hybrid search).
    #[error(
        "collection {collection:?} cannot be used: {problem}; use another collection, or delete \
         this one (`grounded collections delete {collection}`) and ingest again"
    )]
    SchemaMismatch { collection: String, problem: String },

    /// A search filter that no backend could apply.
    #[error("invalid filter {filter:?}: {message}")]
    InvalidFilter { filter: String, message: String },

    /// A request that no backend could serve: an invalid collection name or a
    /// zero dimension.
    #[error("invalid request for collection {collection:?}: {message}")]
    InvalidInput { collection: String, message: String },

    /// Another process kept the collection open for longer than opening waits.
    #[error(
        "the collection at {path} is held open by another grounded process; Qdrant Edge opens \
         a collection in one process at a time, so wait for that process to finish"
    )]
    Busy { path: String },

    /// The backend failed: an I/O error, a corrupt shard, a panic inside it.
    #[error("vector index at {path} failed: {message}")]
    Backend { path: String, message: String },

    /// A stored point that cannot be read back as a chunk.
    #[error("point {id} has a malformed payload: {message}")]
    Payload { id: String, message: String },
}
