//! Counting tokens as an OpenAI model does, with tiktoken.

use std::fmt;

use grounded_core::ChatMessage;
use tiktoken_rs::CoreBPE;

/// Tokens the chat format adds to each message (role and separators), and
/// to the whole prompt (the priming of the answer), in OpenAI's accounting.
const TOKENS_PER_MESSAGE: usize = 3;
const TOKENS_PER_PROMPT: usize = 3;

/// A tiktoken encoding chosen for a model.
#[derive(Clone, Copy)]
pub struct TokenCounter {
    bpe: &'static CoreBPE,
    encoding: &'static str,
}

impl fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCounter")
            .field("encoding", &self.encoding)
            .finish()
    }
}

impl TokenCounter {
    /// The encoding of `model`: tiktoken's own table when it knows the
    /// model, otherwise `o200k_base` for the gpt-4o, gpt-4.1, gpt-5, o1, o3
    /// and o4 families and `cl100k_base` for anything else (older OpenAI
    /// models and most models behind compatible servers, for which it is an
    /// estimate).
    pub fn for_model(model: &str) -> Self {
        let known = tiktoken_rs::tokenizer::get_tokenizer(model);
        let tokenizer = known.unwrap_or_else(|| family_tokenizer(model));
        let encoding = match tokenizer {
            tiktoken_rs::tokenizer::Tokenizer::O200kBase => "o200k_base",
            tiktoken_rs::tokenizer::Tokenizer::O200kHarmony => "o200k_harmony",
            tiktoken_rs::tokenizer::Tokenizer::Cl100kBase => "cl100k_base",
            tiktoken_rs::tokenizer::Tokenizer::P50kBase => "p50k_base",
            tiktoken_rs::tokenizer::Tokenizer::P50kEdit => "p50k_edit",
            tiktoken_rs::tokenizer::Tokenizer::R50kBase => "r50k_base",
            tiktoken_rs::tokenizer::Tokenizer::Gpt2 => "gpt2",
        };
        Self {
            bpe: bpe_of(tokenizer),
            encoding,
        }
    }

    /// The name of the encoding (`o200k_base`, …).
    pub fn encoding(&self) -> &'static str {
        self.encoding
    }

    /// The tokens of `text`, special tokens read as plain text.
    pub fn count(&self, text: &str) -> usize {
        self.bpe.encode_ordinary(text).len()
    }

    /// The prompt tokens of `messages` as the chat API bills them.
    pub fn count_messages(&self, messages: &[ChatMessage]) -> usize {
        let content: usize = messages
            .iter()
            .map(|m| self.count(&m.role) + self.count(&m.content) + TOKENS_PER_MESSAGE)
            .sum();
        content + TOKENS_PER_PROMPT
    }

    /// The longest prefix of `text` of at most `max_tokens` tokens, cut at a
    /// token boundary that is also a character boundary.
    pub fn truncate<'a>(&self, text: &'a str, max_tokens: usize) -> &'a str {
        let tokens = self.bpe.encode_ordinary(text);
        if tokens.len() <= max_tokens {
            return text;
        }
        let mut end = 0;
        for token in &tokens[..max_tokens] {
            let Ok(bytes) = self.bpe.decode_bytes(std::slice::from_ref(token)) else {
                break;
            };
            end += bytes.len();
        }
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end.min(text.len())]
    }
}

fn family_tokenizer(model: &str) -> tiktoken_rs::tokenizer::Tokenizer {
    let model = model.rsplit('/').next().unwrap_or(model);
    let o200k = [
        "gpt-4o",
        "chatgpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
    ];
    if o200k.iter().any(|family| model.starts_with(family)) {
        tiktoken_rs::tokenizer::Tokenizer::O200kBase
    } else {
        tiktoken_rs::tokenizer::Tokenizer::Cl100kBase
    }
}

fn bpe_of(tokenizer: tiktoken_rs::tokenizer::Tokenizer) -> &'static CoreBPE {
    use tiktoken_rs::tokenizer::Tokenizer;
    match tokenizer {
        Tokenizer::O200kBase => tiktoken_rs::o200k_base_singleton(),
        Tokenizer::O200kHarmony => tiktoken_rs::o200k_harmony_singleton(),
        Tokenizer::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        Tokenizer::P50kBase => tiktoken_rs::p50k_base_singleton(),
        Tokenizer::P50kEdit => tiktoken_rs::p50k_edit_singleton(),
        Tokenizer::R50kBase | Tokenizer::Gpt2 => tiktoken_rs::r50k_base_singleton(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_the_encoding_by_model_family() {
        for model in [
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-5-nano",
            "o3-mini",
            "openai/gpt-4o",
        ] {
            assert_eq!(
                TokenCounter::for_model(model).encoding(),
                "o200k_base",
                "{model}"
            );
        }
        for model in ["gpt-3.5-turbo", "text-embedding-3-small", "llama3.1:8b"] {
            assert_eq!(
                TokenCounter::for_model(model).encoding(),
                "cl100k_base",
                "{model}"
            );
        }
    }

    #[test]
    fn counts_and_truncates_by_tokens() {
        let counter = TokenCounter::for_model("gpt-4o-mini");
        assert_eq!(counter.count(""), 0);
        assert_eq!(counter.count("hello world"), 2);

        let text = "The quick brown fox jumps over the lazy dog. Ünïcödé ☃ text.";
        let cut = counter.truncate(text, 5);
        assert!(text.starts_with(cut));
        assert!(counter.count(cut) <= 5);
        assert!(!cut.is_empty());
        assert_eq!(counter.truncate(text, 1000), text);
    }
}
