//! Sending requests to an OpenAI-compatible API: one HTTP client, the
//! limiter, the retries, and the reading of error answers.

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::PROVIDER;
use super::config::OpenAiConfig;
use super::tokens::TokenCounter;
use super::wire::{EmbeddingsRequest, EmbeddingsWireResponse, ErrorBody};
use crate::ProviderError;
use crate::limit::{Limiter, Permit};
use crate::retry::{self, AttemptError};

/// How long an error answer's body is kept when it is not the JSON error
/// object (an HTML page of a gateway, say).
const MAX_ERROR_SNIPPET: usize = 200;

/// A client of one OpenAI-compatible API, shared by its chat model and its
/// embedder; its limits hold across everything sent through it.
#[derive(Debug)]
pub struct OpenAiClient {
    http: reqwest::Client,
    config: OpenAiConfig,
    limiter: Limiter,
}

/// The vectors of one embeddings request, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsResponse {
    pub embeddings: Vec<Vec<f32>>,
    /// The tokens the provider billed, when it said.
    pub prompt_tokens: Option<u32>,
}

impl OpenAiClient {
    /// A client for `config`.
    ///
    /// # Errors
    /// [`ProviderError::Invalid`] when the HTTP client cannot be built (no
    /// TLS backend, say) or the API key cannot be sent as a header.
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        if let Some(key) = &config.api_key {
            HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| invalid("the API key holds characters a header cannot carry"))?;
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("grounded/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|error| invalid(&format!("cannot build the HTTP client: {error}")))?;
        let limiter = Limiter::new(PROVIDER, config.limits);
        Ok(Self {
            http,
            config,
            limiter,
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// Embeds `inputs` with the configured embedding model in one request.
    /// Batching to the provider's limits is the caller's part.
    ///
    /// # Errors
    /// The request's failure after retries, or [`ProviderError::Protocol`]
    /// when the answer does not hold one vector per input.
    pub async fn embeddings(&self, inputs: &[String]) -> Result<EmbeddingsResponse, ProviderError> {
        let counter = TokenCounter::for_model(&self.config.embedding_model);
        let tokens: usize = inputs.iter().map(|input| counter.count(input)).sum();
        let request = EmbeddingsRequest {
            model: &self.config.embedding_model,
            input: inputs,
            encoding_format: "float",
            dimensions: self.config.embedding_dimensions,
        };

        let response: EmbeddingsWireResponse = self
            .post_json("embeddings", &request, saturate(tokens))
            .await?;
        order_embeddings(response, inputs.len())
    }

    /// Sends `body` to `path` and reads the JSON answer, retrying as the
    /// policy allows; `tokens` is the request's estimated cost.
    pub(crate) async fn post_json<B, R>(
        &self,
        path: &str,
        body: &B,
        tokens: u32,
    ) -> Result<R, ProviderError>
    where
        B: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let url = self.config.endpoint(path);
        let body = encode(body)?;
        let (url, body) = (&url, &body);

        retry::with_retries(&self.config.retry, PROVIDER, move |attempt| async move {
            let _permit = self
                .limiter
                .acquire(tokens)
                .await
                .map_err(AttemptError::Final)?;
            let response = self.send(url, body.clone(), false, attempt).await?;
            let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
            serde_json::from_slice(&bytes).map_err(|error| {
                AttemptError::Final(protocol(format!("unexpected answer from {path}: {error}")))
            })
        })
        .await
    }

    /// Sends `body` to `path` as a streamed request and returns the answer
    /// once its status is known to be a success, with the concurrency permit
    /// to hold while the stream is read. Only this part is retried.
    pub(crate) async fn open_stream<B>(
        &self,
        path: &str,
        body: &B,
        tokens: u32,
    ) -> Result<(Response, Permit), ProviderError>
    where
        B: Serialize + ?Sized,
    {
        let url = self.config.endpoint(path);
        let body = encode(body)?;
        let (url, body) = (&url, &body);

        retry::with_retries(&self.config.retry, PROVIDER, move |attempt| async move {
            let permit = self
                .limiter
                .acquire(tokens)
                .await
                .map_err(AttemptError::Final)?;
            let response = self.send(url, body.clone(), true, attempt).await?;
            Ok((response, permit))
        })
        .await
    }

    /// One attempt: sends the request and turns an error status into an
    /// [`AttemptError`]. A whole request is bounded by the timeout from start
    /// to the end of its body; a stream only until its answer's headers.
    async fn send(
        &self,
        url: &str,
        body: Bytes,
        streaming: bool,
        attempt: u32,
    ) -> Result<Response, AttemptError> {
        tracing::debug!(
            provider = PROVIDER,
            url,
            attempt,
            streaming,
            "sending request"
        );
        let accept = if streaming {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, accept)
            .body(body);
        if let Some(key) = &self.config.api_key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }

        let response = if streaming {
            tokio::time::timeout(self.config.request_timeout, request.send())
                .await
                .map_err(|_| AttemptError::Timeout(self.config.request_timeout))?
        } else {
            request.timeout(self.config.request_timeout).send().await
        };
        let response = response.map_err(|error| self.transport(error))?;
        self.check_status(response).await
    }

    /// Passes a success through; reads an error answer into an
    /// [`AttemptError::Status`] with the provider's message.
    async fn check_status(&self, response: Response) -> Result<Response, AttemptError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }

        let retry_after = retry::retry_after(response.headers());
        let read = tokio::time::timeout(self.config.request_timeout, response.text()).await;
        let body = match read {
            Ok(Ok(body)) => body,
            _ => String::new(),
        };
        let (code, message) = read_error_body(status, &body);
        Err(AttemptError::Status {
            status: status.as_u16(),
            code,
            message: self.redact(message),
            retry_after,
        })
    }

    /// A transport failure as an [`AttemptError`], with the causes that
    /// reqwest's own message leaves out.
    pub(crate) fn transport(&self, error: reqwest::Error) -> AttemptError {
        if error.is_timeout() {
            return AttemptError::Timeout(self.config.request_timeout);
        }
        AttemptError::Connect(self.redact(error_chain(&error)))
    }

    /// `text` with every occurrence of the API key blanked, for servers that
    /// echo the key they were sent.
    pub(crate) fn redact(&self, text: String) -> String {
        redact_key(text, self.config.api_key.as_deref())
    }
}

fn invalid(message: &str) -> ProviderError {
    ProviderError::Invalid {
        provider: PROVIDER.into(),
        message: message.into(),
    }
}

pub(crate) fn protocol(message: String) -> ProviderError {
    ProviderError::Protocol {
        provider: PROVIDER.into(),
        message,
    }
}

fn encode<B: Serialize + ?Sized>(body: &B) -> Result<Bytes, ProviderError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|error| invalid(&format!("cannot encode the request: {error}")))
}

pub(crate) fn saturate(tokens: usize) -> u32 {
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

/// The error's message followed by those of its causes.
pub(crate) fn error_chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

pub(crate) fn redact_key(text: String, key: Option<&str>) -> String {
    match key.map(str::trim) {
        Some(key) if key.len() >= 4 && text.contains(key) => text.replace(key, "[redacted]"),
        _ => text,
    }
}

/// The code and message of an error answer: from OpenAI's error object when
/// the body is one, else the status and the start of the body.
fn read_error_body(status: StatusCode, body: &str) -> (Option<String>, String) {
    if let Ok(parsed) = serde_json::from_str::<ErrorBody>(body) {
        return (parsed.error.code(), parsed.error.message);
    }

    let snippet: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let snippet: String = snippet.chars().take(MAX_ERROR_SNIPPET).collect();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if snippet.is_empty() {
        reason.to_string()
    } else {
        format!("{reason}: {snippet}")
    };
    (None, message)
}

/// The vectors in input order, checked to be one per input.
fn order_embeddings(
    response: EmbeddingsWireResponse,
    expected: usize,
) -> Result<EmbeddingsResponse, ProviderError> {
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in response.data {
        let slot = slots
            .get_mut(item.index)
            .ok_or_else(|| protocol(format!("embedding index {} out of range", item.index)))?;
        *slot = Some(item.embedding);
    }

    let embeddings = slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| slot.ok_or_else(|| protocol(format!("no embedding for input {i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EmbeddingsResponse {
        embeddings,
        prompt_tokens: response.usage.map(|usage| usage.prompt_tokens),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_error_objects() {
        let body = r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let (code, message) = read_error_body(StatusCode::TOO_MANY_REQUESTS, body);
        assert_eq!(code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(message, "Rate limit reached");

        let body = r#"{"error":{"message":"oops","type":"server_error","param":null,"code":null}}"#;
        let (code, _) = read_error_body(StatusCode::INTERNAL_SERVER_ERROR, body);
        assert_eq!(code.as_deref(), Some("server_error"));
    }

    #[test]
    fn other_error_bodies_keep_their_start() {
        let body = "<html>\n  <h1>502 Bad Gateway</h1>\n</html>";
        let (code, message) = read_error_body(StatusCode::BAD_GATEWAY, body);
        assert_eq!(code, None);
        assert_eq!(
            message,
            "Bad Gateway: <html> <h1>502 Bad Gateway</h1> </html>"
        );

        let (_, message) = read_error_body(StatusCode::SERVICE_UNAVAILABLE, "");
        assert_eq!(message, "Service Unavailable");
    }

    #[test]
    fn the_key_is_blanked_wherever_it_is_echoed() {
        let text = "Incorrect API key provided: sk-secret-123.".to_string();
        let redacted = redact_key(text, Some("sk-secret-123"));
        assert_eq!(redacted, "Incorrect API key provided: [redacted].");
        assert_eq!(redact_key("no key".into(), None), "no key");
    }

    #[test]
    fn embeddings_are_put_in_input_order() {
        let body = r#"{"data":[{"index":1,"embedding":[0.0,1.0]},{"index":0,"embedding":[1.0,0.0]}],
            "usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        let response = order_embeddings(serde_json::from_str(body).unwrap(), 2).unwrap();
        assert_eq!(response.embeddings, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!(response.prompt_tokens, Some(4));

        let missing = order_embeddings(serde_json::from_str(body).unwrap(), 3);
        assert!(matches!(missing, Err(ProviderError::Protocol { .. })));
    }
}
