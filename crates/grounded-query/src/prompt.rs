//! Composition of a grounded chat prompt from hits.
//!
//! The prompt has two messages in OpenAI chat form: a system message that
//! binds the model to the numbered sources, and a user message that lists
//! them and asks the question. Sources are added best first until the token
//! budget is spent; a source that does not fit whole is left out, except the
//! first, which is cut to fit so that a prompt never goes without a source.

use grounded_core::{Citation, Hit};
use serde::{Deserialize, Serialize};

/// What the model is told to do with the sources.
pub const SYSTEM_INSTRUCTIONS: &str = "You answer questions using only the numbered sources \
in the user's message. Cite the source of every claim as [n], where n is the source's number, \
right after the claim; cite several as [1][3]. Do not use knowledge from outside the sources. \
If the sources do not contain the answer, say that they do not, and do not guess.";

/// One chat message, as OpenAI-compatible chat APIs take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// How many tokens the prompt may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBudget {
    /// Tokens for the whole prompt: instructions, sources and question.
    pub max_prompt_tokens: usize,
}

impl Default for PromptBudget {
    fn default() -> Self {
        Self {
            max_prompt_tokens: 3000,
        }
    }
}

/// The composed prompt and the sources it numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundedPrompt {
    pub messages: Vec<ChatMessage>,
    /// The sources in the prompt; `citations[i].number == i + 1`.
    pub citations: Vec<Citation>,
    /// The text of each source as it appears in the prompt (possibly cut).
    pub source_texts: Vec<String>,
    pub prompt_tokens: usize,
}

/// Composes the prompt for `question` from `hits`, best first.
///
/// `count_tokens` counts tokens the way the target model will.
pub fn compose_prompt(
    question: &str,
    hits: &[Hit],
    budget: PromptBudget,
    count_tokens: &dyn Fn(&str) -> usize,
) -> GroundedPrompt {
    let question_part = format!("Question: {}", question.trim());
    let fixed = count_tokens(SYSTEM_INSTRUCTIONS) + count_tokens(&question_part) + 16;
    let mut remaining = budget.max_prompt_tokens.saturating_sub(fixed);

    let mut citations = Vec::new();
    let mut source_texts = Vec::new();
    let mut blocks = Vec::new();
    for hit in hits {
        let number = citations.len() + 1;
        let header = source_header(number, hit);
        let cost = count_tokens(&header) + count_tokens(&hit.text) + 2;

        let text = if cost <= remaining {
            hit.text.clone()
        } else if citations.is_empty() {
            cut_to_tokens(
                &hit.text,
                remaining.saturating_sub(count_tokens(&header) + 2),
                count_tokens,
            )
        } else {
            continue;
        };
        remaining = remaining.saturating_sub(count_tokens(&header) + count_tokens(&text) + 2);

        blocks.push(format!("{header}\n{text}"));
        source_texts.push(text);
        citations.push(citation(number, hit));
    }

    let user = format!("Sources:\n\n{}\n\n{question_part}", blocks.join("\n\n"));
    let prompt_tokens = count_tokens(SYSTEM_INSTRUCTIONS) + count_tokens(&user);
    let messages = vec![
        ChatMessage {
            role: "system".into(),
            content: SYSTEM_INSTRUCTIONS.into(),
        },
        ChatMessage {
            role: "user".into(),
            content: user,
        },
    ];
    GroundedPrompt {
        messages,
        citations,
        source_texts,
        prompt_tokens,
    }
}

/// The line that introduces a source: its number, path, lines and section.
fn source_header(number: usize, hit: &Hit) -> String {
    let location = &hit.location;
    let mut header = format!(
        "[{number}] {} (lines {}-{})",
        hit.source_path, location.line_start, location.line_end
    );
    if !location.section.is_empty() {
        header.push_str(&format!(" — {}", location.section.join(" > ")));
    }
    header
}

fn citation(number: usize, hit: &Hit) -> Citation {
    Citation {
        number,
        chunk_id: hit.chunk_id,
        source_path: hit.source_path.clone(),
        location: hit.location.clone(),
        title: hit.title.clone(),
    }
}

/// The longest prefix of `text`, cut at a word boundary, within `max_tokens`.
fn cut_to_tokens(text: &str, max_tokens: usize, count_tokens: &dyn Fn(&str) -> usize) -> String {
    let boundaries: Vec<usize> = text
        .char_indices()
        .filter(|(_, c)| c.is_whitespace())
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();

    let fits = |end: usize| count_tokens(&text[..end]) <= max_tokens;
    let (mut low, mut high) = (0, boundaries.len());
    while low < high {
        let mid = (low + high) / 2;
        if fits(boundaries[mid]) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    match low {
        0 => String::new(),
        n => text[..boundaries[n - 1]].trim_end().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use grounded_core::{ChunkId, ChunkLocation, DocumentId, DocumentKind};
    use uuid::Uuid;

    use super::*;

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    fn hit(n: u128, text: &str) -> Hit {
        Hit {
            chunk_id: ChunkId(Uuid::from_u128(n)),
            document_id: DocumentId(Uuid::from_u128(100 + n)),
            score: 1.0 / n as f32,
            source_path: format!("doc{n}.md"),
            kind: DocumentKind::Markdown,
            title: None,
            location: ChunkLocation {
                line_start: 1,
                line_end: 3,
                section: vec!["Intro".into(), "Part".into()],
                anchor: None,
            },
            text: text.into(),
        }
    }

    #[test]
    fn numbers_sources_in_rank_order_and_asks_the_question() {
        let hits = [hit(1, "alpha beta"), hit(2, "gamma delta")];
        let prompt = compose_prompt("what is alpha?", &hits, PromptBudget::default(), &words);

        assert_eq!(prompt.messages.len(), 2);
        assert_eq!(prompt.messages[0].role, "system");
        assert!(prompt.messages[0].content.contains("[n]"));
        let user = &prompt.messages[1].content;
        let first = user.find("[1] doc1.md (lines 1-3) — Intro > Part").unwrap();
        let second = user.find("[2] doc2.md").unwrap();
        assert!(first < second);
        assert!(user.trim_end().ends_with("Question: what is alpha?"));
        assert_eq!(
            prompt
                .citations
                .iter()
                .map(|c| c.number)
                .collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn stays_within_budget_and_cuts_only_the_first_source() {
        let long = "word ".repeat(500);
        let hits = [hit(1, &long), hit(2, &long)];
        let budget = PromptBudget {
            max_prompt_tokens: 200,
        };
        let prompt = compose_prompt("q", &hits, budget, &words);

        assert_eq!(prompt.citations.len(), 1);
        assert!(
            prompt.prompt_tokens <= 200,
            "{} tokens",
            prompt.prompt_tokens
        );
        assert!(words(&prompt.source_texts[0]) > 50);
    }

    #[test]
    fn skips_a_later_source_that_does_not_fit_but_keeps_smaller_ones() {
        let hits = [
            hit(1, "short one"),
            hit(2, &"word ".repeat(500)),
            hit(3, "short three"),
        ];
        let prompt = compose_prompt(
            "q",
            &hits,
            PromptBudget {
                max_prompt_tokens: 150,
            },
            &words,
        );

        let paths: Vec<_> = prompt
            .citations
            .iter()
            .map(|c| c.source_path.as_str())
            .collect();
        assert_eq!(paths, ["doc1.md", "doc3.md"]);
        assert_eq!(prompt.citations[1].number, 2);
    }
}
