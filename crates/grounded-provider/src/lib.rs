//! Providers of model calls that grounded does not run itself, and the small
//! chat model it can run when there is no API.
//!
//! [`ChatModel`] is what the answer pipeline talks to. [`openai`] speaks the
//! OpenAI-compatible HTTP API (chat completions, streamed or not, and
//! embeddings) with retries ([`retry`]) and a client-side limit on
//! concurrency and on requests and tokens per minute ([`limit`]). [`local`]
//! runs SmolLM2-135M-Instruct in process.

pub mod chat;
pub mod limit;
pub mod local;
pub mod openai;
pub mod retry;
pub mod wheel;

mod error;

pub use chat::{ChatCompletion, ChatEvent, ChatModel, ChatRequest, ChatStream, Usage};
pub use error::{ErrorClass, ProviderError};
