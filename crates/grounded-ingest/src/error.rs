//! The errors of ingestion, one enum for the whole crate.
//!
//! Errors from the steps that see only bytes or text ([`decode`](crate::decode),
//! [`extract`](crate::extract), [`chunk`](crate::chunk)) do not know which file
//! they came from; the caller names it with [`IngestError::in_file`].

use std::path::{Path, PathBuf};

/// Why a file, or a whole ingest step, could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A path given to walk does not exist.
    #[error("path {path} does not exist")]
    MissingRoot { path: PathBuf },

    /// A path given to walk is a file of a kind grounded does not ingest.
    #[error("unsupported file type: {path}")]
    UnsupportedFile { path: PathBuf },

    /// An exclude pattern is not a valid glob.
    #[error("invalid exclude pattern {pattern:?}: {source}")]
    ExcludePattern {
        pattern: String,
        #[source]
        source: ignore::Error,
    },

    /// The directory walk failed on some path (permissions, a link loop, …).
    #[error("failed to walk {path}: {source}")]
    Walk {
        path: PathBuf,
        #[source]
        source: ignore::Error,
    },

    /// A file is larger than the configured limit and was skipped.
    #[error("skipped {path}: {size} bytes is over the limit of {limit} bytes")]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },

    /// A file could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Another ingest kept a file's document claimed for longer than this
    /// run waits; that ingest writes it, or the next run does.
    #[error("{path} is still being written by another ingest; run again once it finishes")]
    Claimed { path: PathBuf },

    /// The bytes are not text.
    #[error("binary content: {reason}")]
    Binary { reason: String },

    /// The bytes look like text but no encoding decodes them cleanly.
    #[error("undecodable text (tried {encoding}): {reason}")]
    Undecodable {
        /// The encoding that was tried last, by its WHATWG name.
        encoding: &'static str,
        reason: String,
    },

    /// The HTML could not be reduced to its content.
    #[error("failed to extract html content: {reason}")]
    Extract { reason: String },

    /// The chunking limits are inconsistent.
    #[error(
        "invalid chunk config: max_tokens = {max_tokens}, overlap_tokens = {overlap_tokens} \
         (need 0 <= overlap_tokens < max_tokens)"
    )]
    InvalidChunkConfig {
        max_tokens: usize,
        overlap_tokens: usize,
    },

    /// The tokenizer would not count chunks faithfully.
    #[error("unsuitable tokenizer: {reason}")]
    UnsuitableTokenizer { reason: String },

    /// The tokenizer failed on some text.
    #[error("failed to tokenize text: {reason}")]
    Tokenize { reason: String },

    /// A chunk came out larger than its token budget; text-splitter only does this
    /// when a single character is worth more tokens than the budget.
    #[error("chunk {ordinal} has {tokens} tokens, over the budget of {max_tokens}")]
    ChunkOverBudget {
        ordinal: u32,
        tokens: usize,
        max_tokens: usize,
    },

    /// Any of the above, for a named file.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: Box<IngestError>,
    },

    /// The embedder failed (model files, inference, the embedding cache).
    #[error(transparent)]
    Embed(#[from] grounded_embed::EmbedError),

    /// The vector index failed.
    #[error(transparent)]
    Index(#[from] grounded_index::IndexError),

    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] grounded_store::StoreError),
}

impl IngestError {
    /// Names the file this error happened on, for errors raised by steps that see
    /// only its bytes or text.
    pub fn in_file(self, path: impl Into<PathBuf>) -> Self {
        Self::File {
            path: path.into(),
            source: Box::new(self),
        }
    }

    /// The file or root path this error is about, if it names one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::MissingRoot { path }
            | Self::UnsupportedFile { path }
            | Self::Walk { path, .. }
            | Self::FileTooLarge { path, .. }
            | Self::Read { path, .. }
            | Self::Claimed { path }
            | Self::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The error without the file it happened on, to branch on its kind.
    pub fn kind(&self) -> &IngestError {
        match self {
            Self::File { source, .. } => source.kind(),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_file_names_the_file_and_keeps_the_kind() {
        let error = IngestError::Binary {
            reason: "NUL bytes".into(),
        }
        .in_file("docs/logo.txt");

        assert_eq!(
            error.to_string(),
            "docs/logo.txt: binary content: NUL bytes"
        );
        assert!(matches!(error.kind(), IngestError::Binary { .. }));
    }
}
