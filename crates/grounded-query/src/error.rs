use grounded_embed::EmbedError;
use grounded_index::IndexError;
use grounded_store::StoreError;

/// Errors of retrieval and answering.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the query is empty")]
    EmptyQuery,

    #[error("failed to embed the query: {0}")]
    Embed(#[from] EmbedError),

    #[error(transparent)]
    Index(#[from] IndexError),

    #[error(transparent)]
    Store(#[from] StoreError),

    /// A prompt template that cannot be read, parsed or rendered.
    #[error("prompt template {name}: {message}")]
    Template { name: String, message: String },

    /// The chat model failed.
    #[error(transparent)]
    Provider(#[from] grounded_provider::ProviderError),
}
