//! What the HTTP API reads and writes. These types are the service's wire
//! format, kept apart from the domain types so that either can change
//! without breaking the other; `/openapi.json` is generated from them.

use std::collections::BTreeMap;

use grounded_core::{Citation, Document, Hit};
use grounded_index::{FieldMatch, PointFilter, SearchMode};
use grounded_query::{AnswerOutcome, SearchRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

/// The most hits one request may ask for.
pub const MAX_TOP_K: usize = 100;

/// The most tokens an answer may be asked to spend.
pub const MAX_ANSWER_TOKENS: u32 = 4096;

/// How the query is matched, as in `grounded search --mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Embedding similarity.
    Dense,
    /// BM25 term matching.
    Sparse,
    /// Both, fused by reciprocal rank.
    #[default]
    Hybrid,
}

impl From<Mode> for SearchMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Dense => SearchMode::Dense,
            Mode::Sparse => SearchMode::Sparse,
            Mode::Hybrid => SearchMode::Hybrid,
        }
    }
}

/// Conditions every hit must meet.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Only chunks of files at or under this path, by whole components.
    #[serde(default)]
    pub path: Option<String>,
    /// Document kinds (`markdown`, `html`, `text`, `code`), any of which passes.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Tags the document must all carry.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Payload fields that must equal a value (`{"location.anchor": "intro"}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

impl Filters {
    fn to_point_filter(&self) -> Result<PointFilter, ApiError> {
        let kinds = self
            .kinds
            .iter()
            .map(|kind| {
                grounded_core::DocumentKind::parse(kind).ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "filters.kinds: {kind:?} is not a document kind; use markdown, html, text or code"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let fields = self
            .fields
            .iter()
            .map(|(key, value)| field_match(key, value))
            .collect::<Result<_, _>>()?;
        Ok(PointFilter {
            path_prefix: self.path.clone(),
            kinds,
            tags: self.tags.clone(),
            fields,
        })
    }
}

fn field_match(key: &str, value: &serde_json::Value) -> Result<FieldMatch, ApiError> {
    let value = match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(number) => number.to_string(),
        serde_json::Value::Bool(flag) => flag.to_string(),
        _ => {
            return Err(ApiError::unprocessable(format!(
                "filters.fields.{key}: the value must be a string, a number or a boolean"
            )));
        }
    };
    if key.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "filters.fields: a field name is empty",
        ));
    }
    Ok(FieldMatch {
        key: key.to_string(),
        value,
    })
}

/// `POST /v1/search`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// What to search for.
    pub query: String,
    /// How many hits, 1 to 100.
    #[serde(default = "default_search_top_k")]
    #[schema(minimum = 1, maximum = 100, default = 5)]
    pub top_k: usize,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub filters: Filters,
    /// The collection to search; the server's default when absent.
    #[serde(default)]
    pub collection: Option<String>,
    /// Hits scoring below this are dropped (the mode's own score).
    #[serde(default)]
    pub min_score: Option<f32>,
    /// The k of reciprocal rank fusion in hybrid mode, 1 to 1000.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub rrf_k: Option<usize>,
}

/// `POST /v1/answer`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// The question to answer from the collection.
    pub question: String,
    /// How many hits to retrieve as sources, 1 to 100.
    #[serde(default = "default_answer_top_k")]
    #[schema(minimum = 1, maximum = 100, default = 5)]
    pub top_k: usize,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub filters: Filters,
    #[serde(default)]
    pub collection: Option<String>,
    #[serde(default)]
    pub min_score: Option<f32>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub rrf_k: Option<usize>,
    /// Answer as server-sent events: `delta` events with text, then one
    /// `done` event with the whole answer, its citations and usage.
    #[serde(default)]
    pub stream: bool,
    /// The most tokens the model may write, 1 to 4096.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4096)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f32>,
    /// Tokens the prompt may spend on instructions, sources and question, 200 to 100000.
    #[serde(default)]
    #[schema(minimum = 200, maximum = 100000)]
    pub prompt_tokens: Option<usize>,
}

/// As `grounded search -k`.
fn default_search_top_k() -> usize {
    5
}

fn default_answer_top_k() -> usize {
    5
}

/// The retrieval part shared by search and answer requests.
pub struct Retrieval<'a> {
    pub query: &'a str,
    pub top_k: usize,
    pub mode: Mode,
    pub filters: &'a Filters,
    pub min_score: Option<f32>,
    pub rrf_k: Option<usize>,
}

impl Retrieval<'_> {
    /// The search request, with every value checked.
    pub fn request(&self, collection: &str) -> Result<SearchRequest, ApiError> {
        if self.query.trim().is_empty() {
            return Err(ApiError::unprocessable("the query is empty"));
        }
        if !(1..=MAX_TOP_K).contains(&self.top_k) {
            return Err(ApiError::unprocessable(format!(
                "top_k must be from 1 to {MAX_TOP_K}, not {}",
                self.top_k
            )));
        }
        if self.min_score.is_some_and(|score| !score.is_finite()) {
            return Err(ApiError::unprocessable("min_score must be a finite number"));
        }
        let rrf_k = self.rrf_k.unwrap_or(grounded_index::DEFAULT_RRF_K);
        if !(1..=1000).contains(&rrf_k) {
            return Err(ApiError::unprocessable(format!(
                "rrf_k must be from 1 to 1000, not {rrf_k}"
            )));
        }
        Ok(SearchRequest {
            mode: self.mode.into(),
            filter: self.filters.to_point_filter()?,
            min_score: self.min_score,
            rrf_k,
            ..SearchRequest::new(collection, self.query, self.top_k)
        })
    }
}

/// Where a chunk sits in its document.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Location {
    /// First line, 1-based.
    pub line_start: u32,
    /// Last line, 1-based and inclusive.
    pub line_end: u32,
    /// The headings above the chunk, outermost first.
    pub section: Vec<String>,
    /// The HTML fragment id of the nearest heading above, if any.
    pub anchor: Option<String>,
}

impl From<&grounded_core::ChunkLocation> for Location {
    fn from(location: &grounded_core::ChunkLocation) -> Self {
        Self {
            line_start: location.line_start,
            line_end: location.line_end,
            section: location.section.clone(),
            anchor: location.anchor.clone(),
        }
    }
}

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HitBody {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    /// The mode's score: cosine, BM25 or the fused score.
    pub score: f32,
    pub source_path: String,
    pub kind: String,
    pub title: Option<String>,
    pub location: Location,
    pub text: String,
}

impl From<&Hit> for HitBody {
    fn from(hit: &Hit) -> Self {
        Self {
            chunk_id: hit.chunk_id.0,
            document_id: hit.document_id.0,
            score: hit.score,
            source_path: hit.source_path.clone(),
            kind: hit.kind.as_str().to_string(),
            title: hit.title.clone(),
            location: (&hit.location).into(),
            text: hit.text.clone(),
        }
    }
}

/// The response of `POST /v1/search`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResponse {
    pub collection: String,
    pub mode: Mode,
    pub hits: Vec<HitBody>,
    /// Time spent retrieving, in milliseconds.
    pub took_ms: f64,
}

/// A source an answer cites as `[number]`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CitationBody {
    pub number: usize,
    pub chunk_id: Uuid,
    pub source_path: String,
    pub title: Option<String>,
    pub location: Location,
    /// The source's text as the prompt quoted it.
    pub snippet: String,
}

impl From<&Citation> for CitationBody {
    fn from(citation: &Citation) -> Self {
        Self {
            number: citation.number,
            chunk_id: citation.chunk_id.0,
            source_path: citation.source_path.clone(),
            title: citation.title.clone(),
            location: (&citation.location).into(),
            snippet: citation.snippet.clone(),
        }
    }
}

/// Tokens spent on an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageBody {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// True when the provider reported no usage and grounded counted the tokens.
    pub counted_locally: bool,
}

/// The response of `POST /v1/answer`, and the data of the `done` event of a
/// streamed one.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AnswerResponse {
    /// The answer, with `[n]` markers naming its citations.
    pub answer: String,
    /// What wrote it: `extractive` or a chat model's id.
    pub produced_by: String,
    /// False when the answer cites no source: it is then not backed by the
    /// documents.
    pub grounded: bool,
    /// The cited sources, in order of first citation.
    pub citations: Vec<CitationBody>,
    /// Markers in the model's text that named no source and were removed.
    pub removed_markers: usize,
    /// Markers added by attribution: to sentences that cited nothing but
    /// restate a source (see the README's "Answers").
    pub attributed_markers: usize,
    /// Tokens spent; absent for an extractive answer.
    pub usage: Option<UsageBody>,
    /// Why the model stopped: `stop`, or `length` when the answer reached
    /// `max_tokens` and is cut off; absent for an extractive answer.
    pub finish_reason: Option<String>,
    /// How many sources the prompt held.
    pub sources: usize,
}

impl AnswerResponse {
    pub fn new(outcome: &AnswerOutcome, sources: usize) -> Self {
        let answer = &outcome.answer;
        Self {
            answer: answer.text.clone(),
            produced_by: answer.produced_by.clone(),
            grounded: answer.grounded,
            citations: answer.citations.iter().map(CitationBody::from).collect(),
            removed_markers: outcome.removed_markers,
            attributed_markers: outcome.attributed_markers,
            usage: outcome.usage.map(|usage| UsageBody {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.prompt_tokens + usage.completion_tokens,
                counted_locally: usage.counted_locally,
            }),
            sources,
            finish_reason: outcome.finish_reason.clone(),
        }
    }
}

/// The data of a `delta` event of a streamed answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeltaEvent {
    pub text: String,
}

/// `POST /v1/documents` with a JSON body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentBody {
    /// The document's path in the collection (`guides/setup.md`): relative,
    /// `/`-separated; its extension decides how it is read.
    pub path: String,
    /// The document's text.
    pub text: String,
    #[serde(default)]
    pub collection: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What became of an uploaded document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatus {
    /// New in the collection.
    Created,
    /// Replaced a document of the same path with other content.
    Updated,
    /// The same content was there already; nothing was embedded.
    Unchanged,
}

/// A document of a collection.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DocumentInfo {
    pub id: Uuid,
    pub collection: String,
    pub source_path: String,
    pub kind: String,
    pub title: Option<String>,
    /// `ready`, or `indexing` while its points are being written.
    pub state: String,
    pub chunk_count: u32,
    /// SHA-256 of the document's bytes.
    pub content_hash: String,
    pub tags: Vec<String>,
    pub size_bytes: u64,
    /// The encoding the text was decoded from.
    pub encoding: Option<String>,
}

impl From<&Document> for DocumentInfo {
    fn from(document: &Document) -> Self {
        Self {
            id: document.id.0,
            collection: document.collection.clone(),
            source_path: document.source_path.clone(),
            kind: document.kind.as_str().to_string(),
            title: document.title.clone(),
            state: document.state.as_str().to_string(),
            chunk_count: document.chunk_count,
            content_hash: document.content_hash.clone(),
            tags: document.metadata.tags.clone(),
            size_bytes: document.metadata.size_bytes,
            encoding: document.metadata.encoding.clone(),
        }
    }
}

/// The response of `POST /v1/documents`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UploadResponse {
    pub status: UploadStatus,
    pub document: DocumentInfo,
    /// Chunks embedded for this upload (0 when all came from the cache).
    pub embeddings_computed: usize,
}

/// The response of `GET /v1/documents`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentList {
    pub collection: String,
    pub documents: Vec<DocumentInfo>,
}

/// The `collection` query parameter of the document routes.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CollectionQuery {
    /// The collection; the server's default when absent.
    pub collection: Option<String>,
}

/// The response of the health routes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`, `ready` or `not_ready`.
    pub status: String,
    /// Each component's state (`ok`, or what is wrong), for `/readyz`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, String>,
}
