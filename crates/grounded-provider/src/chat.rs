//! The chat model interface: one completion, whole or as a stream of deltas.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;
use grounded_core::ChatMessage;
use serde::{Deserialize, Serialize};

use crate::ProviderError;

/// What the model is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    /// The most tokens the model may generate.
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f32,
    /// The texts of the numbered sources the prompt quotes (source `n` at
    /// index `n - 1`), when the answer must cite them as `[n]`. A model
    /// whose decoding is ours (the local one) then cites by construction:
    /// see [`crate::local::CitationRule`]. A hosted API cannot be
    /// constrained this way and ignores it; its answer is checked afterwards
    /// like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cite_sources: Option<Vec<String>>,
}

/// Tokens spent by one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// True when the provider reported no usage and the tokens were counted
    /// here with the model's tokenizer (or an estimate of it).
    pub counted_locally: bool,
}

/// A whole completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub text: String,
    pub usage: Usage,
    /// Why generation stopped (`stop`, `length`, …), when known.
    pub finish_reason: Option<String>,
}

/// One event of a streamed completion: text deltas, then exactly one `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    Delta(String),
    Done {
        usage: Usage,
        finish_reason: Option<String>,
    },
}

/// A streamed completion. A stream that ends without `Done` was cut off; the
/// implementations turn that into an error item rather than ending quietly.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, ProviderError>> + Send>>;

/// A chat model, remote or local.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The model's id as reported in answers and usage (`gpt-4o-mini`,
    /// `SmolLM2-135M-Instruct-Q4_1`, …).
    fn model_id(&self) -> &str;

    /// Counts the tokens of `text` as this model would; used to fit the
    /// prompt to its budget.
    fn count_tokens(&self, text: &str) -> usize;

    /// Generates a whole completion.
    ///
    /// # Errors
    /// Fails when the provider fails after its retries, or the model cannot run.
    async fn complete(&self, request: &ChatRequest) -> Result<ChatCompletion, ProviderError>;

    /// Generates a completion as a stream of deltas ending in `Done`.
    ///
    /// # Errors
    /// Fails when the stream cannot be started; failures later in the stream
    /// are error items of the stream.
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError>;
}
