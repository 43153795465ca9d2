//! What the stand-in's "model" says, and how it counts and embeds.

/// What the chat model answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answers from the numbered sources in the last user message, as
    /// grounded's prompt lists them: a source starts at a line `[n] …`
    /// (`[1] docs/a.md (lines 1-4) — Intro`) and runs to the next such line,
    /// to a line starting `</source` (grounded quotes each source between
    /// `<source>` tags) or to a line starting `Question:`. The answer is the first sentence of
    /// source 1 followed by ` [1]`, then, when there is a source 2, a space,
    /// its first sentence and ` [2]`. Without sources it says so, citing
    /// nothing.
    CiteSources,
    /// Always this text.
    Text(String),
}

/// The answer when the prompt holds no numbered source.
pub const NO_SOURCES_ANSWER: &str = "The sources do not contain the answer.";

impl Reply {
    /// The answer to a conversation whose last user message is `question`.
    pub(crate) fn answer(&self, last_user_message: &str) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::CiteSources => cite_sources(last_user_message),
        }
    }
}

/// The stand-in's token count: the number of whitespace-separated words.
/// A prompt's count is the sum over its messages' contents; roles and the
/// chat format count nothing.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

fn cite_sources(message: &str) -> String {
    let sources = numbered_sources(message);
    let sentence_of = |number: usize| {
        sources
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, text)| first_sentence(text))
            .filter(|sentence| !sentence.is_empty())
    };

    match (sentence_of(1), sentence_of(2)) {
        (Some(first), Some(second)) => format!("{first} [1] {second} [2]"),
        (Some(first), None) => format!("{first} [1]"),
        _ => NO_SOURCES_ANSWER.to_string(),
    }
}

/// The sources of a message, as (number, text) in order.
fn numbered_sources(message: &str) -> Vec<(usize, String)> {
    let mut sources = Vec::new();
    let mut current: Option<(usize, Vec<&str>)> = None;
    for line in message.lines() {
        let number = source_number(line);
        let boundary = line.starts_with("Question:") || line.starts_with("</source");
        if line.starts_with("<source") {
            continue;
        }
        if number.is_some() || boundary {
            sources.extend(current.take().map(|(n, lines)| (n, lines.join("\n"))));
            current = number.map(|n| (n, Vec::new()));
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    sources.extend(current.map(|(n, lines)| (n, lines.join("\n"))));
    sources
}

/// `n` when `line` starts with `[n] `.
fn source_number(line: &str) -> Option<usize> {
    let rest = line.strip_prefix('[')?;
    let (digits, rest) = rest.split_once(']')?;
    if !rest.starts_with(' ') || digits.is_empty() {
        return None;
    }
    digits.parse().ok()
}

/// The text up to and including the first `.`, `!` or `?` that ends a
/// word, whitespace collapsed; all of it when there is none.
fn first_sentence(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let end = words
        .iter()
        .position(|word| word.ends_with(['.', '!', '?']))
        .map_or(words.len(), |i| i + 1);
    words[..end].join(" ")
}

/// `text` cut into pieces of `words` words each, whitespace kept with the
/// word before it, so that the pieces join back into `text`.
pub(crate) fn split_deltas(text: &str, words: usize) -> Vec<&str> {
    let words = words.max(1);
    let mut pieces = Vec::new();
    let (mut start, mut counted, mut after_space) = (0, 0, true);
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if !space && after_space {
            if counted == words {
                pieces.push(&text[start..i]);
                (start, counted) = (i, 0);
            }
            counted += 1;
        }
        after_space = space;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// A deterministic unit vector of `dimension` for `text`: each lowercase
/// word adds ±1 at a position hashed from it (so texts sharing words are
/// near), and a text without words is a hashed direction of its own.
pub(crate) fn embed(text: &str, dimension: usize) -> Vec<f32> {
    let dimension = dimension.max(1);
    let mut vector = vec![0.0f32; dimension];
    let words = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty());
    for word in words {
        add_hashed(&mut vector, &word.to_lowercase());
    }
    if vector.iter().all(|x| *x == 0.0) {
        add_hashed(&mut vector, text);
    }

    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        vector[0] = 1.0;
        return vector;
    }
    vector.iter_mut().for_each(|x| *x /= norm);
    vector
}

fn add_hashed(vector: &mut [f32], token: &str) {
    let hash = fnv1a(token.as_bytes());
    let len = vector.len() as u64;
    let position = usize::try_from(hash % len).unwrap_or(0);
    let sign = if (hash >> 63) == 0 { 1.0 } else { -1.0 };
    vector[position] += sign;
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = "Sources:\n\n[1] docs/a.md (lines 1-4) — Intro\nCrabs walk \
        sideways. They are fast.\n\n[2] docs/b.md (lines 2-3)\nRust is a language!\nMore.\n\n\
        Question: what do crabs do?";

    #[test]
    fn cites_the_first_sentence_of_the_first_two_sources() {
        let answer = Reply::CiteSources.answer(PROMPT);
        assert_eq!(answer, "Crabs walk sideways. [1] Rust is a language! [2]");
    }

    #[test]
    fn reads_sources_quoted_between_tags() {
        let prompt = "Sources:\n\n<source id=\"1\">\n[1] a.md (lines 1-2)\nNo full stop here\n</source>\n\n\
            <source id=\"2\">\n[2] b.md (lines 3-4)\nSecond one.\n</source>\n\nQuestion: ?";
        assert_eq!(
            Reply::CiteSources.answer(prompt),
            "No full stop here [1] Second one. [2]"
        );
    }

    #[test]
    fn one_source_or_none() {
        let one = "[1] a.md (lines 1-1)\nOnly this\nQuestion: ?";
        assert_eq!(Reply::CiteSources.answer(one), "Only this [1]");
        assert_eq!(Reply::CiteSources.answer("hello"), NO_SOURCES_ANSWER);
        assert_eq!(Reply::Text("fixed".into()).answer(PROMPT), "fixed");
    }

    #[test]
    fn deltas_join_back_into_the_text() {
        let text = "  one two three four\n five  six seven";
        let pieces = split_deltas(text, 3);
        assert_eq!(pieces.concat(), text);
        assert_eq!(pieces.len(), 3);
        assert!(split_deltas("", 3).is_empty());
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embed("Ownership in Rust", 64);
        assert_eq!(a, embed("ownership in rust", 64));
        assert_eq!(a.len(), 64);
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_ne!(embed("...", 8), embed("!!!", 8));
    }
}
