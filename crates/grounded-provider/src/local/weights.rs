//! Loading the model's weights, quantized as shipped or widened to floats.
//!
//! candle 0.11 has no fast CPU kernel for Q4_1 weights with SmolLM2's
//! width (576 is not a multiple of the 256 its repacked kernels need): a
//! prompt is then run one row at a time, measured at 9 tokens per second on
//! 2 cores, so an 800-token grounded prompt takes 90 s before the first
//! answer token. Widened to floats, the same prompt runs through candle's
//! matrix multiplication at 170-180 tokens per second, and generation is
//! about twice as fast, for more memory: the process peaked at 1.0 GB
//! resident while loading (the F16 copy and the f32 weights at once) and
//! keeps about 540 MB of weights, against 230 MB at peak for the 4-bit ones.
//! [`load`] widens by default; `quantized = true` keeps the 4-bit weights.
//!
//! The widening goes through an in-memory GGUF copy whose weights are F16,
//! which candle's quantized llama turns into f32 matrices as it loads them:
//! its loader reads only GGUF, and the values of Q4_1 (a 16-bit scale and
//! offset per block of 32) lose nothing that matters in F16.

use std::fs::File;
use std::io::Cursor;

use candle_core::Device;
use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_transformers::models::quantized_llama::ModelWeights;

/// Loads the model from `file` (whose header is `content`), widening its
/// weights unless `quantized`.
///
/// # Errors
/// candle's error when a tensor cannot be read or converted.
pub fn load(
    content: Content,
    file: &mut File,
    quantized: bool,
) -> candle_core::Result<ModelWeights> {
    if quantized {
        return ModelWeights::from_gguf(content, file, &Device::Cpu);
    }
    let mut widened = Cursor::new(widened_copy(&content, file)?);
    let content = Content::read(&mut widened)?;
    ModelWeights::from_gguf(content, &mut widened, &Device::Cpu)
}

/// The GGUF file again, in memory, with every quantized tensor as F16.
fn widened_copy(content: &Content, file: &mut File) -> candle_core::Result<Vec<u8>> {
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let tensor = content.tensor(file, name, &Device::Cpu)?;
        tensors.push((name.as_str(), widen(tensor)?));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors
        .iter()
        .map(|(name, tensor)| (*name, tensor))
        .collect();

    let mut buffer = Cursor::new(Vec::new());
    gguf_file::write(&mut buffer, &metadata, &tensor_refs)?;
    Ok(buffer.into_inner())
}

fn widen(tensor: QTensor) -> candle_core::Result<QTensor> {
    if matches!(
        tensor.dtype(),
        GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
    ) {
        return Ok(tensor);
    }
    let values = tensor.dequantize(&Device::Cpu)?;
    QTensor::quantize(&values, GgmlDType::F16)
}
