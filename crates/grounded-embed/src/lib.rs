//! Embedders turn chunk text into vectors; the embedding cache makes sure the
//! same text is never embedded twice by the same model.
//!
//! The default embedder is all-MiniLM-L6-v2 run in process ([`MiniLm`]); the
//! model files are found or fetched by [`resolve_model_files`]. An
//! OpenAI-compatible API embeds through [`OpenAiEmbedder`]. Each embedder
//! hands out a [`TokenCounter`] that counts tokens as its model does, which
//! sizes chunks and prompts. Storage of cached vectors is not done here: a
//! metadata store implements [`EmbeddingCache`].

mod bert;
mod cache;
mod error;
mod kernels;
mod minilm;
mod model_files;
mod openai;
mod query;

pub use cache::{CacheStats, CachedEmbedder, EmbeddingCache};
pub use error::EmbedError;
pub use minilm::MiniLm;
pub use model_files::{
    FetchOptions, ModelFiles, ModelSource, resolve_model_files, resolve_model_files_with,
};
pub use openai::{OpenAiBatching, OpenAiEmbedder};
pub use query::QueryEmbedder;

use std::fmt;

use async_trait::async_trait;

/// An embedding: one vector per text.
pub type Embedding = Vec<f32>;

/// Turns texts into vectors of a fixed dimension.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// A stable id of the model and its settings, part of the cache key.
    fn model_id(&self) -> &str;

    /// The length of every vector this embedder returns.
    fn dimension(&self) -> usize;

    /// The most tokens of one text the model reads, special tokens excluded;
    /// chunks must not exceed it.
    fn max_input_tokens(&self) -> usize;

    /// Counts tokens exactly as the model will, with no truncation, no
    /// padding and no special tokens; used to size chunks.
    fn token_counter(&self) -> TokenCounter<'_>;

    /// Embeds a batch of texts, returning one L2-normalised vector per text in
    /// input order.
    ///
    /// # Errors
    /// Fails when the model cannot run on the input.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbedError>;
}

/// The tokenizer of an embedding model, for counting tokens as the model
/// reads them.
#[derive(Clone, Copy)]
pub enum TokenCounter<'a> {
    /// A Hugging Face tokenizer. It must neither truncate nor pad, or its
    /// counts are wrong; the chunker refuses one that does.
    HuggingFace(&'a tokenizers::Tokenizer),
    /// A tiktoken encoding, as OpenAI's models use.
    Tiktoken(&'a tiktoken_rs::CoreBPE),
}

impl TokenCounter<'_> {
    /// The tokens of `text`, special tokens excluded.
    ///
    /// # Errors
    /// [`EmbedError::Tokenize`] when a Hugging Face tokenizer fails on the
    /// text; tiktoken cannot fail.
    pub fn try_count(&self, text: &str) -> Result<usize, EmbedError> {
        match self {
            Self::HuggingFace(tokenizer) => tokenizer
                .encode_fast(text, false)
                .map(|encoding| encoding.len())
                .map_err(|error| EmbedError::Tokenize(error.to_string())),
            Self::Tiktoken(bpe) => Ok(bpe.encode_ordinary(text).len()),
        }
    }

    /// The tokens of `text`, special tokens excluded; a text the tokenizer
    /// fails on counts one token per byte, which overcounts but never under.
    pub fn count(&self, text: &str) -> usize {
        self.try_count(text).unwrap_or(text.len())
    }
}

impl fmt::Debug for TokenCounter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HuggingFace(_) => f.write_str("TokenCounter::HuggingFace"),
            Self::Tiktoken(_) => f.write_str("TokenCounter::Tiktoken"),
        }
    }
}
