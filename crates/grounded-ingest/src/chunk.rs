//! Cutting an extracted document into chunks that fit the embedding model's
//! token budget, each with the lines, heading path and anchor it comes from.
//!
//! The cutting is text-splitter's: it keeps the largest semantic units
//! (sections, paragraphs, sentences, words) that fit, measured with the
//! model's own tokenizer (a Hugging Face tokenizer or a tiktoken encoding,
//! as [`TokenCounter`] holds it). Markdown, and the Markdown-like text that HTML
//! extraction writes, go through its Markdown splitter; plain text and code
//! through its text splitter. Code is not cut at syntax boundaries: that would
//! need a tree-sitter grammar per language.
//!
//! Invariants, checked by the tests: chunks are in document order, each lies
//! in the text and fits `max_tokens` when encoded alone, and together they
//! cover every non-whitespace character of the document.

use std::ops::Range;

use grounded_core::{ChunkLocation, DocumentKind};
use grounded_embed::TokenCounter;
use text_splitter::{MarkdownSplitter, TextSplitter, TryChunkSizer};

use crate::IngestError;
use crate::extract::ExtractedDocument;
use crate::extract_markdown::markdown_headings;

/// The token budget of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    /// The most tokens a chunk may have, without the model's special tokens.
    pub max_tokens: usize,
    /// How many tokens of the previous chunk the next one repeats, at most.
    pub overlap_tokens: usize,
}

impl ChunkConfig {
    /// Checks that the budget is usable: `max_tokens` above zero and above
    /// `overlap_tokens`.
    ///
    /// # Errors
    /// [`IngestError::InvalidChunkConfig`] naming both values otherwise.
    pub fn validate(&self) -> Result<(), IngestError> {
        if self.max_tokens == 0 || self.overlap_tokens >= self.max_tokens {
            return Err(IngestError::InvalidChunkConfig {
                max_tokens: self.max_tokens,
                overlap_tokens: self.overlap_tokens,
            });
        }
        Ok(())
    }
}

/// A chunk before it has ids: its text and where it sits in its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDraft {
    /// Position among the document's chunks, from 0.
    pub ordinal: u32,
    pub text: String,
    /// Where `text` lies in the extracted document's text.
    pub byte_range: Range<usize>,
    /// Tokens of `text` encoded alone, without special tokens.
    pub token_count: u32,
    pub location: ChunkLocation,
}

/// Cuts `doc` into chunks of at most `config.max_tokens` tokens of `counter`.
///
/// A Hugging Face tokenizer must have truncation and padding disabled, or its
/// counts would be wrong; tokens are counted without special tokens. A document that is
/// empty or only whitespace has no chunks.
///
/// # Errors
/// [`IngestError::InvalidChunkConfig`] for an unusable budget,
/// [`IngestError::UnsuitableTokenizer`] for a tokenizer that truncates or pads,
/// [`IngestError::Tokenize`] when the tokenizer fails on the text, and
/// [`IngestError::ChunkOverBudget`] in the corner case where a single character
/// is worth more tokens than the budget.
pub fn chunk_document(
    doc: &ExtractedDocument,
    counter: TokenCounter<'_>,
    config: &ChunkConfig,
) -> Result<Vec<ChunkDraft>, IngestError> {
    config.validate()?;
    check_counter(counter)?;
    if doc.text.trim().is_empty() {
        return Ok(Vec::new());
    }

    let _span = tracing::debug_span!("ingest.chunk", bytes = doc.text.len()).entered();
    let pieces = split(doc, counter, config)?;
    let locator = Locator::new(doc);
    let chunks = pieces
        .into_iter()
        .enumerate()
        .map(|(ordinal, (start, text))| draft(ordinal, start, text, &locator, counter, config))
        .collect::<Result<Vec<_>, _>>()?;
    tracing::debug!(chunks = chunks.len(), "document chunked");
    Ok(chunks)
}

fn check_counter(counter: TokenCounter<'_>) -> Result<(), IngestError> {
    let TokenCounter::HuggingFace(tokenizer) = counter else {
        return Ok(());
    };
    let reason = if tokenizer.get_truncation().is_some() {
        "truncation is enabled, so long texts would be undercounted"
    } else if tokenizer.get_padding().is_some() {
        "padding is enabled, so short texts would be overcounted"
    } else {
        return Ok(());
    };
    Err(IngestError::UnsuitableTokenizer {
        reason: reason.into(),
    })
}

/// Counts tokens for text-splitter, passing tokenizer failures on as errors
/// instead of the panic of text-splitter's own `Tokenizer` sizer.
struct Sizer<'a>(TokenCounter<'a>);

impl TryChunkSizer for Sizer<'_> {
    type Error = IngestError;

    fn try_size(&self, chunk: &str) -> Result<usize, IngestError> {
        count_tokens(self.0, chunk)
    }
}

fn count_tokens(counter: TokenCounter<'_>, text: &str) -> Result<usize, IngestError> {
    counter.try_count(text).map_err(|error| {
        let reason = match error {
            grounded_embed::EmbedError::Tokenize(reason) => reason,
            other => other.to_string(),
        };
        IngestError::Tokenize { reason }
    })
}

/// The chunks of the document as `(byte offset, text)`, trimmed of whitespace.
fn split<'t>(
    doc: &'t ExtractedDocument,
    counter: TokenCounter<'_>,
    config: &ChunkConfig,
) -> Result<Vec<(usize, &'t str)>, IngestError> {
    let splitter_config = text_splitter::ChunkConfig::new(config.max_tokens)
        .with_overlap(config.overlap_tokens)
        .map_err(|_| IngestError::InvalidChunkConfig {
            max_tokens: config.max_tokens,
            overlap_tokens: config.overlap_tokens,
        })?
        .with_sizer(Sizer(counter));

    if is_markdown(doc.kind) {
        MarkdownSplitter::new(splitter_config)
            .try_chunk_indices(&doc.text)
            .collect()
    } else {
        TextSplitter::new(splitter_config)
            .try_chunk_indices(&doc.text)
            .collect()
    }
}

/// Whether the document's text is Markdown: a Markdown file, or HTML that
/// extraction wrote out as Markdown.
fn is_markdown(kind: DocumentKind) -> bool {
    matches!(kind, DocumentKind::Markdown | DocumentKind::Html)
}

fn draft(
    ordinal: usize,
    start: usize,
    text: &str,
    locator: &Locator<'_>,
    counter: TokenCounter<'_>,
    config: &ChunkConfig,
) -> Result<ChunkDraft, IngestError> {
    let ordinal = saturating_u32(ordinal);
    let tokens = count_tokens(counter, text)?;
    if tokens > config.max_tokens {
        return Err(IngestError::ChunkOverBudget {
            ordinal,
            tokens,
            max_tokens: config.max_tokens,
        });
    }

    let byte_range = start..start + text.len();
    Ok(ChunkDraft {
        ordinal,
        text: text.to_owned(),
        location: locator.locate(&byte_range),
        byte_range,
        token_count: saturating_u32(tokens),
    })
}

/// Counts that cannot reach `u32::MAX` for files within the walk's size limit.
fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Finds lines, heading paths and anchors for byte ranges of one document.
struct Locator<'a> {
    /// Byte offset where each line starts; `\n`, `\r\n` and a lone `\r` end lines.
    line_starts: Vec<usize>,
    /// `(offset, heading path)` from each heading on, in order.
    sections: Vec<(usize, Vec<String>)>,
    anchors: &'a [(usize, String)],
}

impl<'a> Locator<'a> {
    fn new(doc: &'a ExtractedDocument) -> Self {
        let sections = if is_markdown(doc.kind) {
            section_paths(&doc.text)
        } else {
            Vec::new()
        };
        Self {
            line_starts: line_starts(&doc.text),
            sections,
            anchors: &doc.anchors,
        }
    }

    fn locate(&self, range: &Range<usize>) -> ChunkLocation {
        let last_byte = range.end.saturating_sub(1).max(range.start);
        let section_index = self
            .sections
            .partition_point(|(offset, _)| *offset <= range.start);
        let anchor_index = self
            .anchors
            .partition_point(|(offset, _)| *offset <= range.start);

        ChunkLocation {
            line_start: self.line_of(range.start),
            line_end: self.line_of(last_byte),
            section: section_index
                .checked_sub(1)
                .map(|i| self.sections[i].1.clone())
                .unwrap_or_default(),
            anchor: anchor_index
                .checked_sub(1)
                .map(|i| self.anchors[i].1.clone()),
        }
    }

    /// The 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> u32 {
        saturating_u32(self.line_starts.partition_point(|&start| start <= offset))
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = vec![0];
    for (i, &byte) in bytes.iter().enumerate() {
        let lone_cr = byte == b'\r' && bytes.get(i + 1) != Some(&b'\n');
        if byte == b'\n' || lone_cr {
            starts.push(i + 1);
        }
    }
    starts
}

/// The heading path in force from each heading on, outermost heading first.
fn section_paths(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut open: Vec<(usize, String)> = Vec::new();
    let mut paths = Vec::new();
    for heading in markdown_headings(text) {
        while open
            .last()
            .is_some_and(|(level, _)| *level >= heading.level)
        {
            open.pop();
        }
        open.push((heading.level, heading.text));
        let path = open.iter().map(|(_, text)| text.clone()).collect();
        paths.push((heading.offset, path));
    }
    paths
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::OnceLock;

    use tokenizers::Tokenizer;

    use super::*;

    /// A tokenizer with one token per word or run of punctuation.
    fn word_tokenizer() -> Tokenizer {
        Tokenizer::from_str(
            r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
            "decoder":null,"model":{"type":"WordLevel","vocab":{"[UNK]":0},"unk_token":"[UNK]"}}"#,
        )
        .unwrap()
    }

    /// [`word_tokenizer`] as a counter.
    fn words() -> TokenCounter<'static> {
        static WORDS: OnceLock<Tokenizer> = OnceLock::new();
        TokenCounter::HuggingFace(WORDS.get_or_init(word_tokenizer))
    }

    fn document(kind: DocumentKind, text: &str) -> ExtractedDocument {
        ExtractedDocument {
            kind,
            title: None,
            text: text.to_owned(),
            anchors: Vec::new(),
        }
    }

    fn config(max_tokens: usize, overlap_tokens: usize) -> ChunkConfig {
        ChunkConfig {
            max_tokens,
            overlap_tokens,
        }
    }

    /// Order, bounds, budget and coverage, the invariants every chunking
    /// keeps, with tokens counted by the word tokenizer.
    fn assert_invariants(doc: &ExtractedDocument, chunks: &[ChunkDraft], max_tokens: usize) {
        assert_invariants_in(words(), doc, chunks, max_tokens);
    }

    /// The invariants, with tokens counted by `counter`.
    fn assert_invariants_in(
        counter: TokenCounter<'_>,
        doc: &ExtractedDocument,
        chunks: &[ChunkDraft],
        max_tokens: usize,
    ) {
        let mut covered_to = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.ordinal as usize, i);
            assert_eq!(&doc.text[chunk.byte_range.clone()], chunk.text);
            let tokens = count_tokens(counter, &chunk.text).unwrap();
            assert_eq!(tokens, chunk.token_count as usize);
            assert!(tokens <= max_tokens, "chunk {i} has {tokens} tokens");
            if i > 0 {
                assert!(chunk.byte_range.start > chunks[i - 1].byte_range.start);
            }
            let gap = &doc.text[covered_to.min(chunk.byte_range.start)..chunk.byte_range.start];
            assert!(gap.trim().is_empty(), "text lost before chunk {i}: {gap:?}");
            covered_to = covered_to.max(chunk.byte_range.end);
        }
        assert!(
            doc.text[covered_to..].trim().is_empty(),
            "text lost at the end"
        );
    }

    const NESTED: &str = "# Guide\n\
        \n\
        Intro words here.\n\
        \n\
        ## Install\n\
        \n\
        Run the installer now.\n\
        \n\
        ```sh\n\
        # this is a shell comment, not a heading\n\
        make install\n\
        ```\n\
        \n\
        ### On Linux\n\
        \n\
        Use the package manager.\n\
        \n\
        ## Usage\n\
        \n\
        Call it with a file.\n";

    #[test]
    fn sections_follow_nested_headings_and_ignore_code_fences() {
        let doc = document(DocumentKind::Markdown, NESTED);
        let chunks = chunk_document(&doc, words(), &config(8, 0)).unwrap();
        assert_invariants(&doc, &chunks, 8);

        let section_of = |needle: &str| {
            let chunk = chunks.iter().find(|c| c.text.contains(needle)).unwrap();
            chunk.location.section.join(" > ")
        };
        assert_eq!(section_of("Intro words"), "Guide");
        assert_eq!(section_of("Run the installer"), "Guide > Install");
        assert_eq!(section_of("make install"), "Guide > Install");
        assert_eq!(section_of("package manager"), "Guide > Install > On Linux");
        assert_eq!(section_of("Call it"), "Guide > Usage");
    }

    #[test]
    fn line_ranges_are_lines_of_the_text() {
        let text = "first line\nsecond line\n\nfourth line here\r\nfifth\rsixth\n";
        let doc = document(DocumentKind::Text, text);
        let chunks = chunk_document(&doc, words(), &config(2, 0)).unwrap();
        assert_invariants(&doc, &chunks, 2);

        let lines: Vec<_> = chunks
            .iter()
            .map(|c| (c.text.as_str(), c.location.line_start, c.location.line_end))
            .collect();
        assert_eq!(
            lines,
            [
                ("first line", 1, 1),
                ("second line", 2, 2),
                ("fourth line", 4, 4),
                ("here\r\nfifth", 4, 5),
                ("sixth", 6, 6),
            ]
        );
    }

    #[test]
    fn a_chunk_spanning_lines_reports_first_and_last() {
        let doc = document(DocumentKind::Text, "a b\nc d\ne f\n");
        let chunks = chunk_document(&doc, words(), &config(100, 0)).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            (chunks[0].location.line_start, chunks[0].location.line_end),
            (1, 3)
        );
        assert!(chunks[0].location.section.is_empty());
    }

    #[test]
    fn anchors_are_the_nearest_at_or_before_the_chunk() {
        let text = "# One\n\nalpha beta gamma\n\n# Two\n\ndelta epsilon zeta\n";
        let mut doc = document(DocumentKind::Html, text);
        doc.anchors = vec![
            (0, "one".into()),
            (text.find("# Two").unwrap(), "two".into()),
        ];
        let chunks = chunk_document(&doc, words(), &config(3, 0)).unwrap();
        assert_invariants(&doc, &chunks, 3);

        let anchor_of = |needle: &str| {
            let chunk = chunks.iter().find(|c| c.text.contains(needle)).unwrap();
            chunk.location.anchor.clone()
        };
        assert_eq!(anchor_of("alpha").as_deref(), Some("one"));
        assert_eq!(anchor_of("delta").as_deref(), Some("two"));
        assert_eq!(chunks[0].location.section, ["One"]);
    }

    #[test]
    fn overlap_repeats_text_and_keeps_the_invariants() {
        let text = "one two three four five six seven eight nine ten eleven twelve. ".repeat(20);
        let doc = document(DocumentKind::Text, &text);
        let chunks = chunk_document(&doc, words(), &config(10, 4)).unwrap();
        assert_invariants(&doc, &chunks, 10);
        let overlapping = chunks
            .windows(2)
            .filter(|pair| pair[1].byte_range.start < pair[0].byte_range.end)
            .count();
        assert!(overlapping > 0);
    }

    #[test]
    fn invalid_configs_name_their_values() {
        let doc = document(DocumentKind::Text, "text");
        for (max, overlap) in [(0, 0), (10, 10), (10, 12)] {
            let error = chunk_document(&doc, words(), &config(max, overlap)).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(&format!("max_tokens = {max}")),
                "{message}"
            );
            assert!(
                message.contains(&format!("overlap_tokens = {overlap}")),
                "{message}"
            );
        }
    }

    #[test]
    fn a_truncating_tokenizer_is_refused() {
        let mut tokenizer = word_tokenizer();
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams::default()))
            .unwrap();
        let doc = document(DocumentKind::Text, "text");
        let counter = TokenCounter::HuggingFace(&tokenizer);
        let error = chunk_document(&doc, counter, &config(10, 0)).unwrap_err();
        assert!(
            matches!(error, IngestError::UnsuitableTokenizer { .. }),
            "{error}"
        );
    }

    #[test]
    fn empty_and_odd_documents_do_not_panic() {
        let long_line = "word ".repeat(5_000);
        let no_spaces = "x".repeat(50_000);
        let texts = [
            "",
            " \n\t\r\n ",
            &long_line,
            &no_spaces,
            "\u{fffd}\0\u{1}",
            "#",
            "```",
        ];
        for text in texts {
            for kind in [
                DocumentKind::Markdown,
                DocumentKind::Text,
                DocumentKind::Code,
            ] {
                let doc = document(kind, text);
                let chunks = chunk_document(&doc, words(), &config(16, 2)).unwrap();
                assert_invariants(&doc, &chunks, 16);
                assert_eq!(chunks.is_empty(), text.trim().is_empty());
            }
        }
    }

    #[test]
    fn chunks_for_an_openai_model_fit_the_budget_in_tiktoken_tokens() {
        let tiktoken = TokenCounter::for_openai_model("text-embedding-3-small");
        // Long compound words: one word each, many tiktoken tokens.
        let text = "Der Donaudampfschifffahrtskapitän liest das \
            Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz. "
            .repeat(40);
        let doc = document(DocumentKind::Text, &text);

        let chunks = chunk_document(&doc, tiktoken, &config(32, 4)).unwrap();
        assert_invariants_in(tiktoken, &doc, &chunks, 32);
        assert!(chunks.len() > 1);

        // Sized in words, the same budget gives chunks over it in tiktoken
        // tokens: the counter decides the cut.
        let by_words = chunk_document(&doc, words(), &config(32, 4)).unwrap();
        assert!(
            by_words
                .iter()
                .any(|chunk| tiktoken.count(&chunk.text) > 32),
            "words and tiktoken tokens agree on this text"
        );
    }
}
