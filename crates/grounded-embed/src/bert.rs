//! The BERT encoder, forward pass only, as all-MiniLM-L6-v2 needs it.
//!
//! This module turns padded word-piece ids and their attention mask into the
//! last hidden states. It is not a general BERT: there is no pooler head, no
//! dropout (inference only), no relative position embeddings, and every token
//! is of type 0 because the embedder never encodes sentence pairs. Mean
//! pooling is here too, as a tensor operation; tokenizing and batching are
//! done by [`crate::MiniLm`].

use candle_core::{D, DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// Added to the attention score of a padded key so that softmax gives it a
/// weight of exactly zero in f32.
const MASKED_SCORE: f64 = -1.0e9;

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
        Ok(())
    }
}

/// Word, position and token-type embeddings, summed and normalised.
struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type_zero: Tensor,
    layer_norm: LayerNorm,
}

impl Embeddings {
    fn load(config: &BertConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let word = candle_nn::embedding(config.vocab_size, hidden, vb.pp("word_embeddings"))?;
        let position = candle_nn::embedding(
            config.max_position_embeddings,
            hidden,
            vb.pp("position_embeddings"),
        )?;
        let token_type = candle_nn::embedding(
            config.type_vocab_size,
            hidden,
            vb.pp("token_type_embeddings"),
        )?;
        let token_type_zero = token_type.embeddings().get(0)?;
        let layer_norm = candle_nn::layer_norm(hidden, config.layer_norm_eps, vb.pp("LayerNorm"))?;
        Ok(Self {
            word,
            position,
            token_type_zero,
            layer_norm,
        })
    }

    /// `input_ids` is (batch, seq) of u32; returns (batch, seq, hidden).
    fn forward(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let seq_len = input_ids.dim(1)?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let words = self.word.forward(input_ids)?;
        let summed = words
            .broadcast_add(&self.position.forward(&positions)?)?
            .broadcast_add(&self.token_type_zero)?;
        self.layer_norm.forward(&summed)
    }
}

/// Multi-head self-attention followed by its output projection, residual
/// connection and layer norm.
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    layer_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(config: &BertConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let own = vb.pp("self");
        let out = vb.pp("output");
        Ok(Self {
            query: candle_nn::linear(hidden, hidden, own.pp("query"))?,
            key: candle_nn::linear(hidden, hidden, own.pp("key"))?,
            value: candle_nn::linear(hidden, hidden, own.pp("value"))?,
            output: candle_nn::linear(hidden, hidden, out.pp("dense"))?,
            layer_norm: candle_nn::layer_norm(hidden, config.layer_norm_eps, out.pp("LayerNorm"))?,
            heads: config.num_attention_heads,
            head_dim: hidden / config.num_attention_heads,
        })
    }

    /// Splits (batch, seq, hidden) into (batch, heads, seq, head_dim).
    fn split_heads(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq_len, _) = xs.dims3()?;
        xs.reshape((batch, seq_len, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `mask_bias` is (batch, 1, 1, seq): 0 for real tokens, a large negative
    /// number for padding, so no token attends to padding.
    fn forward(&self, hidden: &Tensor, mask_bias: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq_len, width) = hidden.dims3()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let query = (self.split_heads(&self.query.forward(hidden)?)? * scale)?;
        let key = self.split_heads(&self.key.forward(hidden)?)?;
        let value = self.split_heads(&self.value.forward(hidden)?)?;

        let scores = query.matmul(&key.t()?)?.broadcast_add(mask_bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights
            .matmul(&value)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, seq_len, width))?;

        let projected = self.output.forward(&context)?;
        self.layer_norm.forward(&(projected + hidden)?)
    }
}

/// The position-wise feed-forward block: expand, GELU (erf form, which is
/// what `hidden_act: gelu` means in Hugging Face configs), project back,
/// residual connection and layer norm.
struct FeedForward {
    intermediate: Linear,
    output: Linear,
    layer_norm: LayerNorm,
}

impl FeedForward {
    fn load(config: &BertConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (hidden, inner) = (config.hidden_size, config.intermediate_size);
        let out = vb.pp("output");
        Ok(Self {
            intermediate: candle_nn::linear(hidden, inner, vb.pp("intermediate").pp("dense"))?,
            output: candle_nn::linear(inner, hidden, out.pp("dense"))?,
            layer_norm: candle_nn::layer_norm(hidden, config.layer_norm_eps, out.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let expanded = self.intermediate.forward(hidden)?.gelu_erf()?;
        let projected = self.output.forward(&expanded)?;
        self.layer_norm.forward(&(projected + hidden)?)
    }
}

/// One encoder layer: attention, then feed-forward.
struct EncoderLayer {
    attention: Attention,
    feed_forward: FeedForward,
}

impl EncoderLayer {
    fn load(config: &BertConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            attention: Attention::load(config, vb.pp("attention"))?,
            feed_forward: FeedForward::load(config, vb.clone())?,
        })
    }

    fn forward(&self, hidden: &Tensor, mask_bias: &Tensor) -> candle_core::Result<Tensor> {
        let attended = self.attention.forward(hidden, mask_bias)?;
        self.feed_forward.forward(&attended)
    }
}

/// The whole encoder: embeddings and a stack of layers.
pub(crate) struct BertModel {
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
}

impl BertModel {
    /// Builds the network from weights named as in a Hugging Face `BertModel`
    /// checkpoint (`embeddings.*`, `encoder.layer.N.*`).
    pub fn load(config: &BertConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let embeddings = Embeddings::load(config, vb.pp("embeddings"))?;
        let layers = (0..config.num_hidden_layers)
            .map(|index| EncoderLayer::load(config, vb.pp("encoder.layer").pp(index)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { embeddings, layers })
    }

    /// Runs the encoder on (batch, seq) u32 `input_ids` with a (batch, seq)
    /// u32 `attention_mask` (1 for real tokens, 0 for padding) and returns
    /// the last hidden states, (batch, seq, hidden), in f32.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let mask_bias = attention_bias(attention_mask)?;
        let mut hidden = self.embeddings.forward(input_ids)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &mask_bias)?;
        }
        Ok(hidden)
    }
}

/// Turns a (batch, seq) 0/1 mask into the (batch, 1, 1, seq) bias added to
/// attention scores.
fn attention_bias(attention_mask: &Tensor) -> candle_core::Result<Tensor> {
    let (batch, seq_len) = attention_mask.dims2()?;
    let keep = attention_mask.to_dtype(DType::F32)?;
    let bias = ((keep - 1.0)? * -MASKED_SCORE)?;
    bias.reshape((batch, 1, 1, seq_len))
}

/// Mean of the hidden states over the real tokens of each text, then L2
/// normalisation: (batch, seq, hidden) and (batch, seq) to (batch, hidden).
pub(crate) fn mean_pool_normalized(
    hidden: &Tensor,
    attention_mask: &Tensor,
) -> candle_core::Result<Tensor> {
    let mask = attention_mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1.0, f64::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let norms = mean
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norms)
}
