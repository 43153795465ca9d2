//! all-MiniLM-L6-v2 run in process on the CPU: tokenizing, batching, the
//! encoder, mean pooling and L2 normalisation.
//!
//! The vectors match sentence-transformers with its settings for this model
//! (256 word-pieces, mean pooling over the attention mask, normalised). This
//! module does not find or download the model files;
//! [`crate::resolve_model_files`] does.
//!
//! The `tokenizer.json` that ships with the model truncates at 128 and pads
//! every text to 128. Both are overridden here: left as shipped, texts longer
//! than 128 word-pieces get the wrong vector.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use rayon::prelude::*;
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert::{BertConfig, BertModel, Weights};
use crate::{EmbedError, Embedder, Embedding, ModelFiles, TokenCounter};

/// The most word-pieces the model reads, `[CLS]` and `[SEP]` included; this is
/// the model's own `max_seq_length`, not the 128 of its `tokenizer.json`.
const MAX_SEQUENCE_TOKENS: usize = 256;

/// `[CLS]` and `[SEP]`, which every encoded text carries.
const SPECIAL_TOKENS: usize = 2;

/// The most tokens one forward pass packs together. Matrix products gain
/// little past a few hundred rows, and smaller passes keep their working
/// memory (about 12 MB at 1,024 tokens) in cache; 512 to 2,048 measured
/// within 10% of each other on SciFact abstracts, 4,096 and up slower.
const TOKENS_PER_PASS: usize = 1024;

/// Stable id of the model and the settings that change its vectors.
const MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2@256";

/// The size of the model's vectors, known before its files are loaded.
const DIMENSION: usize = 384;

/// sentence-transformers/all-MiniLM-L6-v2, in process, on the CPU.
///
/// Cheap to share: the network and tokenizers live behind an [`Arc`], and
/// [`Embedder::embed`] runs the work on tokio's blocking pool.
pub struct MiniLm {
    inner: Arc<Inner>,
}

impl MiniLm {
    /// The dimension of the vectors of a built-in model, by model id; `None`
    /// for a model grounded does not ship.
    pub fn known_dimension(model_id: &str) -> Option<usize> {
        (model_id == MODEL_ID).then_some(DIMENSION)
    }
}

struct Inner {
    model: BertModel,
    counting: Tokenizer,
    inference: Tokenizer,
    dimension: usize,
    /// The threads forward passes run on, one pass per thread at a time.
    threads: rayon::ThreadPool,
}

impl fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiniLm")
            .field("model_id", &MODEL_ID)
            .field("dimension", &self.inner.dimension)
            .finish_non_exhaustive()
    }
}

impl MiniLm {
    /// Loads the network and tokenizer from `config.json`, `tokenizer.json`
    /// and `model.safetensors` in `files`.
    ///
    /// Checksums are not verified here; [`crate::resolve_model_files`] does
    /// that for every source it returns.
    ///
    /// # Errors
    /// Fails with [`EmbedError::ModelLoad`] when a file is missing or
    /// malformed, or when the config asks for something the encoder does
    /// not implement (another activation or position embedding type).
    pub fn load(files: &ModelFiles) -> Result<Self, EmbedError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::load_with_threads(files, threads)
    }

    /// [`MiniLm::load`] with forward passes spread over `threads` threads
    /// (at least one) rather than one per core.
    ///
    /// # Errors
    /// As [`MiniLm::load`].
    pub fn load_with_threads(files: &ModelFiles, threads: usize) -> Result<Self, EmbedError> {
        let _span = tracing::info_span!("embed.load", dir = %files.dir.display()).entered();
        let started = Instant::now();

        let config = read_config(&files.config())?;
        let (counting, inference) = load_tokenizers(&files.tokenizer())?;
        let model = load_network(&config, &files.weights())?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|index| format!("grounded-embed-{index}"))
            .build()
            .map_err(|err| {
                EmbedError::Inference(format!("cannot start embedding threads: {err}"))
            })?;

        tracing::info!(
            model_id = MODEL_ID,
            layers = config.num_hidden_layers,
            dimension = config.hidden_size,
            threads = pool.current_num_threads(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedding model loaded"
        );
        let inner = Inner {
            model,
            counting,
            inference,
            dimension: config.hidden_size,
            threads: pool,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Embeds `texts` on the calling thread, one L2-normalised vector per
    /// text in input order. Texts longer than 254 word-pieces are truncated,
    /// as sentence-transformers does.
    ///
    /// # Errors
    /// Fails when tokenizing fails or the network cannot run on the input.
    pub fn embed_sync(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        self.inner.embed(texts)
    }

    /// The word-piece ids the network reads for `text`: `[CLS]`, the text's
    /// word-pieces truncated to fit, `[SEP]`.
    ///
    /// # Errors
    /// Fails when the tokenizer rejects the input.
    pub fn input_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let encoding = self
            .inner
            .inference
            .encode_fast(text, true)
            .map_err(tokenize_error)?;
        Ok(encoding.get_ids().to_vec())
    }
}

#[async_trait]
impl Embedder for MiniLm {
    fn model_id(&self) -> &str {
        MODEL_ID
    }

    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    fn max_input_tokens(&self) -> usize {
        MAX_SEQUENCE_TOKENS - SPECIAL_TOKENS
    }

    fn token_counter(&self) -> TokenCounter<'_> {
        TokenCounter::HuggingFace(&self.inner.counting)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        let inner = Arc::clone(&self.inner);
        let texts = texts.to_vec();
        let task = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            inner.embed(&refs)
        });
        task.await
            .map_err(|err| EmbedError::Inference(format!("embedding task failed: {err}")))?
    }
}

impl Inner {
    /// Tokenizes everything, packs texts of similar length into forward
    /// passes, runs the passes on the embedding threads, and puts the
    /// vectors back in input order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        let _span = tracing::debug_span!("embed.batch", texts = texts.len()).entered();
        let started = Instant::now();
        let encodings = self
            .inference
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(tokenize_error)?;

        let threads = self.threads.current_num_threads();
        let passes = passes(&encodings, threads);
        // Fewer passes than threads (a query, a few short texts): each pass
        // shares its matrix products among the threads left over.
        let threads_per_pass = (threads / passes.len().max(1)).max(1);
        let results: Vec<Result<Vec<Embedding>, String>> = self.threads.install(|| {
            passes
                .par_iter()
                .map(|pass| {
                    let ids: Vec<&[u32]> = pass.iter().map(|&i| encodings[i].get_ids()).collect();
                    self.model.embed(&ids, threads_per_pass)
                })
                .collect()
        });

        let mut vectors = vec![Embedding::new(); texts.len()];
        for (pass, result) in passes.iter().zip(results) {
            let pass_vectors = result.map_err(EmbedError::Inference)?;
            for (&index, vector) in pass.iter().zip(pass_vectors) {
                vectors[index] = vector;
            }
        }

        let tokens: usize = encodings.iter().map(Encoding::len).sum();
        tracing::debug!(
            texts = texts.len(),
            tokens,
            passes = passes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded"
        );
        Ok(vectors)
    }
}

/// Groups the indices of `encodings`, longest first, into forward passes of
/// at most [`TOKENS_PER_PASS`] tokens, and into at least as many passes as
/// there are `threads` when there are enough texts to go round.
fn passes(encodings: &[Encoding], threads: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..encodings.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(encodings[index].len()));
    let total: usize = encodings.iter().map(Encoding::len).sum();
    let budget = total.div_ceil(threads.max(1)).clamp(1, TOKENS_PER_PASS);

    let mut passes: Vec<Vec<usize>> = Vec::new();
    let mut tokens = 0;
    for index in order {
        let len = encodings[index].len();
        match passes.last_mut() {
            Some(pass) if tokens + len <= budget => pass.push(index),
            _ => {
                passes.push(vec![index]);
                tokens = 0;
            }
        }
        tokens += len;
    }
    passes
}

fn read_config(path: &Path) -> Result<BertConfig, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmbedError::Io {
        path: path.to_owned(),
        source,
    })?;
    let config: BertConfig = serde_json::from_str(&text).map_err(|err| load_error(path, err))?;
    config
        .check_supported()
        .map_err(|message| load_error(path, message))?;
    Ok(config)
}

/// Returns the counting tokenizer (no truncation, no padding) and the
/// inference tokenizer (truncation at [`MAX_SEQUENCE_TOKENS`], no padding:
/// texts are packed, not padded, by the encoder).
fn load_tokenizers(path: &Path) -> Result<(Tokenizer, Tokenizer), EmbedError> {
    let mut counting = Tokenizer::from_file(path).map_err(|err| load_error(path, err))?;
    counting.with_padding(None);
    counting
        .with_truncation(None)
        .map_err(|err| load_error(path, err))?;

    let mut inference = counting.clone();
    let truncation = TruncationParams {
        direction: TruncationDirection::Right,
        max_length: MAX_SEQUENCE_TOKENS,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
    };
    inference
        .with_truncation(Some(truncation))
        .map_err(|err| load_error(path, err))?;
    Ok((counting, inference))
}

fn load_network(config: &BertConfig, path: &Path) -> Result<BertModel, EmbedError> {
    let weights = Weights::read(path).map_err(|err| load_error(path, err))?;
    BertModel::load(config, weights).map_err(|err| load_error(path, err))
}

fn load_error(path: &Path, err: impl fmt::Display) -> EmbedError {
    EmbedError::ModelLoad {
        path: path.to_owned(),
        message: err.to_string(),
    }
}

fn tokenize_error(err: tokenizers::Error) -> EmbedError {
    EmbedError::Tokenize(err.to_string())
}
