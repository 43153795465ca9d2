//! The OpenAI-compatible HTTP API: chat completions, whole or streamed, and
//! embeddings, with retries and client-side rate limits.
//!
//! [`OpenAiClient`] holds the HTTP client, the settings and the limiter, and
//! sends the requests; [`OpenAiChat`] is the [`crate::ChatModel`] on top of
//! it. Any server that speaks the same wire format (vLLM, Ollama, a proxy,
//! the test stand-in) can be named by `OPENAI_BASE_URL`. This module does not
//! batch embedding inputs or normalise vectors; the embedder in
//! `grounded-embed` does.

mod chat;
mod client;
mod config;
mod stream;
mod tokens;
mod wire;

pub use chat::OpenAiChat;
pub use client::{EmbeddingsResponse, OpenAiClient};
pub use config::{ConfigError, OpenAiConfig};
pub use tokens::TokenCounter;

/// The provider name in errors, logs and metrics labels.
pub const PROVIDER: &str = "openai";
