//! The shared vocabulary of grounded: documents, chunks, hits, citations and
//! answers, the hashes and ids that tie them together, and where grounded keeps
//! its files.
//!
//! This crate holds no I/O beyond resolving directories; every other crate
//! depends on it, and it depends on none of them.

mod ids;
mod model;
mod paths;

pub use ids::{ChunkId, DocumentId, content_hash};
pub use model::{
    Answer, ChatMessage, Chunk, ChunkLocation, Citation, Document, DocumentKind, DocumentMetadata,
    DocumentState, Hit,
};
pub use paths::{DataDir, default_cache_dir};

/// The collection used when none is named.
pub const DEFAULT_COLLECTION: &str = "default";

/// Checks that a collection name is safe to use as a directory and a payload value.
///
/// # Errors
/// Returns a message naming the problem when the name is empty, too long or
/// holds characters other than ASCII letters, digits, `-` and `_`.
pub fn validate_collection_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');

    if name.is_empty() || name.len() > 64 || !valid_chars {
        return Err(format!(
            "invalid collection name {name:?}: use 1 to 64 ASCII letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}
