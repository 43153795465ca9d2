//! Turning files into chunks, and the ingest pipeline that embeds, indexes and
//! records them.
//!
//! The steps, each in its own module: [`walk`] finds the files, [`decode`]
//! turns bytes into text whatever the encoding, [`extract`] reduces a file to
//! its content (HTML to its main content, as Markdown), [`chunk`] cuts that
//! content by token count, and [`pipeline`] runs them and keeps the metadata
//! store and the vector index consistent.

pub mod chunk;
pub mod decode;
pub mod extract;
pub mod pipeline;
pub mod walk;

mod error;
mod extract_html;
mod extract_markdown;

pub use chunk::{ChunkConfig, ChunkDraft, chunk_document};
pub use decode::{DecodedText, decode_bytes};
pub use error::IngestError;
pub use extract::{ExtractedDocument, Extraction, extract_document};
pub use pipeline::{IngestOptions, IngestReport, Ingestor};
pub use walk::{SourceFile, WalkOptions, document_kind, walk_paths};
