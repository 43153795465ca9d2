//! Embeddings from an OpenAI-compatible API, batched to its limits.
//!
//! Texts are sent in batches bounded by a number of inputs and by the sum of
//! their tokens, counted with the model's tiktoken encoding; one batch is
//! one request, retried and rate-limited by the provider's client. Vectors
//! are L2-normalised here (OpenAI's already are; compatible servers' may not
//! be). Batches are sent one after another: an ingest that wants more
//! throughput embeds several batches at once, within the client's
//! concurrency limit.
//!
//! The same tiktoken encoding is this embedder's [`TokenCounter`], so chunks
//! are sized in the tokens the API bills and reads. Behind a compatible
//! server whose model tiktoken does not know, the encoding is `cl100k_base`
//! and the counts are an estimate; [`Embedder::embed`] then still refuses a
//! text over the limit by that estimate rather than truncating it.

use std::sync::Arc;

use async_trait::async_trait;
use grounded_provider::openai::{OpenAiClient, OpenAiConfig};
use tiktoken_rs::CoreBPE;

use crate::{EmbedError, Embedder, Embedding, TokenCounter};

/// How embedding requests are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAiBatching {
    /// Inputs per request. OpenAI takes up to 2048; 512 keeps a request
    /// body to a few megabytes and a retried request cheap.
    pub max_inputs: usize,
    /// Tokens of one input, and so of one chunk; OpenAI's embedding models
    /// read 8191.
    pub max_input_tokens: usize,
    /// Tokens of all inputs of one request; OpenAI allows 300,000.
    pub max_request_tokens: usize,
}

impl Default for OpenAiBatching {
    fn default() -> Self {
        Self {
            max_inputs: 512,
            max_input_tokens: 8_191,
            max_request_tokens: 300_000,
        }
    }
}

/// [`Embedder`] over the `embeddings` endpoint of an OpenAI-compatible API.
#[derive(Debug)]
pub struct OpenAiEmbedder {
    client: Arc<OpenAiClient>,
    counter: TokenCounter<'static>,
    batching: OpenAiBatching,
    dimension: usize,
    model_id: String,
}

impl OpenAiEmbedder {
    /// The embedder of `config`, asking the API for one vector to learn the
    /// dimension when neither the settings nor the model's name give it.
    ///
    /// # Errors
    /// When the client cannot be built or the probing request fails.
    pub async fn connect(
        config: OpenAiConfig,
        batching: OpenAiBatching,
    ) -> Result<Self, EmbedError> {
        let client = OpenAiClient::new(config)?;
        Self::with_client(Arc::new(client), batching).await
    }

    /// The embedder of the client's settings, sharing its limits.
    ///
    /// # Errors
    /// When the probing request for the dimension fails.
    pub async fn with_client(
        client: Arc<OpenAiClient>,
        batching: OpenAiBatching,
    ) -> Result<Self, EmbedError> {
        let config = client.config();
        let known = config
            .embedding_dimensions
            .or_else(|| known_dimension(&config.embedding_model));
        let dimension = match known {
            Some(dimension) => dimension,
            None => probe_dimension(&client).await?,
        };

        let model = config.embedding_model.clone();
        Ok(Self {
            counter: TokenCounter::for_openai_model(&model),
            model_id: format!("openai:{model}@{dimension}"),
            client,
            batching,
            dimension,
        })
    }

    /// Embeds one batch and checks and normalises its vectors.
    async fn embed_batch(&self, batch: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        let response = self.client.embeddings(batch).await?;
        response
            .embeddings
            .into_iter()
            .map(|vector| self.checked(vector))
            .collect()
    }

    fn checked(&self, mut vector: Vec<f32>) -> Result<Embedding, EmbedError> {
        if vector.len() != self.dimension {
            return Err(EmbedError::Inference(format!(
                "{} returned a vector of {} dimensions, expected {}",
                self.model_id,
                vector.len(),
                self.dimension
            )));
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if !(norm.is_finite() && norm > 0.0) {
            return Err(EmbedError::Inference(format!(
                "{} returned a zero vector",
                self.model_id
            )));
        }
        vector.iter_mut().for_each(|x| *x /= norm);
        Ok(vector)
    }

    /// The token count of each text, refusing any over the input limit.
    fn count_inputs(&self, texts: &[String]) -> Result<Vec<usize>, EmbedError> {
        let limit = self.batching.max_input_tokens;
        let counter = self.token_counter();
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| match counter.count(text) {
                tokens if tokens > limit => Err(EmbedError::Tokenize(format!(
                    "text {i} has {tokens} tokens, more than the {limit} {} reads",
                    self.model_id
                ))),
                tokens => Ok(tokens),
            })
            .collect()
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_input_tokens(&self) -> usize {
        self.batching.max_input_tokens
    }

    fn token_counter(&self) -> TokenCounter<'_> {
        self.counter
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        let tokens = self.count_inputs(texts)?;
        let mut vectors = Vec::with_capacity(texts.len());
        for range in batches(&tokens, &self.batching) {
            vectors.extend(self.embed_batch(&texts[range]).await?);
        }
        Ok(vectors)
    }
}

/// Consecutive ranges of inputs, each within the input and token bounds of
/// one request. Every input fits alone (the caller checked it).
fn batches(tokens: &[usize], batching: &OpenAiBatching) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut sum) = (0, 0);
    for (i, &count) in tokens.iter().enumerate() {
        let full =
            i - start >= batching.max_inputs.max(1) || sum + count > batching.max_request_tokens;
        if full && i > start {
            ranges.push(start..i);
            (start, sum) = (i, 0);
        }
        sum += count;
    }
    if start < tokens.len() {
        ranges.push(start..tokens.len());
    }
    ranges
}

/// The native dimension of OpenAI's embedding models.
fn known_dimension(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

async fn probe_dimension(client: &OpenAiClient) -> Result<usize, EmbedError> {
    let response = client.embeddings(&["dimension probe".to_string()]).await?;
    match response.embeddings.first() {
        Some(vector) if !vector.is_empty() => Ok(vector.len()),
        _ => Err(EmbedError::Inference(
            "the probing request returned no vector".into(),
        )),
    }
}

impl TokenCounter<'static> {
    /// The tiktoken encoding of OpenAI model `model`, the one the provider's
    /// client counts with: tiktoken's own table, else by model family, else
    /// `cl100k_base`.
    pub fn for_openai_model(model: &str) -> Self {
        Self::Tiktoken(tiktoken_encoding(model))
    }
}

/// The encoding the provider chooses for `model`, as tiktoken's shared
/// instance of it (built once per process).
fn tiktoken_encoding(model: &str) -> &'static CoreBPE {
    let chosen = grounded_provider::openai::TokenCounter::for_model(model);
    match chosen.encoding() {
        "o200k_base" => tiktoken_rs::o200k_base_singleton(),
        "o200k_harmony" => tiktoken_rs::o200k_harmony_singleton(),
        "p50k_base" => tiktoken_rs::p50k_base_singleton(),
        "p50k_edit" => tiktoken_rs::p50k_edit_singleton(),
        "r50k_base" | "gpt2" => tiktoken_rs::r50k_base_singleton(),
        // `cl100k_base`, and the provider's fallback for any name it adds.
        _ => tiktoken_rs::cl100k_base_singleton(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_inputs: usize, max_request_tokens: usize) -> OpenAiBatching {
        OpenAiBatching {
            max_inputs,
            max_input_tokens: 100,
            max_request_tokens,
        }
    }

    #[test]
    fn batches_respect_inputs_and_tokens_and_cover_everything() {
        let tokens = [10, 10, 10, 50, 50, 5, 100];
        let ranges = batches(&tokens, &limits(3, 60));
        assert_eq!(ranges, vec![0..3, 3..4, 4..6, 6..7]);

        for range in &ranges {
            assert!(range.len() <= 3);
            assert!(tokens[range.clone()].iter().sum::<usize>() <= 100);
        }
        assert!(batches(&[], &limits(3, 60)).is_empty());
        assert_eq!(batches(&[1; 5], &limits(2, 1000)), vec![0..2, 2..4, 4..5]);
    }

    #[test]
    fn counts_with_the_encoding_the_provider_chooses() {
        for model in ["text-embedding-3-small", "gpt-4o-mini", "some-local-model"] {
            let provider = grounded_provider::openai::TokenCounter::for_model(model);
            let ours = TokenCounter::for_openai_model(model);
            for text in ["hello world", "fn main() { println!(\"Ünïcödé ☃\"); }", ""] {
                assert_eq!(ours.count(text), provider.count(text), "{model}: {text:?}");
            }
        }
        // Code costs more tiktoken tokens than words: the count is not a word count.
        let code = "let x: Vec<u8> = (0..10).map(|i| i * 2).collect();";
        assert!(TokenCounter::for_openai_model("text-embedding-3-small").count(code) > 12);
    }
}
