//! The chat model of an OpenAI-compatible API.

use std::sync::Arc;

use async_trait::async_trait;

use super::client::{OpenAiClient, protocol, saturate};
use super::config::OpenAiConfig;
use super::stream::{StreamContext, chat_stream};
use super::tokens::TokenCounter;
use super::wire::{ChatCompletionRequest, ChatCompletionResponse, StreamOptions, WireUsage};
use crate::{ChatCompletion, ChatModel, ChatRequest, ChatStream, ProviderError, Usage};

/// [`ChatModel`] over `chat/completions`.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    client: Arc<OpenAiClient>,
    model: String,
    counter: TokenCounter,
}

impl OpenAiChat {
    /// The chat model of `config`, with a client of its own.
    ///
    /// # Errors
    /// When the client cannot be built (see [`OpenAiClient::new`]).
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        Ok(Self::with_client(Arc::new(OpenAiClient::new(config)?)))
    }

    /// The chat model of the client's settings, sharing its limits with
    /// whatever else uses the client.
    pub fn with_client(client: Arc<OpenAiClient>) -> Self {
        let model = client.config().chat_model.clone();
        Self {
            counter: TokenCounter::for_model(&model),
            model,
            client,
        }
    }

    /// The client this model sends through.
    pub fn client(&self) -> &Arc<OpenAiClient> {
        &self.client
    }

    fn wire_request<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: bool,
    ) -> ChatCompletionRequest<'a> {
        let reasoning = is_reasoning_model(&self.model);
        ChatCompletionRequest {
            model: &self.model,
            messages: &request.messages,
            max_tokens: (!reasoning).then_some(request.max_tokens),
            max_completion_tokens: reasoning.then_some(request.max_tokens),
            temperature: (!reasoning).then_some(request.temperature),
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }

    /// The tokens a request may spend: its prompt and all it may generate.
    fn estimate(&self, request: &ChatRequest) -> u32 {
        let prompt = saturate(self.counter.count_messages(&request.messages));
        prompt.saturating_add(request.max_tokens)
    }

    fn stream_context(&self, request: &ChatRequest) -> StreamContext {
        StreamContext {
            counter: self.counter,
            prompt_tokens: saturate(self.counter.count_messages(&request.messages)),
            idle_timeout: self.client.config().request_timeout,
            api_key: self.client.config().api_key.clone(),
        }
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn model_id(&self) -> &str {
        &self.model
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.counter.count(text)
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        let body = self.wire_request(request, false);
        let response: ChatCompletionResponse = self
            .client
            .post_json("chat/completions", &body, self.estimate(request))
            .await?;

        let choice = response
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| protocol("a completion without choices".into()))?;
        let message = choice.message;
        let text = message.content.or(message.refusal).unwrap_or_default();
        let usage = self.usage(response.usage, request, &text);
        Ok(ChatCompletion {
            text,
            usage,
            finish_reason: choice.finish_reason,
        })
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = self.wire_request(request, true);
        let (response, permit) = self
            .client
            .open_stream("chat/completions", &body, self.estimate(request))
            .await?;
        Ok(chat_stream(response, permit, self.stream_context(request)))
    }
}

impl OpenAiChat {
    /// The provider's usage, or the tokens counted here when it sent none.
    fn usage(&self, reported: Option<WireUsage>, request: &ChatRequest, text: &str) -> Usage {
        match reported {
            Some(usage) => Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                counted_locally: false,
            },
            None => Usage {
                prompt_tokens: saturate(self.counter.count_messages(&request.messages)),
                completion_tokens: saturate(self.counter.count(text)),
                counted_locally: true,
            },
        }
    }
}

/// Whether `model` is one of OpenAI's reasoning models, which take
/// `max_completion_tokens` and no temperature.
fn is_reasoning_model(model: &str) -> bool {
    let model = model.rsplit('/').next().unwrap_or(model);
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|family| model.starts_with(family))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_models_are_recognised() {
        assert!(is_reasoning_model("o3-mini"));
        assert!(is_reasoning_model("gpt-5-nano"));
        assert!(is_reasoning_model("openai/o1"));
        assert!(!is_reasoning_model("gpt-4o-mini"));
        assert!(!is_reasoning_model("llama3.1"));
    }
}
