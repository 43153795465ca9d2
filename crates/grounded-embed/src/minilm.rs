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
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert::{BertConfig, BertModel, mean_pool_normalized};
use crate::{EmbedError, Embedder, Embedding, ModelFiles, TokenCounter};

/// The most word-pieces the model reads, `[CLS]` and `[SEP]` included; this is
/// the model's own `max_seq_length`, not the 128 of its `tokenizer.json`.
const MAX_SEQUENCE_TOKENS: usize = 256;

/// `[CLS]` and `[SEP]`, which every encoded text carries.
const SPECIAL_TOKENS: usize = 2;

/// Texts run through the network together. Past about 8, candle gains
/// little from larger batches on CPU; 32 bounds memory and padding.
const SUB_BATCH: usize = 32;

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
    device: Device,
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
        let _span = tracing::info_span!("embed.load", dir = %files.dir.display()).entered();
        let started = Instant::now();
        let device = Device::Cpu;

        let config = read_config(&files.config())?;
        let (counting, inference) = load_tokenizers(&files.tokenizer())?;
        let model = load_network(&config, &files.weights(), &device)?;

        tracing::info!(
            model_id = MODEL_ID,
            layers = config.num_hidden_layers,
            dimension = config.hidden_size,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedding model loaded"
        );
        let dimension = config.hidden_size;
        let inner = Inner {
            model,
            counting,
            inference,
            dimension,
            device,
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
    /// Tokenizes everything, runs sub-batches of texts of similar length so
    /// that little padding is computed, and puts the vectors back in input
    /// order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        let _span = tracing::debug_span!("embed.batch", texts = texts.len()).entered();
        let started = Instant::now();
        let encodings = self
            .inference
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(tokenize_error)?;

        let mut vectors = vec![Embedding::new(); texts.len()];
        for group in longest_first(&encodings).chunks(SUB_BATCH) {
            let batch: Vec<&Encoding> = group.iter().map(|&index| &encodings[index]).collect();
            for (&index, vector) in group.iter().zip(self.embed_encodings(&batch)?) {
                vectors[index] = vector;
            }
        }

        let tokens: usize = encodings.iter().map(Encoding::len).sum();
        tracing::debug!(
            texts = texts.len(),
            tokens,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded"
        );
        Ok(vectors)
    }

    /// Runs one padded batch through the network and pools it.
    fn embed_encodings(&self, batch: &[&Encoding]) -> Result<Vec<Embedding>, EmbedError> {
        let (input_ids, attention_mask) =
            padded_batch(batch, &self.device).map_err(inference_error)?;
        let hidden = self
            .model
            .forward(&input_ids, &attention_mask)
            .map_err(inference_error)?;
        let pooled = mean_pool_normalized(&hidden, &attention_mask).map_err(inference_error)?;
        pooled.to_vec2::<f32>().map_err(inference_error)
    }
}

/// Indices of `encodings`, longest first; ties keep input order.
fn longest_first(encodings: &[Encoding]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..encodings.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(encodings[index].len()));
    order
}

/// Builds (batch, longest) `input_ids` and `attention_mask` tensors, padding
/// each text on the right with id 0 and mask 0.
fn padded_batch(batch: &[&Encoding], device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let width = batch
        .iter()
        .map(|encoding| encoding.len())
        .max()
        .unwrap_or(0);
    let mut ids = Vec::with_capacity(batch.len() * width);
    let mut mask = Vec::with_capacity(batch.len() * width);
    for encoding in batch {
        let padding = width - encoding.len();
        ids.extend_from_slice(encoding.get_ids());
        ids.extend(std::iter::repeat_n(0u32, padding));
        mask.extend(std::iter::repeat_n(1u32, encoding.len()));
        mask.extend(std::iter::repeat_n(0u32, padding));
    }
    let shape = (batch.len(), width);
    Ok((
        Tensor::from_vec(ids, shape, device)?,
        Tensor::from_vec(mask, shape, device)?,
    ))
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
/// batches are padded to their longest text by [`padded_batch`]).
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

fn load_network(
    config: &BertConfig,
    path: &Path,
    device: &Device,
) -> Result<BertModel, EmbedError> {
    let tensors =
        candle_core::safetensors::load(path, device).map_err(|err| load_error(path, err))?;
    let weights = VarBuilder::from_tensors(tensors, DType::F32, device);
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

fn inference_error(err: candle_core::Error) -> EmbedError {
    EmbedError::Inference(err.to_string())
}
