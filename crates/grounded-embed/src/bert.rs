//! The BERT encoder, forward pass only, as all-MiniLM-L6-v2 needs it.
//!
//! Texts are packed, not padded: the tokens of every text in a batch are
//! the rows of one matrix, so the linear layers, which are most of the
//! work, compute nothing for padding, and attention runs text by text over
//! its own tokens only (so it needs no mask). The query, key and value
//! projections are one matrix product, the attention scale is folded into
//! the query weights, and biases and residuals are added by the products
//! themselves.
//!
//! This is not a general BERT: there is no pooler head, no dropout
//! (inference only), no relative position embeddings, and every token is
//! of type 0 because the embedder never encodes sentence pairs. Mean
//! pooling and L2 normalisation are here too; tokenizing and batching are
//! done by [`crate::MiniLm`]. Each call runs on the calling thread;
//! `MiniLm` spreads batches over threads.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::kernels::{MatMut, MatRef, add_bias, gelu, layer_norm, matmul, softmax};

/// The fields of a Hugging Face `config.json` that the forward pass reads.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".to_owned()
}

impl BertConfig {
    /// Rejects settings this forward pass does not implement, so that an
    /// unexpected model fails at load time instead of giving wrong vectors.
    pub fn check_supported(&self) -> Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!("unsupported hidden_act {:?}", self.hidden_act));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "unsupported position_embedding_type {:?}",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.type_vocab_size == 0 {
            return Err("type_vocab_size is 0".to_owned());
        }
        Ok(())
    }
}

/// The tensors of a safetensors file, widened to `f32`, by name.
pub(crate) struct Weights {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Weights {
    /// Reads the floating-point tensors (`f32`, `f16`, `bf16`) of the file
    /// at `path`. Others, such as the integer `position_ids` some
    /// checkpoints carry, are not weights and are left out.
    pub fn read(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
        let file = SafeTensors::deserialize(&bytes).map_err(|err| err.to_string())?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            if let Some(values) = widen(view.dtype(), view.data()) {
                tensors.insert(name, (view.shape().to_vec(), values));
            }
        }
        Ok(Self { tensors })
    }

    /// Takes the tensor `name`, which must have exactly `shape`.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let (found, values) = self
            .tensors
            .remove(name)
            .ok_or_else(|| format!("tensor {name} is missing or not floating-point"))?;
        if found != shape {
            return Err(format!(
                "tensor {name} has shape {found:?}, expected {shape:?}"
            ));
        }
        Ok(values)
    }
}

/// Little-endian tensor bytes as `f32` values.
fn widen(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let values = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    };
    Some(values)
}

/// A dense layer, its weight stored transposed (inputs x outputs, row
/// major) so that `x · W` reads it row by row.
struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// Loads `{prefix}.weight` (outputs x inputs, as PyTorch stores it) and
    /// `{prefix}.bias`.
    fn load(
        weights: &mut Weights,
        prefix: &str,
        inputs: usize,
        outputs: usize,
    ) -> Result<Self, String> {
        let stored = weights.take(&format!("{prefix}.weight"), &[outputs, inputs])?;
        let bias = weights.take(&format!("{prefix}.bias"), &[outputs])?;
        Ok(Self {
            weight: transpose(&stored, outputs, inputs),
            bias,
            inputs,
            outputs,
        })
    }

    /// Stacks layers of the same inputs side by side: one product computes
    /// all their outputs.
    fn concat(parts: Vec<Self>) -> Self {
        let inputs = parts[0].inputs;
        let outputs: usize = parts.iter().map(|part| part.outputs).sum();
        let mut weight = Vec::with_capacity(inputs * outputs);
        for row in 0..inputs {
            for part in &parts {
                weight
                    .extend_from_slice(&part.weight[row * part.outputs..(row + 1) * part.outputs]);
            }
        }
        let bias = parts
            .iter()
            .flat_map(|part| part.bias.iter().copied())
            .collect();
        Self {
            weight,
            bias,
            inputs,
            outputs,
        }
    }

    /// Multiplies weight and bias by `factor`.
    fn scale(&mut self, factor: f32) {
        self.weight.iter_mut().for_each(|w| *w *= factor);
        self.bias.iter_mut().for_each(|b| *b *= factor);
    }

    /// `out = x · W + b`, or `out += x · W + b` when `accumulate` (for a
    /// residual already in `out`); `x` is tokens x inputs.
    fn forward(&self, x: &[f32], out: &mut [f32], accumulate: bool, threads: usize) {
        let tokens = x.len() / self.inputs;
        if accumulate {
            add_bias(out, &self.bias);
        } else {
            for row in out.chunks_exact_mut(self.outputs) {
                row.copy_from_slice(&self.bias);
            }
        }
        matmul(
            MatMut::rows(out, tokens, self.outputs, self.outputs),
            MatRef::rows(x, tokens, self.inputs, self.inputs),
            MatRef::rows(&self.weight, self.inputs, self.outputs, self.outputs),
            true,
            threads,
        );
    }
}

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn load(weights: &mut Weights, prefix: &str, width: usize, eps: f64) -> Result<Self, String> {
        Ok(Self {
            gamma: weights.take(&format!("{prefix}.weight"), &[width])?,
            beta: weights.take(&format!("{prefix}.bias"), &[width])?,
            eps: eps as f32,
        })
    }

    fn forward(&self, rows: &mut [f32]) {
        layer_norm(rows, self.gamma.len(), &self.gamma, &self.beta, self.eps);
    }
}

/// One encoder layer: self-attention, then the feed-forward block, each
/// followed by its residual connection and layer norm.
struct EncoderLayer {
    /// Query (pre-scaled by 1/√head_dim), key and value, side by side.
    qkv: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl EncoderLayer {
    fn load(weights: &mut Weights, prefix: &str, config: &BertConfig) -> Result<Self, String> {
        let hidden = config.hidden_size;
        let inner = config.intermediate_size;
        let attention = format!("{prefix}.attention");
        let mut query = Linear::load(weights, &format!("{attention}.self.query"), hidden, hidden)?;
        query.scale(1.0 / ((hidden / config.num_attention_heads) as f32).sqrt());
        let key = Linear::load(weights, &format!("{attention}.self.key"), hidden, hidden)?;
        let value = Linear::load(weights, &format!("{attention}.self.value"), hidden, hidden)?;
        let eps = config.layer_norm_eps;
        Ok(Self {
            qkv: Linear::concat(vec![query, key, value]),
            attention_output: Linear::load(
                weights,
                &format!("{attention}.output.dense"),
                hidden,
                hidden,
            )?,
            attention_norm: LayerNorm::load(
                weights,
                &format!("{attention}.output.LayerNorm"),
                hidden,
                eps,
            )?,
            intermediate: Linear::load(
                weights,
                &format!("{prefix}.intermediate.dense"),
                hidden,
                inner,
            )?,
            output: Linear::load(weights, &format!("{prefix}.output.dense"), inner, hidden)?,
            output_norm: LayerNorm::load(
                weights,
                &format!("{prefix}.output.LayerNorm"),
                hidden,
                eps,
            )?,
        })
    }
}

/// Working memory of one forward pass, sized for its tokens.
struct Buffers {
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    expanded: Vec<f32>,
    scores: Vec<f32>,
}

/// The whole encoder: embeddings and a stack of layers.
pub(crate) struct BertModel {
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    token_type_zero: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    hidden: usize,
    heads: usize,
    vocab_size: usize,
    max_positions: usize,
}

impl BertModel {
    /// Builds the network from weights named as in a Hugging Face `BertModel`
    /// checkpoint (`embeddings.*`, `encoder.layer.N.*`).
    pub fn load(config: &BertConfig, mut weights: Weights) -> Result<Self, String> {
        let hidden = config.hidden_size;
        let word_embeddings = weights.take(
            "embeddings.word_embeddings.weight",
            &[config.vocab_size, hidden],
        )?;
        let position_embeddings = weights.take(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, hidden],
        )?;
        let token_types = weights.take(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, hidden],
        )?;
        let embedding_norm = LayerNorm::load(
            &mut weights,
            "embeddings.LayerNorm",
            hidden,
            config.layer_norm_eps,
        )?;
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                EncoderLayer::load(&mut weights, &format!("encoder.layer.{index}"), config)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            word_embeddings,
            position_embeddings,
            token_type_zero: token_types[..hidden].to_vec(),
            embedding_norm,
            layers,
            hidden,
            heads: config.num_attention_heads,
            vocab_size: config.vocab_size,
            max_positions: config.max_position_embeddings,
        })
    }

    /// Encodes each text's word-piece ids (`[CLS]` … `[SEP]`) and returns its
    /// mean-pooled, L2-normalised vector, in order. The matrix products use
    /// `threads` threads of the current rayon pool (1: the calling thread).
    pub fn embed(&self, texts: &[&[u32]], threads: usize) -> Result<Vec<Vec<f32>>, String> {
        self.check_input(texts)?;
        let hidden = self.encode(texts, threads);
        Ok(self.mean_pool_normalized(&hidden, texts))
    }

    fn check_input(&self, texts: &[&[u32]]) -> Result<(), String> {
        for ids in texts {
            if ids.len() > self.max_positions {
                return Err(format!(
                    "{} tokens exceed the model's {} positions",
                    ids.len(),
                    self.max_positions
                ));
            }
            if let Some(id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
                return Err(format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }

    /// The last hidden states of every token, texts one after another
    /// (tokens x hidden).
    fn encode(&self, texts: &[&[u32]], threads: usize) -> Vec<f32> {
        let tokens: usize = texts.iter().map(|ids| ids.len()).sum();
        let longest = texts.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let inner = self
            .layers
            .first()
            .map_or(0, |layer| layer.intermediate.outputs);
        let mut buffers = Buffers {
            qkv: vec![0.0; tokens * 3 * self.hidden],
            context: vec![0.0; tokens * self.hidden],
            attended: vec![0.0; tokens * self.hidden],
            expanded: vec![0.0; tokens * inner],
            scores: vec![0.0; longest * longest],
        };

        let mut states = self.embed_tokens(texts, tokens);
        for layer in &self.layers {
            self.run_layer(layer, texts, &mut states, &mut buffers, threads);
        }
        states
    }

    /// Word + position + type-0 embeddings, layer-normalised.
    fn embed_tokens(&self, texts: &[&[u32]], tokens: usize) -> Vec<f32> {
        let width = self.hidden;
        let mut states = Vec::with_capacity(tokens * width);
        for ids in texts {
            for (position, &id) in ids.iter().enumerate() {
                let word = &self.word_embeddings[id as usize * width..][..width];
                let place = &self.position_embeddings[position * width..][..width];
                states.extend(
                    word.iter()
                        .zip(place)
                        .zip(&self.token_type_zero)
                        .map(|((w, p), t)| w + p + t),
                );
            }
        }
        self.embedding_norm.forward(&mut states);
        states
    }

    fn run_layer(
        &self,
        layer: &EncoderLayer,
        texts: &[&[u32]],
        states: &mut [f32],
        buffers: &mut Buffers,
        threads: usize,
    ) {
        layer.qkv.forward(states, &mut buffers.qkv, false, threads);
        self.attend(texts, buffers);

        buffers.attended.copy_from_slice(states);
        layer
            .attention_output
            .forward(&buffers.context, &mut buffers.attended, true, threads);
        layer.attention_norm.forward(&mut buffers.attended);

        layer
            .intermediate
            .forward(&buffers.attended, &mut buffers.expanded, false, threads);
        gelu(&mut buffers.expanded);
        states.copy_from_slice(&buffers.attended);
        layer
            .output
            .forward(&buffers.expanded, states, true, threads);
        layer.output_norm.forward(states);
    }

    /// Scaled dot-product attention of each text over its own tokens, head
    /// by head, from `buffers.qkv` into `buffers.context`.
    fn attend(&self, texts: &[&[u32]], buffers: &mut Buffers) {
        let width = self.hidden;
        let head_dim = width / self.heads;
        let qkv_width = 3 * width;
        let mut first = 0;
        for ids in texts {
            let len = ids.len();
            let rows = &buffers.qkv[first * qkv_width..(first + len) * qkv_width];
            let context = &mut buffers.context[first * width..(first + len) * width];
            let scores = &mut buffers.scores[..len * len];
            for head in 0..self.heads {
                let column = head * head_dim;
                let query = MatRef::rows(&rows[column..], len, head_dim, qkv_width);
                let key = MatRef::transposed(&rows[width + column..], len, head_dim, qkv_width);
                let value = MatRef::rows(&rows[2 * width + column..], len, head_dim, qkv_width);

                matmul(
                    MatMut::rows(&mut *scores, len, len, len),
                    query,
                    key,
                    false,
                    1,
                );
                softmax(scores, len);
                let out = MatMut::rows(&mut context[column..], len, head_dim, width);
                matmul(out, MatRef::rows(&*scores, len, len, len), value, false, 1);
            }
            first += len;
        }
    }

    /// The mean of each text's token states, scaled to unit length.
    fn mean_pool_normalized(&self, states: &[f32], texts: &[&[u32]]) -> Vec<Vec<f32>> {
        let width = self.hidden;
        let mut first = 0;
        let mut vectors = Vec::with_capacity(texts.len());
        for ids in texts {
            let mut mean = vec![0.0f32; width];
            for row in states[first * width..(first + ids.len()) * width].chunks_exact(width) {
                mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
            }
            let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            mean.iter_mut().for_each(|v| *v /= norm);
            vectors.push(mean);
            first += ids.len();
        }
        vectors
    }
}
