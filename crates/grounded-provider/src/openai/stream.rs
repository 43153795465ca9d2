//! Reading a streamed completion: server-sent events of completion chunks,
//! ending in `data: [DONE]`.
//!
//! The stream is not retried once it has started: deltas already given to
//! the caller cannot be taken back, so a failure after the first byte is an
//! error item and the end of the stream. A stream that stops without its
//! end, by a dropped connection or a clean close before `[DONE]` and before
//! any `finish_reason`, is an error item too, never a quiet end.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use reqwest::Response;

use super::PROVIDER;
use super::client::{protocol, redact_key, saturate};
use super::tokens::TokenCounter;
use super::wire::{ChatCompletionChunk, WireUsage};
use crate::limit::Permit;
use crate::{ChatEvent, ChatStream, ProviderError, Usage};

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// What the reader of a stream needs from the request.
pub(crate) struct StreamContext {
    pub counter: TokenCounter,
    /// The prompt counted here, reported when the provider sends no usage.
    pub prompt_tokens: u32,
    /// The longest wait for the next event.
    pub idle_timeout: Duration,
    /// Blanked from error messages.
    pub api_key: Option<String>,
}

/// The completion events of a streamed answer whose status was a success.
/// `permit` is held until the stream ends.
pub(crate) fn chat_stream(
    response: Response,
    permit: Permit,
    context: StreamContext,
) -> ChatStream {
    let state = StreamState {
        events: Box::pin(response.bytes_stream().eventsource()),
        context,
        permit: Some(permit),
        text: String::new(),
        deltas: 0,
        usage: None,
        finish_reason: None,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        let item = state.next_item().await?;
        Some((item, state))
    }))
}

struct StreamState {
    events: Events,
    context: StreamContext,
    /// `None` once the stream has ended.
    permit: Option<Permit>,
    /// The text so far, for counting its tokens when no usage comes.
    text: String,
    deltas: usize,
    usage: Option<WireUsage>,
    finish_reason: Option<String>,
}

impl StreamState {
    /// The next item, or `None` after the stream's last item.
    async fn next_item(&mut self) -> Option<Result<ChatEvent, ProviderError>> {
        self.permit.as_ref()?;
        loop {
            let next = tokio::time::timeout(self.context.idle_timeout, self.events.next()).await;
            let event = match next {
                Err(_) => return Some(Err(self.fail(self.timed_out()))),
                Ok(None) => return Some(self.end_of_body()),
                Ok(Some(Err(error))) => return Some(Err(self.fail(self.cut_off(&error)))),
                Ok(Some(Ok(event))) => event,
            };

            match self.read_event(&event.data) {
                Ok(Some(item)) => return Some(Ok(item)),
                Ok(None) => continue,
                Err(error) => return Some(Err(self.fail(error))),
            }
        }
    }

    /// The item an event makes, if any: a delta, or `Done` at `[DONE]`.
    fn read_event(&mut self, data: &str) -> Result<Option<ChatEvent>, ProviderError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(None);
        }
        if data == "[DONE]" {
            return Ok(Some(self.done()));
        }

        let chunk: ChatCompletionChunk = serde_json::from_str(data)
            .map_err(|error| protocol(format!("unreadable stream event: {error}")))?;
        if let Some(error) = chunk.error {
            let message = redact_key(error.message, self.context.api_key.as_deref());
            return Err(protocol(format!("the stream reported an error: {message}")));
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }

        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(None);
        };
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
        let content = choice.delta.content.or(choice.delta.refusal);
        Ok(content.filter(|text| !text.is_empty()).map(|text| {
            self.text.push_str(&text);
            self.deltas += 1;
            ChatEvent::Delta(text)
        }))
    }

    /// A body that ended without `[DONE]`: complete when a `finish_reason`
    /// came (some compatible servers send no `[DONE]`), cut off otherwise.
    fn end_of_body(&mut self) -> Result<ChatEvent, ProviderError> {
        if self.finish_reason.is_some() {
            return Ok(self.done());
        }
        let message = format!(
            "the stream ended after {} deltas without a finish_reason or [DONE]",
            self.deltas
        );
        Err(self.fail(protocol(message)))
    }

    /// The final `Done`, ending the stream.
    fn done(&mut self) -> ChatEvent {
        self.permit = None;
        let usage = match self.usage {
            Some(usage) => Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                counted_locally: false,
            },
            None => Usage {
                prompt_tokens: self.context.prompt_tokens,
                completion_tokens: saturate(self.context.counter.count(&self.text)),
                counted_locally: true,
            },
        };
        ChatEvent::Done {
            usage,
            finish_reason: self.finish_reason.take(),
        }
    }

    /// Ends the stream with `error`.
    fn fail(&mut self, error: ProviderError) -> ProviderError {
        self.permit = None;
        tracing::warn!(provider = PROVIDER, deltas = self.deltas, error = %error, "stream failed");
        crate::retry::record_failure(PROVIDER, &error);
        error
    }

    fn timed_out(&self) -> ProviderError {
        ProviderError::Timeout {
            provider: PROVIDER.into(),
            timeout: self.context.idle_timeout,
            attempts: 1,
        }
    }

    fn cut_off(&self, error: &EventStreamError<reqwest::Error>) -> ProviderError {
        let cause = match error {
            EventStreamError::Transport(error) => super::client::error_chain(error),
            other => other.to_string(),
        };
        let cause = redact_key(cause, self.context.api_key.as_deref());
        protocol(format!(
            "the stream was cut off after {} deltas: {cause}",
            self.deltas
        ))
    }
}
