//! Citations by construction: the local model's decoding is constrained so
//! that each sentence of its answer ends with a marker naming the source it
//! draws on.
//!
//! SmolLM2-135M does not follow an instruction to cite: on grounded prompts
//! about the Rust book it wrote no `[n]` at all, and when it was made to
//! choose the number itself it counted up, `[1]`, `[2]`, `[3]`, whatever
//! the sentence said (see the `local_cite` example). Its decoding is ours,
//! though. So the model writes the text and the generator writes the
//! markers:
//!
//! - Outside code, the model may not write `[` at all: every marker in the
//!   answer is the generator's.
//! - When the model is about to end a sentence (or a line) that has no
//!   marker, the generator scores each source by the content words it
//!   shares with the sentence, weighted by how few sources hold each word,
//!   and writes ` [n]` for the best one, before the model's punctuation.
//!   The model's own preference among the numbers breaks ties.
//! - A sentence that shares fewer than [`MIN_SHARED_TERMS`] content words
//!   with every source gets no marker: it is not backed by any of them, and
//!   an answer made only of such sentences is flagged as not grounded.
//!
//! Shared words are evidence of where a sentence comes from, not proof that
//! it is true: the model can misstate what a source says in its words. The
//! answer then passes through the same citation filter as any other.
//!
//! Sentences that say the sources lack the answer, code, list numbers and
//! fragments of fewer than [`MIN_WORDS`] words get no marker.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use tokenizers::Tokenizer;

use crate::ProviderError;

/// The fewest words a sentence needs before it is given a marker.
pub const MIN_WORDS: usize = 3;

/// The fewest content words a sentence must share with a source to cite it.
pub const MIN_SHARED_TERMS: usize = 2;

/// How the answer must cite: the content words of the sources the prompt
/// quotes, numbered from 1.
#[derive(Debug, Clone, PartialEq)]
pub struct CitationRule {
    /// The terms of source `n` at index `n - 1`.
    sources: Vec<HashSet<String>>,
}

impl CitationRule {
    /// A rule over the texts of the prompt's sources, in their order.
    pub fn new(texts: &[String]) -> Self {
        Self {
            sources: texts.iter().map(|text| terms(text)).collect(),
        }
    }

    /// How many sources there are.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The numbers of the sources that best back `sentence`, all with the
    /// same score, or none when no source shares [`MIN_SHARED_TERMS`]
    /// content words with it. A word held by fewer sources weighs more.
    pub fn candidates(&self, sentence: &str) -> Vec<u32> {
        let sentence = terms(sentence);
        let weight = |term: &String| {
            let holders = self.sources.iter().filter(|s| s.contains(term)).count();
            (1.0 + self.sources.len() as f64 / holders.max(1) as f64).ln()
        };
        let scores: Vec<(usize, f64)> = self
            .sources
            .iter()
            .map(|source| {
                let shared: Vec<&String> = sentence.intersection(source).collect();
                (shared.len(), shared.into_iter().map(weight).sum())
            })
            .collect();
        let best = scores
            .iter()
            .filter(|(shared, _)| *shared >= MIN_SHARED_TERMS)
            .map(|(_, score)| *score)
            .fold(f64::NEG_INFINITY, f64::max);
        scores
            .iter()
            .zip(1u32..)
            .filter(|((shared, score), _)| *shared >= MIN_SHARED_TERMS && *score >= best - 1e-9)
            .map(|(_, number)| number)
            .collect()
    }
}

/// The content words of `text`: lowercase, three letters or more, not a
/// function word, a plural `s` dropped.
fn terms(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|word| !STOP_WORDS.contains(&word.as_str()))
        .map(|word| match word.strip_suffix('s') {
            Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem.to_owned(),
            _ => word,
        })
        .collect()
}

/// Words that say nothing of where a sentence comes from.
const STOP_WORDS: &[&str] = &[
    "the", "and", "for", "are", "but", "not", "you", "your", "all", "any", "can", "has", "have",
    "had", "was", "were", "will", "with", "this", "that", "these", "those", "then", "than",
    "there", "their", "they", "them", "what", "when", "where", "which", "who", "why", "how",
    "from", "into", "onto", "its", "also", "may", "must", "should", "would", "could", "does",
    "did", "doing", "done", "been", "being", "our", "out", "use", "used", "using", "one", "only",
    "other", "some", "such", "more", "most", "very", "just", "like", "about", "each", "both",
    "here", "over", "under", "after", "before", "because", "while", "own", "same", "so", "answer",
    "source", "sources", "question", "example", "let", "get",
];

/// The token ids a marker is made of, and those that end a sentence.
#[derive(Debug, Clone)]
pub struct CitationTokens {
    /// ` [`, as the model's tokenizer spells it.
    pub open: Vec<u32>,
    /// `0` to `9`; the tokenizer splits numbers into single digits.
    pub digits: [u32; 10],
    /// `]`.
    pub close: u32,
    /// Tokens that are `.`, `!` or `?`, alone or followed by whitespace.
    pub sentence_ends: HashSet<u32>,
    /// Tokens made of line breaks only.
    pub line_ends: HashSet<u32>,
    /// Tokens that hold a `[`: outside code, only the generator writes them.
    pub brackets: Vec<u32>,
}

impl CitationTokens {
    /// Finds the marker's tokens and the sentence ends in `tokenizer`.
    ///
    /// # Errors
    /// [`ProviderError::Local`] when a digit or a bracket is not a single
    /// token, which a tokenizer that splits digits always makes them.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Result<Self, ProviderError> {
        let single = |text: &str| -> Result<u32, ProviderError> {
            match tokenizer
                .encode_fast(text, false)
                .map(|e| e.get_ids().to_vec())
            {
                Ok(ids) if ids.len() == 1 => Ok(ids[0]),
                _ => Err(ProviderError::Local(format!(
                    "the tokenizer has no single token for {text:?}, which citation markers need"
                ))),
            }
        };
        let mut digits = [0; 10];
        for (digit, id) in digits.iter_mut().enumerate() {
            *id = single(&digit.to_string())?;
        }
        let open = tokenizer
            .encode_fast(" [", false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|err| ProviderError::Local(format!("cannot tokenize \" [\": {err}")))?;

        let (sentence_ends, line_ends, brackets) = punctuation(tokenizer);
        Ok(Self {
            open,
            digits,
            close: single("]")?,
            sentence_ends,
            line_ends,
            brackets,
        })
    }

    /// The most tokens one marker takes: the opening, two digits, `]`.
    pub fn marker_len(&self) -> usize {
        self.open.len() + 3
    }
}

/// The vocabulary's sentence-ending, line-ending and bracket tokens.
fn punctuation(tokenizer: &Tokenizer) -> (HashSet<u32>, HashSet<u32>, Vec<u32>) {
    let mut sentence_ends = HashSet::new();
    let mut line_ends = HashSet::new();
    let mut brackets = Vec::new();
    for id in 0..tokenizer.get_vocab_size(true) as u32 {
        let Ok(text) = tokenizer.decode(&[id], false) else {
            continue;
        };
        if text.contains('[') {
            brackets.push(id);
        }
        let mark = text.trim_end();
        if matches!(mark, "." | "!" | "?") {
            sentence_ends.insert(id);
        } else if !text.is_empty() && text.chars().all(|c| c == '\n' || c == '\r') {
            line_ends.insert(id);
        }
    }
    (sentence_ends, line_ends, brackets)
}

/// Follows the answer's text to tell when a marker is due.
#[derive(Debug, Default)]
pub struct SentenceTracker {
    /// The whole answer so far.
    answer: String,
    /// Where the current sentence starts in `answer`.
    sentence_start: usize,
}

impl SentenceTracker {
    /// Adds generated text.
    pub fn push(&mut self, text: &str) {
        self.answer.push_str(text);
    }

    /// The text since the last sentence end.
    pub fn sentence(&self) -> &str {
        &self.answer[self.sentence_start..]
    }

    /// Marks the end of the current sentence.
    pub fn end_sentence(&mut self) {
        self.sentence_start = self.answer.len();
    }

    /// Whether the current sentence, about to end, should get a marker:
    /// it has words enough, no marker of its own, is not code, a list
    /// number or a decimal, and does not say that the sources lack the
    /// answer.
    pub fn wants_marker(&self) -> bool {
        let sentence = self.sentence();
        let words = sentence
            .split_whitespace()
            .filter(|word| word.chars().any(char::is_alphabetic))
            .count();
        let ends_in_word = sentence
            .trim_end_matches(['"', '\'', ')', '*', '`'])
            .chars()
            .last()
            .is_some_and(char::is_alphanumeric);
        let ends_in_digit = sentence.chars().last().is_some_and(|c| c.is_ascii_digit());
        words >= MIN_WORDS
            && ends_in_word
            && !ends_in_digit
            && !MARKER.is_match(sentence)
            && !self.in_code()
            && !REFUSAL.is_match(&sentence.to_lowercase())
    }

    /// Inside a fenced block or an inline code span.
    pub fn in_code(&self) -> bool {
        let fences = self.answer.matches("```").count();
        let ticks = self.sentence().matches('`').count();
        fences % 2 == 1 || ticks % 2 == 1
    }
}

static MARKER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[\d+\]").expect("the marker pattern compiles"));

/// Wordings of "the sources do not say".
static REFUSAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(not|n't) (contain|mention|include|say|provide|cover|answer|know|have)|no (information|mention)|cannot|unable to",
    )
    .expect("the refusal pattern compiles")
});

/// The digit to write next in a marker, by the model's `logits`, when the
/// digits written so far make `prefix` (0 before the first): the likeliest
/// of the digits that keep the number on the way to one of `candidates`,
/// or `None` when the number is complete (it is a candidate, and no longer
/// candidate continues it, or `]` is at least as likely).
pub fn next_digit(
    logits: &[f32],
    tokens: &CitationTokens,
    prefix: u32,
    candidates: &[u32],
) -> Option<u32> {
    let logit = |id: u32| {
        logits
            .get(id as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY)
    };
    let leads_to = |number: u32| {
        candidates
            .iter()
            .any(|&candidate| number >= 1 && starts_with(candidate, number))
    };
    let allowed = (0..10u32).filter(|&digit| leads_to(prefix * 10 + digit));
    let best = allowed.max_by(|&a, &b| {
        logit(tokens.digits[a as usize]).total_cmp(&logit(tokens.digits[b as usize]))
    })?;
    let complete = prefix > 0 && candidates.contains(&prefix);
    let close_wins = complete && logit(tokens.close) >= logit(tokens.digits[best as usize]);
    (!close_wins).then_some(best)
}

/// Whether the decimal digits of `number` begin with those of `prefix`.
fn starts_with(number: u32, prefix: u32) -> bool {
    number.to_string().starts_with(&prefix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(text: &str) -> SentenceTracker {
        let mut tracker = SentenceTracker::default();
        tracker.push(text);
        tracker
    }

    #[test]
    fn a_plain_claim_wants_a_marker_and_a_cited_one_does_not() {
        assert!(tracker("Each value in Rust has an owner").wants_marker());
        assert!(!tracker("Each value in Rust has an owner [2]").wants_marker());
        assert!(tracker("Values have owners").wants_marker());
        assert!(!tracker("Values have").wants_marker());
        assert!(!tracker("Yes").wants_marker());
    }

    #[test]
    fn code_numbers_and_refusals_get_no_marker() {
        assert!(!tracker("Open the file `src/main").wants_marker());
        assert!(!tracker("```rust\nlet x = v").wants_marker());
        assert!(!tracker("The value of pi is 3").wants_marker());
        assert!(!tracker("The sources do not contain the answer").wants_marker());
        assert!(!tracker("I cannot find this in the sources").wants_marker());
    }

    #[test]
    fn only_the_current_sentence_counts() {
        let mut tracker = tracker("Variables are immutable by default [1].");
        tracker.end_sentence();
        tracker.push(" You can make them mutable with mut");
        assert!(tracker.wants_marker());
    }

    fn tokens() -> CitationTokens {
        CitationTokens {
            open: vec![100],
            digits: [10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
            close: 20,
            sentence_ends: HashSet::new(),
            line_ends: HashSet::new(),
            brackets: Vec::new(),
        }
    }

    #[test]
    fn the_digit_is_the_likeliest_candidate() {
        let mut logits = vec![0.0; 32];
        logits[19] = 9.0; // "9", no candidate
        logits[12] = 2.0; // "2"
        logits[11] = 1.0; // "1"
        assert_eq!(next_digit(&logits, &tokens(), 0, &[1, 2, 3]), Some(2));
        assert_eq!(next_digit(&logits, &tokens(), 0, &[1, 3]), Some(1));
        logits[10] = 5.0; // "0" is never a first digit
        assert_eq!(next_digit(&logits, &tokens(), 0, &[1, 2]), Some(2));
    }

    #[test]
    fn a_second_digit_only_on_the_way_to_a_candidate() {
        let mut logits = vec![0.0; 32];
        logits[12] = 3.0; // "2" after "1" makes 12
        logits[20] = 1.0; // "]"
        assert_eq!(next_digit(&logits, &tokens(), 1, &[1, 12]), Some(2));
        assert_eq!(
            next_digit(&logits, &tokens(), 1, &[1, 11]),
            None,
            "1 is done, ] likelier"
        );
        assert_eq!(
            next_digit(&logits, &tokens(), 1, &[11]),
            Some(1),
            "11 must be finished"
        );
        assert_eq!(next_digit(&logits, &tokens(), 1, &[1]), None);
        logits[20] = 4.0;
        assert_eq!(next_digit(&logits, &tokens(), 1, &[1, 12]), None);
    }

    fn rule() -> CitationRule {
        CitationRule::new(&[
            "Vectors store more than one value next to each other in memory.".to_owned(),
            "Each value in Rust has an owner. When the owner goes out of scope, the value \
             is dropped."
                .to_owned(),
            "Variables are immutable by default; add mut to make them mutable.".to_owned(),
        ])
    }

    #[test]
    fn a_sentence_cites_the_source_whose_words_it_uses() {
        let rule = rule();
        assert_eq!(
            rule.candidates("When its owner goes out of scope, a value is dropped"),
            [2]
        );
        assert_eq!(
            rule.candidates("Variables are immutable unless declared mut"),
            [3]
        );
        assert!(rule.candidates("The weather is nice today").is_empty());
        assert!(
            rule.candidates("A value").is_empty(),
            "one shared word is not enough"
        );
    }

    #[test]
    fn content_words_ignore_case_plurals_and_function_words() {
        let words = terms("The Owners of these Values are dropped");
        let expected: HashSet<String> = ["owner", "value", "dropped"]
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(words, expected);
    }
}
