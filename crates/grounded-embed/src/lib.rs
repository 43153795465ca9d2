//! Embedders turn chunk text into vectors; the embedding cache makes sure the
//! same text is never embedded twice by the same model.
//!
//! The default embedder is all-MiniLM-L6-v2 run in process ([`MiniLm`]); the
//! model files are found or fetched by [`resolve_model_files`]. Storage of cached
//! vectors is not done here: a metadata store implements [`EmbeddingCache`].

mod bert;
mod cache;
mod error;
mod minilm;
mod model_files;

pub use cache::{CacheStats, CachedEmbedder, EmbeddingCache};
pub use error::EmbedError;
pub use minilm::MiniLm;
pub use model_files::{
    FetchOptions, ModelFiles, ModelSource, resolve_model_files, resolve_model_files_with,
};

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

    /// The tokenizer that counts tokens exactly as the model will, with no
    /// truncation and no padding; used to size chunks.
    fn tokenizer(&self) -> &tokenizers::Tokenizer;

    /// Embeds a batch of texts, returning one L2-normalised vector per text in
    /// input order.
    ///
    /// # Errors
    /// Fails when the model cannot run on the input.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbedError>;
}
