//! Answers with no chat model: the sentences of the sources that are closest
//! to the question, each followed by the number of its source.
//!
//! Candidate sentences come from the prose of the sources (code blocks,
//! headings and fragments of a few words are not answers). They are embedded
//! with the same model as the chunks and ranked by cosine similarity to the
//! question, with a small preference for better-ranked sources. The chosen
//! sentences are printed in source order so that the answer reads in the
//! order the documents do.

use grounded_core::{Answer, Citation};
use grounded_embed::Embedder;
use unicode_segmentation::UnicodeSegmentation;

use crate::{GroundedPrompt, QueryError};

/// The `produced_by` of an extractive answer.
pub const EXTRACTIVE: &str = "extractive";

/// What an extractive answer is told when no sentence is close enough.
pub const NO_ANSWER: &str = "The sources do not contain an answer to this question.";

/// How an extractive answer is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtractiveOptions {
    /// At most this many sentences.
    pub max_sentences: usize,
    /// Sentences less similar to the question than this are not answers.
    pub min_similarity: f32,
    /// How much a source's rank lowers its sentences' scores, per rank.
    pub rank_penalty: f32,
}

impl Default for ExtractiveOptions {
    fn default() -> Self {
        Self {
            max_sentences: 3,
            min_similarity: 0.35,
            rank_penalty: 0.01,
        }
    }
}

/// A sentence of a source, where it sits, and how well it answers.
#[derive(Debug, Clone)]
struct Candidate {
    source: usize,
    position: usize,
    text: String,
    score: f32,
}

/// Answers `question` from the sources of `prompt` without a chat model.
///
/// # Errors
/// Fails when the embedder fails.
pub async fn answer_extractively(
    question: &str,
    prompt: &GroundedPrompt,
    embedder: &dyn Embedder,
    options: ExtractiveOptions,
) -> Result<Answer, QueryError> {
    let mut candidates = candidate_sentences(&prompt.source_texts);
    if candidates.is_empty() {
        return Ok(no_answer());
    }

    score_candidates(question, &mut candidates, embedder, options).await?;
    let chosen = choose(candidates, options);
    if chosen.is_empty() {
        return Ok(no_answer());
    }
    Ok(compose_answer(&chosen, &prompt.citations))
}

fn no_answer() -> Answer {
    Answer {
        text: NO_ANSWER.into(),
        produced_by: EXTRACTIVE.into(),
        citations: Vec::new(),
        grounded: false,
    }
}

async fn score_candidates(
    question: &str,
    candidates: &mut [Candidate],
    embedder: &dyn Embedder,
    options: ExtractiveOptions,
) -> Result<(), QueryError> {
    let mut texts = vec![question.to_string()];
    texts.extend(candidates.iter().map(|c| c.text.clone()));
    let vectors = embedder.embed(&texts).await?;

    let question_vector = &vectors[0];
    for (candidate, vector) in candidates.iter_mut().zip(&vectors[1..]) {
        let similarity = dot(question_vector, vector);
        candidate.score = similarity - options.rank_penalty * candidate.source as f32;
    }
    Ok(())
}

/// The best candidates above the threshold, in source order.
fn choose(mut candidates: Vec<Candidate>, options: ExtractiveOptions) -> Vec<Candidate> {
    candidates.retain(|c| c.score >= options.min_similarity);
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(options.max_sentences);
    candidates.sort_by_key(|c| (c.source, c.position));
    candidates
}

fn compose_answer(chosen: &[Candidate], citations: &[Citation]) -> Answer {
    let text = chosen
        .iter()
        .map(|c| format!("{} [{}]", c.text, c.source + 1))
        .collect::<Vec<_>>()
        .join(" ");

    let mut cited: Vec<Citation> = Vec::new();
    for candidate in chosen {
        let citation = &citations[candidate.source];
        if !cited.iter().any(|c| c.number == citation.number) {
            cited.push(citation.clone());
        }
    }
    Answer {
        text,
        produced_by: EXTRACTIVE.into(),
        grounded: !cited.is_empty(),
        citations: cited,
    }
}

/// The prose sentences of every source.
fn candidate_sentences(sources: &[String]) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    for (source, text) in sources.iter().enumerate() {
        let prose = prose_of(text);
        for (position, sentence) in prose.unicode_sentences().enumerate() {
            let sentence = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
            if is_answer_like(&sentence) {
                candidates.push(Candidate {
                    source,
                    position,
                    text: sentence,
                    score: 0.0,
                });
            }
        }
    }
    candidates
}

/// The text with fenced code blocks, headings and list markers removed, and
/// paragraphs kept apart so that a sentence never spans two of them.
fn prose_of(text: &str) -> String {
    let mut prose = String::with_capacity(text.len());
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            prose.push_str("\n\n");
            continue;
        }
        if in_fence || trimmed.starts_with('#') || trimmed.starts_with('|') {
            prose.push_str("\n\n");
            continue;
        }
        let item = trimmed
            .trim_start_matches(['-', '*', '+', '>'])
            .trim_start();
        if trimmed.is_empty() {
            prose.push_str("\n\n");
        } else {
            prose.push_str(item);
            prose.push(' ');
        }
    }
    prose
}

/// A sentence worth offering as an answer: a few words, mostly letters, and
/// ending like a sentence.
fn is_answer_like(sentence: &str) -> bool {
    let words = sentence.split_whitespace().count();
    let letters = sentence.chars().filter(|c| c.is_alphabetic()).count();
    let ends_well = sentence.ends_with(['.', '!', '?', ':', '。']);
    words >= 5 && letters * 2 >= sentence.chars().count() && ends_well
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_drops_code_headings_and_short_fragments() {
        let source = "## Ownership\n\nOwnership is a set of rules that govern memory. See:\n\n\
                      ```rust\nlet s = String::from(\"hello world, this is code.\");\n```\n\n\
                      - Each value in Rust has an owner at any time.\n\nToo short.";
        let candidates = candidate_sentences(&[source.to_string()]);
        let texts: Vec<_> = candidates.iter().map(|c| c.text.as_str()).collect();

        assert_eq!(
            texts,
            [
                "Ownership is a set of rules that govern memory.",
                "Each value in Rust has an owner at any time."
            ]
        );
    }

    #[test]
    fn choose_keeps_the_best_above_threshold_in_source_order() {
        let candidate = |source, position, score| Candidate {
            source,
            position,
            text: format!("s{source}p{position}"),
            score,
        };
        let candidates = vec![
            candidate(1, 0, 0.9),
            candidate(0, 3, 0.5),
            candidate(0, 1, 0.8),
            candidate(2, 0, 0.1),
            candidate(2, 1, 0.4),
        ];
        let options = ExtractiveOptions {
            max_sentences: 3,
            min_similarity: 0.3,
            rank_penalty: 0.0,
        };
        let chosen: Vec<_> = choose(candidates, options)
            .into_iter()
            .map(|c| c.text)
            .collect();

        assert_eq!(chosen, ["s0p1", "s0p3", "s1p0"]);
    }
}
