//! Citations by attribution: a sentence of an answer that cites no source,
//! but restates one, gets that source's marker.
//!
//! Small models (the local one above all) write answers from their sources
//! without citing them. Each sentence of the answer that carries no valid
//! marker is embedded and compared with every sentence of the prompt's
//! sources; when the closest is at least `min_similarity` (cosine, with the
//! embedding model), the sentence gets ` [n]` of that source. A sentence
//! close to no source stays uncited, and an answer none of whose sentences
//! is cited or attributed is still flagged as not grounded. The answer
//! reports how many markers were added this way.
//!
//! Streams are attributed sentence by sentence: a sentence is settled once
//! the text after it has begun a new sentence with a letter, so that the
//! boundary cannot move, and the same splitting applies to a whole text fed
//! in one piece. A stream therefore arrives a sentence at a time.

use std::sync::Arc;

use grounded_embed::Embedder;
use unicode_segmentation::UnicodeSegmentation;

use crate::QueryError;
use crate::citations::filter_citations;

/// The cosine similarity from which a sentence counts as restating a source
/// sentence, with all-MiniLM-L6-v2: near copies of a source sentence score
/// 0.85 and above, sentences on the same topic that say something else
/// mostly 0.4 to 0.75 (fragments of a wrapped line up to 0.78).
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.8;

/// Sentences with fewer words are not attributed (list numbers, "Yes.").
const MIN_WORDS: usize = 4;

/// Finds the source a sentence restates.
pub struct Attributor {
    embedder: Arc<dyn Embedder>,
    /// Each source sentence's vector and the number of its source.
    sentences: Vec<(usize, Vec<f32>)>,
    min_similarity: f32,
}

impl Attributor {
    /// Embeds the sentences of `sources` (numbered from 1, in order).
    ///
    /// # Errors
    /// When the embedder fails.
    pub async fn new(
        embedder: Arc<dyn Embedder>,
        sources: &[String],
        min_similarity: f32,
    ) -> Result<Self, QueryError> {
        let mut numbers = Vec::new();
        let mut texts = Vec::new();
        for (index, source) in sources.iter().enumerate() {
            for sentence in source.unicode_sentences() {
                let sentence = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
                if sentence.split_whitespace().count() >= MIN_WORDS {
                    numbers.push(index + 1);
                    texts.push(sentence);
                }
            }
        }
        let vectors = if texts.is_empty() {
            Vec::new()
        } else {
            embedder.embed(&texts).await?
        };
        Ok(Self {
            embedder,
            sentences: numbers.into_iter().zip(vectors).collect(),
            min_similarity,
        })
    }

    /// The number of the source `sentence` restates, if one is close enough.
    async fn source_of(&self, sentence: &str) -> Result<Option<usize>, QueryError> {
        let words = sentence.split_whitespace().count();
        if words < MIN_WORDS || !is_complete(sentence) || self.sentences.is_empty() {
            return Ok(None);
        }
        let vector = self
            .embedder
            .embed(&[sentence.trim().to_string()])
            .await?
            .pop()
            .unwrap_or_default();

        let best = self
            .sentences
            .iter()
            .map(|(number, source)| (*number, dot(&vector, source)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        tracing::debug!(?best, sentence, "attribution");
        Ok(best
            .filter(|(_, similarity)| *similarity >= self.min_similarity)
            .map(|(number, _)| number))
    }
}

/// Whether a sentence ends like one. A model that wraps its lines like the
/// sources it read produces line-long fragments, which split as sentences;
/// those are never attributed.
fn is_complete(sentence: &str) -> bool {
    sentence
        .trim_end()
        .ends_with(['.', '!', '?', ':', ';', ')', '"', '”', '’', '`', '*'])
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Splits text arriving in pieces into settled sentences and attributes the
/// uncited ones.
pub struct SentenceAttribution {
    sources: usize,
    pending: String,
    added: usize,
}

impl SentenceAttribution {
    /// For an answer from `sources` numbered sources.
    pub fn new(sources: usize) -> Self {
        Self {
            sources,
            pending: String::new(),
            added: 0,
        }
    }

    /// How many markers attribution added.
    pub fn added(&self) -> usize {
        self.added
    }

    /// Feeds filtered text; returns the settled sentences, attributed.
    ///
    /// # Errors
    /// When the embedder fails.
    pub async fn push(
        &mut self,
        text: &str,
        attributor: &Attributor,
    ) -> Result<String, QueryError> {
        self.pending.push_str(text);
        let segments = sentences(&self.pending);
        let Some((last, settled)) = segments.split_last() else {
            return Ok(String::new());
        };
        // The boundary before `last` is fixed only once `last` holds a letter
        // that is not part of a citation marker.
        if settled.is_empty() || !starts_a_sentence(last) {
            return Ok(String::new());
        }
        let settled: Vec<String> = settled.iter().map(|s| s.to_string()).collect();
        let next = last.to_string();

        let mut out = String::new();
        for (index, sentence) in settled.iter().enumerate() {
            let following = settled.get(index + 1).map_or(next.as_str(), String::as_str);
            out.push_str(&self.attribute(sentence, following, attributor).await?);
        }
        self.pending = next;
        Ok(out)
    }

    /// Ends the text; returns the last sentence, attributed.
    ///
    /// # Errors
    /// When the embedder fails.
    pub async fn finish(&mut self, attributor: &Attributor) -> Result<String, QueryError> {
        let rest = std::mem::take(&mut self.pending);
        let segments: Vec<String> = sentences(&rest).into_iter().map(str::to_string).collect();
        let mut out = String::new();
        for (index, sentence) in segments.iter().enumerate() {
            let following = segments.get(index + 1).map_or("", String::as_str);
            out.push_str(&self.attribute(sentence, following, attributor).await?);
        }
        Ok(out)
    }

    /// `sentence`, with ` [n]` added before its trailing whitespace when it
    /// cites nothing (nor does the start of the `following` one, where
    /// markers after a full stop land) and restates source n.
    async fn attribute(
        &mut self,
        sentence: &str,
        following: &str,
        attributor: &Attributor,
    ) -> Result<String, QueryError> {
        // Markers at its start belong to the sentence before it.
        let own = &sentence[leading_markers(sentence).len()..];
        let (_, cited, _) = filter_citations(own, self.sources);
        let (_, cited_after, _) = filter_citations(leading_markers(following), self.sources);
        if !cited.is_empty() || !cited_after.is_empty() {
            return Ok(sentence.to_string());
        }
        let Some(number) = attributor.source_of(sentence).await? else {
            return Ok(sentence.to_string());
        };

        self.added += 1;
        let body = sentence.trim_end();
        let space = &sentence[body.len()..];
        Ok(format!("{body} [{number}]{space}"))
    }
}

/// The sentences of `text`, whitespace kept. A line break followed by a
/// lowercase letter joins two lines of one sentence (a model that wraps its
/// lines like the sources it read), so it does not end a sentence; any other
/// line break does, as in Unicode's rules.
fn sentences(text: &str) -> Vec<&str> {
    let joined: String = text
        .char_indices()
        .map(|(at, c)| {
            let next = text[at + c.len_utf8()..].chars().next();
            match (c, next) {
                ('\n', Some(next)) if next.is_lowercase() => ' ',
                _ => c,
            }
        })
        .collect();
    // `joined` has the same byte offsets: only `\n` became ` `.
    let mut bounds: Vec<usize> = joined
        .split_sentence_bound_indices()
        .map(|(at, _)| at)
        .collect();
    bounds.push(text.len());
    bounds
        .windows(2)
        .map(|pair| &text[pair[0]..pair[1]])
        .collect()
}

/// Whether `segment` has begun a sentence: it holds a letter outside the
/// markers it may start with.
fn starts_a_sentence(segment: &str) -> bool {
    segment[leading_markers(segment).len()..]
        .chars()
        .any(char::is_alphabetic)
}

/// The citation markers and spaces a segment starts with (`[1] [2] `).
fn leading_markers(segment: &str) -> &str {
    let mut end = 0;
    let bytes = segment.as_bytes();
    loop {
        while end < bytes.len() && bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        if end < bytes.len() && bytes[end] == b'[' {
            let close = segment[end..].find(']').map(|i| end + i);
            let is_marker = close.is_some_and(|close| {
                let inner = &segment[end + 1..close];
                !inner.is_empty()
                    && inner
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
            });
            if let (true, Some(close)) = (is_marker, close) {
                end = close + 1;
                continue;
            }
        }
        return &segment[..end];
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use grounded_embed::{EmbedError, Embedding};

    use super::*;

    /// Vectors of word counts over a tiny vocabulary: sentences with the
    /// same words are identical, others differ. Stands in for the model so
    /// that these tests are about splitting and placing markers.
    struct Words {
        tokenizer: tokenizers::Tokenizer,
    }

    const VOCABULARY: [&str; 8] = [
        "owner", "value", "scope", "dropped", "thread", "mutex", "data", "share",
    ];

    #[async_trait]
    impl Embedder for Words {
        fn model_id(&self) -> &str {
            "words"
        }
        fn dimension(&self) -> usize {
            VOCABULARY.len() + 1
        }
        fn max_input_tokens(&self) -> usize {
            512
        }
        fn token_counter(&self) -> grounded_embed::TokenCounter<'_> {
            grounded_embed::TokenCounter::HuggingFace(&self.tokenizer)
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbedError> {
            Ok(texts.iter().map(|text| words_vector(text)).collect())
        }
    }

    fn words_vector(text: &str) -> Vec<f32> {
        let lower = text.to_lowercase();
        let mut vector: Vec<f32> = VOCABULARY
            .iter()
            .map(|w| lower.matches(w).count() as f32)
            .collect();
        vector.push(0.1);
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        vector.iter().map(|x| x / norm).collect()
    }

    fn embedder() -> Arc<dyn Embedder> {
        let model = tokenizers::models::wordlevel::WordLevel::default();
        Arc::new(Words {
            tokenizer: tokenizers::Tokenizer::new(model),
        })
    }

    const SOURCES: [&str; 2] = [
        "Each value has an owner. When the owner goes out of scope, the value is dropped.",
        "To share data between threads, wrap it in a Mutex.",
    ];

    async fn attributed(pieces: &[&str]) -> (String, usize) {
        let sources: Vec<String> = SOURCES.iter().map(|s| s.to_string()).collect();
        let attributor = Attributor::new(embedder(), &sources, 0.9)
            .await
            .expect("embed");
        let mut sentences = SentenceAttribution::new(sources.len());
        let mut out = String::new();
        for piece in pieces {
            out.push_str(&sentences.push(piece, &attributor).await.expect("push"));
        }
        out.push_str(&sentences.finish(&attributor).await.expect("finish"));
        (out, sentences.added())
    }

    #[tokio::test]
    async fn an_uncited_restatement_gets_its_sources_marker_and_nothing_else_does() {
        let text = "Every value has one owner, always. Rust is a fun language to learn today. \
            Threads share data through a Mutex they lock.";
        let (out, added) = attributed(&[text]).await;
        assert_eq!(
            out,
            "Every value has one owner, always. [1] Rust is a fun language to learn today. \
            Threads share data through a Mutex they lock. [2]"
        );
        assert_eq!(added, 2);
    }

    #[tokio::test]
    async fn a_wrapped_sentence_is_one_sentence_and_a_fragment_is_not_attributed() {
        let text = "Each value has\nan owner. Each value has an owner and\nThat";
        let (out, added) = attributed(&[text]).await;
        assert_eq!(
            out,
            "Each value has\nan owner. [1] Each value has an owner and\nThat"
        );
        assert_eq!(added, 1);
    }

    #[tokio::test]
    async fn cited_sentences_are_left_alone_wherever_their_marker_is() {
        let text = "Each value has an owner [2]. The owner goes out of scope. [2] Share data between threads with a Mutex.";
        let (out, added) = attributed(&[text]).await;
        assert_eq!(
            out,
            "Each value has an owner [2]. The owner goes out of scope. [2] Share data between threads with a Mutex. [2]"
        );
        assert_eq!(added, 1);
    }

    #[tokio::test]
    async fn any_split_of_the_text_attributes_alike() {
        let text = "When the owner goes out of scope, the value is dropped. Threads share data (with a Mutex). \
            e.g. the value owner. [1] Done now with words here.";
        let (whole, _) = attributed(&[text]).await;
        let chars: Vec<String> = text.chars().map(String::from).collect();
        for size in [1, 2, 5, 13] {
            let pieces: Vec<String> = chars.chunks(size).map(|c| c.concat()).collect();
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            assert_eq!(attributed(&refs).await.0, whole, "pieces of {size}");
        }
    }
}
