//! Deterministic ids and content hashes.
//!
//! Ids are UUIDv5 derived from stable inputs, so re-ingesting the same files
//! produces the same document and chunk ids, and Qdrant point ids equal chunk
//! ids.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const NAMESPACE: Uuid = Uuid::from_u128(0x6a0f_3c2e_9b41_4d7a_8e55_1f2b_7c90_d3a1);

/// The SHA-256 of some bytes, as lowercase hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Identifies one document: a source path within a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DocumentId(pub Uuid);

impl DocumentId {
    pub fn new(collection: &str, source_path: &str) -> Self {
        let name = format!("document\0{collection}\0{source_path}");
        Self(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies one chunk; also the id of its point in the vector index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChunkId(pub Uuid);

impl ChunkId {
    /// A chunk id from its document, its position and the hash of its text.
    ///
    /// The text hash is part of the id so that an edited chunk gets a new point
    /// and an unchanged one keeps its point.
    pub fn new(document: DocumentId, ordinal: u32, text_hash: &str) -> Self {
        let name = format!("chunk\0{}\0{ordinal}\0{text_hash}", document.0);
        Self(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = DocumentId::new("books", "ch01.md");
        assert_eq!(a, DocumentId::new("books", "ch01.md"));
        assert_ne!(a, DocumentId::new("books", "ch02.md"));
        assert_ne!(a, DocumentId::new("other", "ch01.md"));

        let hash = content_hash(b"hello");
        assert_eq!(ChunkId::new(a, 0, &hash), ChunkId::new(a, 0, &hash));
        assert_ne!(ChunkId::new(a, 0, &hash), ChunkId::new(a, 1, &hash));
    }

    #[test]
    fn content_hash_is_sha256_hex() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
