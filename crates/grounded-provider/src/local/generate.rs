//! The chat template and the token loop of the local model.
//!
//! [`ChatTemplate`] turns chat messages into prompt token ids in SmolLM2's
//! ChatML form; [`generate`] runs the model over them and calls back with
//! each piece of text as soon as it is complete UTF-8. Both are blocking and
//! synchronous; [`super::LocalChat`] runs them on tokio's blocking pool.

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;
use grounded_core::ChatMessage;
use tokenizers::Tokenizer;

use super::cite::{CitationRule, CitationTokens, SentenceTracker, next_digit};
use super::tokenizer::GgufTokenizer;
use crate::ProviderError;

/// The system message SmolLM2's own template puts first when a conversation
/// has none.
const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The penalty on the logits of tokens the answer already holds. Greedy
/// decoding of a small model repeats itself: without a penalty SmolLM2-135M
/// looped whole paragraphs until `max_tokens` on grounded prompts, and with
/// this one it still repeats a sentence at times. 1.1 is mild: it damps
/// loops without keeping the answer from reusing a word it needs again.
pub const REPEAT_PENALTY: f32 = 1.1;

/// How many of the latest generated tokens the penalty looks at. Only
/// generated tokens count, not the prompt's: an answer is meant to reuse the
/// words of its sources and of the question, and the `[` and digits of its
/// citations.
pub const REPEAT_LAST_N: usize = 64;

/// The seed of sampling at a temperature above 0, fixed so that one request
/// gives one answer.
const SAMPLING_SEED: u64 = 0x5eed;

/// SmolLM2's ChatML template: `<|im_start|>{role}\n{content}<|im_end|>\n`
/// per message, then `<|im_start|>assistant\n`.
pub struct ChatTemplate<'t> {
    pub tokens: &'t GgufTokenizer,
}

impl ChatTemplate<'_> {
    /// The prompt's token ids. The control tokens are inserted by id, and
    /// message text is encoded as text, so a source holding `<|im_end|>`
    /// cannot close its message.
    ///
    /// # Errors
    /// [`ProviderError::Local`] when the tokenizer fails.
    pub fn prompt_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, ProviderError> {
        let mut ids = Vec::new();
        if messages.first().is_none_or(|first| first.role != "system") {
            self.push_message(&mut ids, "system", DEFAULT_SYSTEM)?;
        }
        for message in messages {
            self.push_message(&mut ids, &message.role, &message.content)?;
        }
        ids.push(self.tokens.im_start);
        ids.extend(self.encode("assistant\n")?);
        Ok(ids)
    }

    fn push_message(
        &self,
        ids: &mut Vec<u32>,
        role: &str,
        content: &str,
    ) -> Result<(), ProviderError> {
        ids.push(self.tokens.im_start);
        ids.extend(self.encode(&format!("{role}\n{content}"))?);
        ids.push(self.tokens.im_end);
        ids.extend(self.encode("\n")?);
        Ok(())
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, ProviderError> {
        encode(&self.tokens.tokenizer, text)
    }
}

/// The token ids of `text`, control-token text included as plain text.
///
/// # Errors
/// [`ProviderError::Local`] when the tokenizer fails.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, ProviderError> {
    tokenizer
        .encode_fast(text, false)
        .map(|encoding| encoding.get_ids().to_vec())
        .map_err(|err| ProviderError::Local(format!("cannot tokenize: {err}")))
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct GenerateSettings {
    pub max_tokens: usize,
    pub temperature: f32,
    /// The penalty on tokens among the latest [`REPEAT_LAST_N`] generated;
    /// 1 is none.
    pub repeat_penalty: f32,
    /// The most tokens the model can see: prompt and answer together.
    pub context_length: usize,
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The generated token ids, the stop token excluded.
    pub ids: Vec<u32>,
    /// `stop` (an end-of-turn token), `length` (`max_tokens` or the context
    /// reached) or `cancelled` (the receiver of the deltas went away).
    pub finish_reason: &'static str,
}

/// Generates after `prompt` until a stop token, `max_tokens` or the end of
/// the context. With `citations`, sentences end with markers naming the
/// sources they draw on ([`super::cite`]). `on_delta` receives each new
/// piece of text as soon as it is complete UTF-8 and returns false to stop
/// early.
///
/// # Errors
/// [`ProviderError::Invalid`] when the prompt leaves no room in the context
/// for a single token, [`ProviderError::Local`] when the model or the
/// tokenizer fails.
pub fn generate(
    model: &mut ModelWeights,
    tokens: &GgufTokenizer,
    prompt: &[u32],
    settings: GenerateSettings,
    citations: Option<&CitationRule>,
    on_delta: &mut dyn FnMut(&str) -> bool,
) -> Result<Generated, ProviderError> {
    check_fits(prompt.len(), settings.context_length)?;
    let stops = [tokens.im_end, tokens.end_of_text];
    let mut sampler = sampler(settings.temperature);

    model.clear_kv_cache();
    let logits = forward(model, prompt, 0)?;
    let mut run = Run {
        model,
        decoder: tokens.tokenizer.decode_stream(true),
        on_delta,
        ids: Vec::new(),
        position: prompt.len(),
        limit: settings
            .max_tokens
            .min(settings.context_length - prompt.len()),
        logits,
        sentence: SentenceTracker::default(),
        cite: None,
    };
    let rule = citations.filter(|rule| !rule.is_empty());
    run.cite = rule.and(tokens.citations.as_ref());
    let rule = rule.filter(|_| run.cite.is_some());
    loop {
        let logits = match run.cite {
            Some(cite) if !run.sentence.in_code() => without(&run.logits, &cite.brackets)?,
            _ => run.logits.clone(),
        };
        let next = next_token(&mut sampler, &logits, &run.ids, settings.repeat_penalty)?;
        let ends_answer = stops.contains(&next);
        if let Some(rule) = rule
            && run.marker_due(next, ends_answer)
            && let Some(finish) = run.cite(rule)?
        {
            return Ok(finish);
        }
        if ends_answer {
            return Ok(finished(run.ids, "stop"));
        }
        if let Some(finish) = run.feed(next)? {
            return Ok(finish);
        }
    }
}

/// One generation in progress: the tokens so far and the logits of the
/// next.
struct Run<'g> {
    model: &'g mut ModelWeights,
    decoder: DecodeStream<'g>,
    on_delta: &'g mut dyn FnMut(&str) -> bool,
    ids: Vec<u32>,
    /// The position of the next token in the sequence.
    position: usize,
    /// The most tokens to generate.
    limit: usize,
    logits: Tensor,
    sentence: SentenceTracker,
    /// The marker tokens, when the answer cites by construction.
    cite: Option<&'g CitationTokens>,
}

type DecodeStream<'t> = tokenizers::DecodeStream<
    't,
    tokenizers::ModelWrapper,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

impl Run<'_> {
    /// Appends `id` to the answer, sends its text, and runs the model over
    /// it. `Some` when the generation ends here.
    fn feed(&mut self, id: u32) -> Result<Option<Generated>, ProviderError> {
        self.ids.push(id);
        if let Some(delta) = self.decoder.step(id).map_err(local)? {
            self.sentence.push(&delta);
            if !(self.on_delta)(&delta) {
                return Ok(Some(finished(std::mem::take(&mut self.ids), "cancelled")));
            }
        }
        if let Some(cite) = self.cite
            && (cite.sentence_ends.contains(&id) || cite.line_ends.contains(&id))
        {
            self.sentence.end_sentence();
        }
        if self.ids.len() >= self.limit {
            return Ok(Some(finished(std::mem::take(&mut self.ids), "length")));
        }

        self.logits = forward(self.model, &[id], self.position)?;
        self.position += 1;
        Ok(None)
    }

    /// Whether a marker goes in before `next`: it ends a sentence, a line or
    /// the answer, the sentence wants one, and a marker fits.
    fn marker_due(&self, next: u32, ends_answer: bool) -> bool {
        let Some(cite) = self.cite else {
            return false;
        };
        let ends_sentence =
            ends_answer || cite.sentence_ends.contains(&next) || cite.line_ends.contains(&next);
        let fits = self.ids.len() + cite.marker_len() < self.limit;
        ends_sentence && fits && self.sentence.wants_marker()
    }

    /// Writes ` [n]` for the source that best backs the sentence, the model
    /// choosing among sources that back it equally; nothing when none does.
    fn cite(&mut self, rule: &CitationRule) -> Result<Option<Generated>, ProviderError> {
        let candidates = rule.candidates(self.sentence.sentence());
        let Some(cite) = self.cite.filter(|_| !candidates.is_empty()) else {
            return Ok(None);
        };
        for &id in &cite.open {
            if let Some(finish) = self.feed(id)? {
                return Ok(Some(finish));
            }
        }
        let mut number = 0;
        loop {
            let logits: Vec<f32> = self.logits.to_vec1().map_err(local)?;
            let Some(digit) = next_digit(&logits, cite, number, &candidates) else {
                break;
            };
            number = number * 10 + digit;
            if let Some(finish) = self.feed(cite.digits[digit as usize])? {
                return Ok(Some(finish));
            }
        }
        self.feed(cite.close)
    }
}

fn finished(ids: Vec<u32>, finish_reason: &'static str) -> Generated {
    Generated { ids, finish_reason }
}

/// Refuses a prompt that leaves no room for one generated token.
///
/// # Errors
/// [`ProviderError::Invalid`] naming both counts.
pub fn check_fits(prompt_tokens: usize, context_length: usize) -> Result<(), ProviderError> {
    if prompt_tokens < context_length {
        return Ok(());
    }
    Err(ProviderError::Invalid {
        provider: "local".into(),
        message: format!(
            "the prompt has {prompt_tokens} tokens and the model's context holds \
             {context_length}, answer included"
        ),
    })
}

/// Greedy at temperature 0 (or below), otherwise sampling from the whole
/// distribution at that temperature with a fixed seed.
fn sampler(temperature: f32) -> LogitsProcessor {
    let sampling = if temperature > 0.0 {
        Sampling::All {
            temperature: f64::from(temperature),
        }
    } else {
        Sampling::ArgMax
    };
    LogitsProcessor::from_sampling(SAMPLING_SEED, sampling)
}

/// Runs `ids`, placed at `position` in the sequence, through the model and
/// returns the logits of the last one.
fn forward(
    model: &mut ModelWeights,
    ids: &[u32],
    position: usize,
) -> Result<Tensor, ProviderError> {
    let input = Tensor::new(ids, &Device::Cpu)
        .and_then(|tensor| tensor.unsqueeze(0))
        .map_err(local)?;
    model
        .forward(&input, position)
        .and_then(|logits| logits.squeeze(0))
        .map_err(local)
}

/// `logits` with the tokens `banned` made impossible.
fn without(logits: &Tensor, banned: &[u32]) -> Result<Tensor, ProviderError> {
    let mut values: Vec<f32> = logits.to_vec1().map_err(local)?;
    for &id in banned {
        if let Some(value) = values.get_mut(id as usize) {
            *value = f32::NEG_INFINITY;
        }
    }
    Tensor::new(values, logits.device()).map_err(local)
}

/// Picks the next token after applying the repeat penalty.
fn next_token(
    sampler: &mut LogitsProcessor,
    logits: &Tensor,
    generated: &[u32],
    penalty: f32,
) -> Result<u32, ProviderError> {
    let recent = &generated[generated.len().saturating_sub(REPEAT_LAST_N)..];
    let logits = if recent.is_empty() {
        logits.clone()
    } else {
        candle_transformers::utils::apply_repeat_penalty(logits, penalty, recent).map_err(local)?
    };
    sampler.sample(&logits).map_err(local)
}

fn local(err: impl std::fmt::Display) -> ProviderError {
    ProviderError::Local(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_that_fills_the_context_is_refused_with_both_counts() {
        let err = check_fits(4096, 4096).expect_err("no room for an answer");
        assert!(matches!(err, ProviderError::Invalid { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("4096 tokens") && message.contains("holds 4096"),
            "{message}"
        );
        check_fits(4095, 4096).expect("one token of room is enough");
    }
}
