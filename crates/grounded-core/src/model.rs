//! Domain types shared by every layer.

use serde::{Deserialize, Serialize};

use crate::{ChunkId, DocumentId};

/// What kind of file a document came from; decides how it is extracted and split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentKind {
    Markdown,
    Html,
    Text,
    Code,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Markdown => "markdown",
            Self::Html => "html",
            Self::Text => "text",
            Self::Code => "code",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "markdown" => Some(Self::Markdown),
            "html" => Some(Self::Html),
            "text" => Some(Self::Text),
            "code" => Some(Self::Code),
            _ => None,
        }
    }
}

/// Whether a document's chunks are all in the vector index.
///
/// A document is `Indexing` from the moment its points start changing until
/// its new chunks are committed and stale points are deleted. A document left
/// `Indexing` by a killed run is repaired by the next ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentState {
    Indexing,
    Ready,
}

impl DocumentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Indexing => "indexing",
            Self::Ready => "ready",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "indexing" => Some(Self::Indexing),
            "ready" => Some(Self::Ready),
            _ => None,
        }
    }
}

/// One source file of a collection, as the metadata store records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: DocumentId,
    pub collection: String,
    /// The path as given on the command line joined with the walked path.
    pub source_path: String,
    pub kind: DocumentKind,
    /// SHA-256 of the file's raw bytes.
    pub content_hash: String,
    /// Hash of the settings that decide the chunks (model, chunk sizes,
    /// extractor version): a file is unchanged only if both hashes match.
    pub settings_hash: String,
    pub title: Option<String>,
    pub state: DocumentState,
    pub chunk_count: u32,
    /// Facts about the file that do not decide its chunks.
    #[serde(default)]
    pub metadata: DocumentMetadata,
}

/// What the store records about a document's file besides its hashes; kept
/// as JSON (JSONB on Postgres) so that new facts need no schema change.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentMetadata {
    /// The encoding the text was decoded from, by its WHATWG name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The size of the file in bytes.
    #[serde(default)]
    pub size_bytes: u64,
    /// The tags the document was ingested with, sorted; search can filter by them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Where a chunk sits in its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLocation {
    /// First line of the chunk, 1-based. For Markdown, text and code these are
    /// lines of the file; for HTML, lines of the extracted main content.
    pub line_start: u32,
    /// Last line of the chunk, 1-based and inclusive.
    pub line_end: u32,
    /// The headings the chunk sits under, outermost first.
    pub section: Vec<String>,
    /// The HTML fragment id of the nearest heading above the chunk, if any.
    pub anchor: Option<String>,
}

/// A piece of a document small enough to embed whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub id: ChunkId,
    pub document_id: DocumentId,
    pub ordinal: u32,
    pub text: String,
    /// SHA-256 of the chunk text; the embedding cache key together with the model.
    pub text_hash: String,
    pub token_count: u32,
    pub location: ChunkLocation,
}

/// One retrieved chunk with its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub chunk_id: ChunkId,
    pub document_id: DocumentId,
    pub score: f32,
    pub source_path: String,
    pub kind: DocumentKind,
    pub title: Option<String>,
    pub location: ChunkLocation,
    pub text: String,
}

/// A numbered source that an answer refers to as `[n]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    pub number: usize,
    pub chunk_id: ChunkId,
    pub source_path: String,
    pub location: ChunkLocation,
    pub title: Option<String>,
    /// The source's text as the prompt quoted it.
    #[serde(default)]
    pub snippet: String,
}

/// An answer with the sources its claims cite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    /// How the text was produced: `extractive` or a chat model's id.
    pub produced_by: String,
    /// The sources the text cites as `[n]`, in order of first citation.
    pub citations: Vec<Citation>,
    /// False when the text cites no source it was given: it is then not
    /// backed by the documents and must not be shown as if it were.
    #[serde(default)]
    pub grounded: bool,
}

/// One chat message, as OpenAI-compatible chat APIs take it: `role` is
/// `system`, `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: content.into(),
        }
    }
}
