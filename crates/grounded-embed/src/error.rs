//! The error type of this crate.

use std::path::PathBuf;

/// Errors of embedders, model files and the embedding cache.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("failed to load model from {path}: {message}")]
    ModelLoad { path: PathBuf, message: String },

    #[error("model files not found; tried:\n{tried}\n{hint}")]
    ModelNotFound { tried: String, hint: String },

    #[error("checksum mismatch for {path}: expected {expected}, found {found}")]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error("failed to tokenize input: {0}")]
    Tokenize(String),

    #[error("model inference failed: {0}")]
    Inference(String),

    /// The embedding API failed; its class (rate limited, timed out, a bad
    /// answer) says what the caller of grounded should be told.
    #[error(transparent)]
    Provider(#[from] grounded_provider::ProviderError),

    #[error("embedding cache failed: {0}")]
    Cache(String),

    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
