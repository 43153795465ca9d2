//! SmolLM2-135M-Instruct run in process: answers with no API.
//!
//! [`LocalChat`] loads the 4-bit (Q4_1) GGUF build of the model with
//! candle's quantized llama on the CPU, rebuilds its tokenizer from the GGUF
//! metadata ([`tokenizer`]) and generates in the ChatML form the model was
//! tuned on ([`generate`]). The file is found or fetched by
//! [`resolve_model_file`]; its weights are widened to floats as they load
//! ([`weights`] says why and what it costs).
//!
//! One answer at a time: the model keeps its attention (KV) cache inside the
//! weights' structure, so a generation holds the model's lock from the
//! prompt's first token to the answer's last; a second request waits for
//! it, so under load answers queue (about 4 s of prompt and 5 s of answer
//! each on 2 cores). A pool of several models would answer in parallel at
//! the cost of their memory (about 540 MB of widened weights each) and of
//! cores that one generation already keeps busy.
//!
//! This is not a hosted model's match: a 135M-parameter model does not cite
//! by itself (its markers are written by the generator, see [`cite`]) and
//! knows little, so it is the fallback when no API is configured, not the
//! default of a serious deployment.

mod cite;
mod generate;
mod model_file;
mod tokenizer;
mod weights;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use candle_core::quantized::gguf_file;
use candle_transformers::models::quantized_llama::{self, ModelWeights};
use futures::StreamExt;
use grounded_core::ChatMessage;
use tokio::sync::mpsc;

use self::generate::{ChatTemplate, GenerateSettings, Generated};
use self::tokenizer::GgufTokenizer;
use crate::{ChatCompletion, ChatEvent, ChatModel, ChatRequest, ChatStream, ProviderError, Usage};

pub use self::cite::CitationRule;
pub use self::generate::{REPEAT_LAST_N, REPEAT_PENALTY};
pub use self::model_file::{MODEL_FILE_NAME, ModelFileSource, resolve_model_file};

/// The id reported in answers and usage.
pub const MODEL_ID: &str = "SmolLM2-135M-Instruct-Q4_1";

/// How to find and run the local model.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalModelOptions {
    /// A GGUF file to use instead of the cached or fetched one; it must be
    /// the pinned file all the same.
    pub model_file: Option<PathBuf>,
    /// grounded's cache directory (`grounded_core::default_cache_dir()`);
    /// the file is kept in `models/SmolLM2-135M-Instruct-Q4_1/` below it.
    pub cache_dir: PathBuf,
    /// Only the explicit file and the cache; no hub, no pip.
    pub offline: bool,
    /// The penalty on tokens the answer already holds; see
    /// [`REPEAT_PENALTY`].
    pub repeat_penalty: f32,
    /// Keep the 4-bit weights (230 MB resident at peak) instead of widening
    /// them to floats (1.0 GB at peak, 540 MB of weights), at the cost of prompts processed about 20
    /// times slower and answers about half as fast; see [`weights`].
    pub quantized: bool,
}

impl LocalModelOptions {
    /// The cached or fetched file in `cache_dir`, network allowed, the
    /// default repeat penalty.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_file: None,
            cache_dir: cache_dir.into(),
            offline: false,
            repeat_penalty: REPEAT_PENALTY,
            quantized: false,
        }
    }
}

/// SmolLM2-135M-Instruct in process, a [`ChatModel`].
///
/// Cloning is cheap and shares the weights. The CPU threads are candle's,
/// set for the whole process by `CANDLE_NUM_THREADS` (or
/// `RAYON_NUM_THREADS`) before the first generation, physical cores by
/// default.
#[derive(Clone)]
pub struct LocalChat {
    shared: Arc<Shared>,
}

struct Shared {
    model: Mutex<ModelWeights>,
    tokens: GgufTokenizer,
    context_length: usize,
    repeat_penalty: f32,
    model_file: PathBuf,
}

impl std::fmt::Debug for LocalChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChat")
            .field("model_file", &self.shared.model_file)
            .field("context_length", &self.shared.context_length)
            .finish_non_exhaustive()
    }
}

impl LocalChat {
    /// Finds (or fetches) the model file and loads it. Blocking: it may run
    /// pip and hashes and reads about 100 MB; call it from
    /// `spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`ProviderError::ModelFiles`] when the file cannot be found or
    /// fetched, [`ProviderError::Local`] when it cannot be read as a model.
    pub fn load(options: &LocalModelOptions) -> Result<Self, ProviderError> {
        let (path, source) = resolve_model_file(
            options.model_file.as_deref(),
            &options.cache_dir,
            options.offline,
        )?;
        let chat = Self::load_file(&path, options)?;
        tracing::info!(
            path = %path.display(),
            %source,
            context_length = chat.shared.context_length,
            "local chat model loaded"
        );
        Ok(chat)
    }

    /// Loads a GGUF file that has been verified.
    fn load_file(path: &Path, options: &LocalModelOptions) -> Result<Self, ProviderError> {
        let unreadable = |err: &dyn std::fmt::Display| {
            ProviderError::Local(format!("cannot read {}: {err}", path.display()))
        };
        let mut file = File::open(path).map_err(|err| unreadable(&err))?;
        let content = gguf_file::Content::read(&mut file).map_err(|err| unreadable(&err))?;

        let tokens = tokenizer::from_gguf(&content)?;
        let context_length = context_length(&content);
        let model =
            weights::load(content, &mut file, options.quantized).map_err(|err| unreadable(&err))?;
        Ok(Self {
            shared: Arc::new(Shared {
                model: Mutex::new(model),
                tokens,
                context_length,
                repeat_penalty: options.repeat_penalty,
                model_file: path.to_owned(),
            }),
        })
    }

    /// The most tokens the model sees at once, prompt and answer together.
    pub fn context_length(&self) -> usize {
        self.shared.context_length
    }

    /// The tokenizer, rebuilt from the GGUF metadata. Text never encodes
    /// to a control token (see [`tokenizer`]).
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.shared.tokens.tokenizer
    }

    /// The prompt's token ids for `messages` in the chat template, control
    /// tokens included: what [`Usage::prompt_tokens`] counts.
    ///
    /// # Errors
    /// [`ProviderError::Local`] when the tokenizer fails.
    pub fn prompt_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, ProviderError> {
        let template = ChatTemplate {
            tokens: &self.shared.tokens,
        };
        template.prompt_ids(messages)
    }

    /// Runs one generation on the blocking pool, sending each delta to
    /// `deltas` (when given) as soon as it is complete text.
    async fn run(
        &self,
        request: &ChatRequest,
        deltas: Option<mpsc::UnboundedSender<Result<ChatEvent, ProviderError>>>,
    ) -> Result<(Generated, Usage), ProviderError> {
        let shared = Arc::clone(&self.shared);
        let prompt = self.prompt_ids(&request.messages)?;
        let settings = GenerateSettings {
            max_tokens: request.max_tokens as usize,
            temperature: request.temperature,
            repeat_penalty: shared.repeat_penalty,
            context_length: shared.context_length,
        };
        let citations = request.cite_sources.as_deref().map(CitationRule::new);
        tokio::task::spawn_blocking(move || {
            shared.generate(&prompt, settings, citations.as_ref(), deltas.as_ref())
        })
        .await
        .map_err(|err| ProviderError::Local(format!("generation stopped: {err}")))?
    }
}

impl Shared {
    /// Takes the model's lock and generates. A lock poisoned by a panic of
    /// another generation is taken all the same: every generation starts by
    /// clearing the cache that panic could have left half-written.
    fn generate(
        &self,
        prompt: &[u32],
        settings: GenerateSettings,
        citations: Option<&CitationRule>,
        deltas: Option<&mpsc::UnboundedSender<Result<ChatEvent, ProviderError>>>,
    ) -> Result<(Generated, Usage), ProviderError> {
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        let started = std::time::Instant::now();
        let mut on_delta = |text: &str| {
            deltas.is_none_or(|sender| sender.send(Ok(ChatEvent::Delta(text.to_owned()))).is_ok())
        };
        let generated = generate::generate(
            &mut model,
            &self.tokens,
            prompt,
            settings,
            citations,
            &mut on_delta,
        )?;
        drop(model);

        tracing::debug!(
            prompt_tokens = prompt.len(),
            completion_tokens = generated.ids.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            finish_reason = generated.finish_reason,
            "local generation"
        );
        let usage = usage(prompt.len(), generated.ids.len());
        Ok((generated, usage))
    }
}

/// The counts are the model's own tokenizer's and exact, as a hosted
/// provider's reported usage would be, so they are not marked as counted
/// locally (which means estimated for lack of a report).
fn usage(prompt_tokens: usize, completion_tokens: usize) -> Usage {
    Usage {
        prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
        completion_tokens: u32::try_from(completion_tokens).unwrap_or(u32::MAX),
        counted_locally: false,
    }
}

/// The context the model was trained for (`llama.context_length`, 8192 for
/// SmolLM2-135M), but no more than candle's quantized llama has rotary
/// tables for ([`quantized_llama::MAX_SEQ_LEN`], 4096): beyond it the model
/// would fail at every token.
fn context_length(content: &gguf_file::Content) -> usize {
    let trained = content
        .metadata
        .get("llama.context_length")
        .and_then(|value| value.to_u32().ok())
        .map_or(quantized_llama::MAX_SEQ_LEN, |length| length as usize);
    trained.min(quantized_llama::MAX_SEQ_LEN)
}

#[async_trait]
impl ChatModel for LocalChat {
    fn model_id(&self) -> &str {
        MODEL_ID
    }

    /// An encoding failure (which this tokenizer has no input for) counts
    /// one token per byte, an overestimate that keeps prompts in budget.
    fn count_tokens(&self, text: &str) -> usize {
        generate::encode(self.tokenizer(), text).map_or(text.len(), |ids| ids.len())
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        let (generated, usage) = self.run(request, None).await?;
        let text = self
            .tokenizer()
            .decode(&generated.ids, true)
            .map_err(|err| ProviderError::Local(format!("cannot decode the answer: {err}")))?;
        Ok(ChatCompletion {
            text,
            usage,
            finish_reason: Some(generated.finish_reason.to_owned()),
        })
    }

    /// Fails at once, before any delta, when the prompt does not fit.
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let prompt_tokens = self.prompt_ids(&request.messages)?.len();
        generate::check_fits(prompt_tokens, self.context_length())?;

        let (sender, receiver) = mpsc::unbounded_channel();
        let chat = self.clone();
        let request = request.clone();
        tokio::spawn(async move {
            let end = match chat.run(&request, Some(sender.clone())).await {
                Ok((generated, usage)) => Ok(ChatEvent::Done {
                    usage,
                    finish_reason: Some(generated.finish_reason.to_owned()),
                }),
                Err(err) => Err(err),
            };
            let _ = sender.send(end);
        });
        Ok(events(receiver))
    }
}

/// The receiver as a stream that ends after `Done` or an error, and turns
/// an end without either (a generation that panicked) into an error item.
fn events(receiver: mpsc::UnboundedReceiver<Result<ChatEvent, ProviderError>>) -> ChatStream {
    let stream = futures::stream::unfold(Some(receiver), |state| async move {
        let mut receiver = state?;
        match receiver.recv().await {
            Some(Ok(ChatEvent::Delta(text))) => Some((Ok(ChatEvent::Delta(text)), Some(receiver))),
            Some(last) => Some((last, None)),
            None => Some((
                Err(ProviderError::Local(
                    "generation stopped before its end".into(),
                )),
                None,
            )),
        }
    });
    stream.boxed()
}
