//! Where grounded keeps its files.

use std::path::{Path, PathBuf};

/// grounded's data directory: the metadata database and the vector index.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database file.
    pub fn database(&self) -> PathBuf {
        self.root.join("grounded.db")
    }

    /// The directory that holds one Qdrant Edge shard per collection.
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
}

/// The per-user cache directory for model files, `~/.cache/grounded` on Linux.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("grounded")
}
