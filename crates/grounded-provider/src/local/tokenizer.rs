//! SmolLM2's tokenizer, rebuilt from the metadata of its GGUF file.
//!
//! The GGUF file carries no `tokenizer.json`, only the vocabulary, the BPE
//! merges and the token types. SmolLM2's tokenizer is a GPT-2 style
//! byte-level BPE: digits are split one by one, then the GPT-2 regex splits
//! words and a byte-level alphabet maps every byte to a symbol; decoding maps
//! the symbols back to bytes. The control tokens (`<|endoftext|>`,
//! `<|im_start|>`, `<|im_end|>`, …) are registered as special tokens.
//!
//! Text given to [`Tokenizer::encode`] never turns into a control token: a
//! document that contains `<|im_end|>` as text is tokenized as that text, so
//! sources cannot end a message of the chat template. The template inserts
//! control tokens by id (see [`super::ChatTemplate`]).

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use super::cite::CitationTokens;
use crate::ProviderError;

/// The GGUF token type of control tokens (llama.cpp's `CONTROL`).
const CONTROL_TOKEN_TYPE: i32 = 3;

/// The tokenizer and the ids the chat template needs.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    /// `<|im_start|>`, which opens a message.
    pub im_start: u32,
    /// `<|im_end|>`, which closes a message; the model's end of turn.
    pub im_end: u32,
    /// `<|endoftext|>`, the end of a document.
    pub end_of_text: u32,
    /// What citation markers are made of, and where sentences end; `None`
    /// for a vocabulary without single-token digits and brackets, whose
    /// answers then cannot cite by construction.
    pub citations: Option<CitationTokens>,
}

/// Builds the tokenizer from `tokenizer.ggml.*` of the GGUF metadata.
///
/// # Errors
/// [`ProviderError::Local`] when the metadata is not a GPT-2 style BPE or a
/// field is missing or malformed.
pub fn from_gguf(content: &Content) -> Result<GgufTokenizer, ProviderError> {
    let kind = string(content, "tokenizer.ggml.model")?;
    if kind != "gpt2" {
        return Err(bad(format!(
            "tokenizer.ggml.model is {kind:?}, not \"gpt2\""
        )));
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges = merges(&strings(content, "tokenizer.ggml.merges")?)?;
    let types = token_types(content, tokens.len())?;

    let vocab: Vocab = tokens.iter().cloned().zip(0u32..).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|err| bad(format!("cannot build the BPE model: {err}")))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let control = tokens
        .iter()
        .zip(&types)
        .filter(|(_, kind)| **kind == CONTROL_TOKEN_TYPE)
        .map(|(token, _)| AddedToken::from(token.clone(), true));
    tokenizer
        .add_special_tokens(control)
        .map_err(|err| bad(format!("cannot add the control tokens: {err}")))?;
    tokenizer.set_encode_special_tokens(true);

    Ok(GgufTokenizer {
        citations: CitationTokens::from_tokenizer(&tokenizer).ok(),
        im_start: id_of(&tokenizer, "<|im_start|>")?,
        im_end: id_of(&tokenizer, "<|im_end|>")?,
        end_of_text: id_of(&tokenizer, "<|endoftext|>")?,
        tokenizer,
    })
}

fn bad(message: String) -> ProviderError {
    ProviderError::Local(format!("tokenizer in the GGUF metadata: {message}"))
}

fn value<'c>(content: &'c Content, key: &str) -> Result<&'c Value, ProviderError> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| bad(format!("{key} is missing")))
}

fn string(content: &Content, key: &str) -> Result<String, ProviderError> {
    value(content, key)?
        .to_string()
        .cloned()
        .map_err(|err| bad(format!("{key}: {err}")))
}

fn array<'c>(content: &'c Content, key: &str) -> Result<&'c Vec<Value>, ProviderError> {
    value(content, key)?
        .to_vec()
        .map_err(|err| bad(format!("{key}: {err}")))
}

fn strings(content: &Content, key: &str) -> Result<Vec<String>, ProviderError> {
    array(content, key)?
        .iter()
        .map(|item| item.to_string().cloned())
        .collect::<Result<_, _>>()
        .map_err(|err| bad(format!("{key}: {err}")))
}

/// The token types, one per token.
fn token_types(content: &Content, tokens: usize) -> Result<Vec<i32>, ProviderError> {
    let key = "tokenizer.ggml.token_type";
    let types: Vec<i32> = array(content, key)?
        .iter()
        .map(Value::to_i32)
        .collect::<Result<_, _>>()
        .map_err(|err| bad(format!("{key}: {err}")))?;
    if types.len() != tokens {
        return Err(bad(format!(
            "{} token types for {tokens} tokens",
            types.len()
        )));
    }
    Ok(types)
}

/// Merges are stored as `"left right"`; byte-level symbols never contain a
/// plain space, so the first space separates the pair.
fn merges(lines: &[String]) -> Result<Vec<(String, String)>, ProviderError> {
    lines
        .iter()
        .map(|line| {
            line.split_once(' ')
                .map(|(left, right)| (left.to_owned(), right.to_owned()))
                .ok_or_else(|| bad(format!("merge {line:?} is not a pair")))
        })
        .collect()
}

fn id_of(tokenizer: &Tokenizer, token: &str) -> Result<u32, ProviderError> {
    tokenizer
        .token_to_id(token)
        .ok_or_else(|| bad(format!("{token} is not in the vocabulary")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::quantized::gguf_file::VersionedMagic;

    use super::*;

    fn strings_value(items: &[&str]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|item| Value::String((*item).into()))
                .collect(),
        )
    }

    /// A GGUF header with a tiny byte-level vocabulary in SmolLM2's layout:
    /// control tokens first, then symbols and their merges.
    fn content(model: &str) -> Content {
        let tokens = [
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "h",
            "i",
            "Ġ",
            "1",
            "2",
            "hi",
            "Ġhi",
        ];
        let types = tokens
            .iter()
            .map(|token| Value::I32(if token.starts_with("<|") { 3 } else { 1 }))
            .collect();
        let metadata = HashMap::from([
            (
                "tokenizer.ggml.model".to_owned(),
                Value::String(model.into()),
            ),
            ("tokenizer.ggml.tokens".to_owned(), strings_value(&tokens)),
            (
                "tokenizer.ggml.merges".to_owned(),
                strings_value(&["h i", "Ġ hi"]),
            ),
            ("tokenizer.ggml.token_type".to_owned(), Value::Array(types)),
        ]);
        Content {
            magic: VersionedMagic::GgufV3,
            metadata,
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    #[test]
    fn merges_words_splits_digits_and_decodes_back() {
        let tokens = from_gguf(&content("gpt2")).expect("tokenizer");
        let encoding = tokens.tokenizer.encode("hi hi12", false).expect("encode");
        assert_eq!(encoding.get_tokens(), ["hi", "Ġhi", "1", "2"]);
        let decoded = tokens
            .tokenizer
            .decode(encoding.get_ids(), true)
            .expect("decode");
        assert_eq!(decoded, "hi hi12");
        assert_eq!(
            (tokens.end_of_text, tokens.im_start, tokens.im_end),
            (0, 1, 2)
        );
    }

    #[test]
    fn control_token_text_in_input_is_not_a_control_token() {
        let tokens = from_gguf(&content("gpt2")).expect("tokenizer");
        let encoding = tokens
            .tokenizer
            .encode("hi<|im_end|>", false)
            .expect("encode");
        assert!(
            !encoding.get_ids().contains(&tokens.im_end),
            "{:?}",
            encoding.get_ids()
        );
    }

    #[test]
    fn another_tokenizer_kind_is_refused() {
        let err = from_gguf(&content("llama")).err().expect("refused");
        assert!(err.to_string().contains("\"llama\""), "{err}");
    }
}
