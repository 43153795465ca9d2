//! The ingest pipeline: files in, searchable chunks out.
//!
//! For each file the pipeline reads and hashes the bytes, skips it when the
//! store already holds that exact content, and otherwise decodes, extracts
//! and chunks it. Chunks are embedded in batches across documents through the
//! embedding cache. Each batch of documents is then written in an order that
//! keeps search consistent at every instant:
//!
//! 1. the store marks each document `indexing` (its old chunks stay visible);
//! 2. the batch's new points are upserted in one write (invisible: the store
//!    does not know them);
//! 3. the store replaces each document's chunks in one transaction (the new
//!    chunks become visible, the old ones invisible, at once);
//! 4. points of a changed document that are not among its new chunks are
//!    deleted (a document the store had no record of has none);
//! 5. the store marks the document `ready`.
//!
//! A run killed anywhere leaves the document `indexing`; the next run sees
//! that and redoes it whole, which deletes any orphaned points. Embeddings are
//! cached, so the redo embeds nothing again.
//!
//! Several ingests may run at once against one store (ingest workers sharing
//! Postgres). A run claims each document before reading it
//! ([`MetadataStore::try_claim`]) and holds the claim until the document is
//! written, so no document is ever written by two runs at once; a document
//! claimed elsewhere is looked at again at the end of the run, by which time
//! it is usually unchanged. Every couple of seconds, between batches, the run
//! hands the collection back to the index ([`VectorIndex::release`]) so that
//! other processes can write to it and search it in between.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use grounded_core::{
    Chunk, ChunkId, Document, DocumentId, DocumentMetadata, DocumentState, content_hash,
};
use grounded_embed::{CachedEmbedder, Embedder};
use grounded_index::{
    CollectionSpec, Point, PointPayload, VectorIndex, english_bm25, path_prefixes,
};
use grounded_store::MetadataStore;
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::IngestError;
use crate::chunk::{ChunkConfig, ChunkDraft, chunk_document};
use crate::decode::decode_bytes;
use crate::extract::{Extraction, extract_document};
use crate::walk::{SourceFile, WalkOptions, walk_paths};

/// The version of the extraction and chunking rules and of what a point
/// carries; raising it makes the next ingest rewrite every document. Version
/// 2 added the sparse vector, tags and path prefixes.
pub const PIPELINE_VERSION: u32 = 2;

/// How long a run keeps the collection open in the index between batches
/// before handing it back to other processes, which wait meanwhile.
const RELEASE_EVERY: Duration = Duration::from_secs(2);

/// How long a run waits for documents that another ingest has claimed.
const CLAIM_WAIT: Duration = Duration::from_secs(600);

/// How often a run looks again at documents claimed by another ingest.
const CLAIM_RETRY: Duration = Duration::from_millis(250);

/// What an ingest run does besides reading files.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub collection: String,
    pub chunking: ChunkConfig,
    pub walk: WalkOptions,
    /// Remove documents under the given roots whose files were not found.
    pub prune: bool,
    /// How many chunks are embedded and indexed together.
    pub batch_chunks: usize,
    /// Tags given to every document of the run; the run stores them
    /// trimmed, sorted and unique. Part of the settings, so retagging rewrites.
    pub tags: Vec<String>,
}

/// Tags as a run stores them: trimmed, without empty ones, sorted, unique.
fn normalize_tags(tags: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = tags
        .iter()
        .map(|tag| tag.trim().to_owned())
        .filter(|tag| !tag.is_empty())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// Time spent in each stage of a run, summed over documents.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct StageTimes {
    pub walk_ms: f64,
    pub read_ms: f64,
    pub decode_ms: f64,
    pub extract_ms: f64,
    pub chunk_ms: f64,
    pub embed_ms: f64,
    pub index_ms: f64,
    pub store_ms: f64,
}

/// A file that could not be ingested, and why.
#[derive(Debug, Clone, Serialize)]
pub struct FileFailure {
    pub source_path: String,
    pub error: String,
}

/// What a run did; printed as the run's summary line.
#[derive(Debug, Default, Clone, Serialize)]
pub struct IngestReport {
    pub collection: String,
    pub files_seen: usize,
    /// Files skipped because grounded does not read their type.
    pub files_unsupported: usize,
    pub unsupported_by_extension: BTreeMap<String, usize>,
    pub documents_new: usize,
    pub documents_changed: usize,
    /// Of the changed documents, those whose files had not changed but whose
    /// points were missing from the vector index, written again.
    pub documents_repaired: usize,
    pub documents_unchanged: usize,
    pub documents_removed: usize,
    pub documents_skipped: usize,
    pub documents_failed: usize,
    /// Chunks written in this run.
    pub chunks: usize,
    pub tokens: usize,
    pub embeddings_computed: usize,
    pub embeddings_cached: usize,
    pub elapsed_ms: f64,
    pub stages: StageTimes,
    pub failures: Vec<FileFailure>,
    pub skipped: Vec<FileFailure>,
}

impl IngestReport {
    /// Chunks written per second of the whole run.
    pub fn chunks_per_second(&self) -> f64 {
        rate(self.chunks, self.elapsed_ms)
    }

    /// Tokens of the written chunks per second of the whole run.
    pub fn tokens_per_second(&self) -> f64 {
        rate(self.tokens, self.elapsed_ms)
    }
}

fn rate(count: usize, elapsed_ms: f64) -> f64 {
    if elapsed_ms <= 0.0 {
        return 0.0;
    }
    count as f64 / (elapsed_ms / 1000.0)
}

/// Receives progress while a run goes; a terminal shows it as a bar.
pub trait IngestProgress: Send + Sync {
    fn files_found(&self, _count: usize) {}
    fn file_done(&self, _source_path: &str) {}
}

/// Progress that nobody watches.
pub struct NoProgress;

impl IngestProgress for NoProgress {}

/// What decides whether a file's stored chunks are still right: its bytes and
/// the settings it was chunked under.
struct Fingerprint {
    content_hash: String,
    settings_hash: String,
}

/// A document read and chunked, waiting for its embeddings.
struct PreparedDocument {
    document: Document,
    chunks: Vec<Chunk>,
    is_new: bool,
}

/// What every file of one run is prepared against.
struct Run<'a> {
    options: &'a IngestOptions,
    /// The options' tags as documents record them ([`normalize_tags`]).
    tags: Vec<String>,
    settings: String,
    /// Whether the index may lack points of documents the store holds
    /// ready, so that each one's points must be checked.
    check_points: bool,
    /// When the run last handed the collection back to the index.
    released: std::sync::Mutex<Instant>,
}

impl Run<'_> {
    /// Whether [`RELEASE_EVERY`] has passed since the collection was last
    /// handed back; if so, the clock restarts.
    fn release_due(&self) -> bool {
        let mut released = self
            .released
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if released.elapsed() < RELEASE_EVERY {
            return false;
        }
        *released = Instant::now();
        true
    }
}

/// What preparing one file came to.
enum Prepared {
    /// Chunked and claimed, to be embedded and written.
    Document(Box<PreparedDocument>),
    /// Nothing to write: unchanged, skipped, failed or removed.
    Done,
    /// Another ingest holds the document; try again later.
    ClaimedElsewhere,
}

/// Prepared documents waiting to be embedded together.
#[derive(Default)]
struct Batch {
    documents: Vec<PreparedDocument>,
    chunks: usize,
}

impl Batch {
    fn push(&mut self, prepared: PreparedDocument) {
        self.chunks += prepared.chunks.len();
        self.documents.push(prepared);
    }

    fn take(&mut self) -> Vec<PreparedDocument> {
        self.chunks = 0;
        std::mem::take(&mut self.documents)
    }
}

/// Runs ingests against one embedder, metadata store and vector index.
pub struct Ingestor<'a> {
    embedder: &'a dyn Embedder,
    store: &'a dyn MetadataStore,
    index: &'a dyn VectorIndex,
}

impl<'a> Ingestor<'a> {
    pub fn new(
        embedder: &'a dyn Embedder,
        store: &'a dyn MetadataStore,
        index: &'a dyn VectorIndex,
    ) -> Self {
        Self {
            embedder,
            store,
            index,
        }
    }

    /// The hash of everything besides a file's bytes that decides its chunks:
    /// a document ingested under other settings is re-chunked.
    fn settings_hash(&self, options: &IngestOptions, tags: &[String]) -> String {
        let settings = format!(
            "{PIPELINE_VERSION}\0{}\0{}\0{}\0{}",
            self.embedder.model_id(),
            options.chunking.max_tokens,
            options.chunking.overlap_tokens,
            tags.join("\x1f")
        );
        content_hash(settings.as_bytes())
    }

    /// Ingests every file under `roots` into `options.collection`.
    ///
    /// A file that cannot be read, decoded or chunked is reported in
    /// [`IngestReport::failures`] and the run goes on.
    ///
    /// # Errors
    /// Fails when the store, the index or the embedder fails; what was
    /// committed before stays consistent and the next run completes the rest.
    pub async fn run(
        &self,
        roots: &[PathBuf],
        options: &IngestOptions,
        progress: &dyn IngestProgress,
    ) -> Result<IngestReport, IngestError> {
        let started = Instant::now();
        let mut report = IngestReport {
            collection: options.collection.clone(),
            ..Default::default()
        };
        let roots = canonical_roots(roots)?;
        let run = self.start_run(options).await?;

        let walk_started = Instant::now();
        let (files, walk_errors) = walk_paths(&roots, &options.walk);
        report.stages.walk_ms = millis(walk_started.elapsed());
        for error in walk_errors {
            record_walk_error(&mut report, error);
        }
        report.files_seen = files.len();
        progress.files_found(files.len());

        let seen = self
            .ingest_files(&files, &run, progress, &mut report)
            .await?;
        if options.prune {
            self.prune(&roots, &seen, options, &mut report).await?;
        }
        self.finish_run(started, options, report).await
    }

    /// Ingests `files` as given, each read from its `path` and recorded under
    /// its `source_path`, with no walk and no prune: for documents that come
    /// from elsewhere than a directory, such as uploads.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_files(
        &self,
        files: &[SourceFile],
        options: &IngestOptions,
        progress: &dyn IngestProgress,
    ) -> Result<IngestReport, IngestError> {
        let started = Instant::now();
        let mut report = IngestReport {
            collection: options.collection.clone(),
            files_seen: files.len(),
            ..Default::default()
        };
        let run = self.start_run(options).await?;
        progress.files_found(files.len());

        self.ingest_files(files, &run, progress, &mut report)
            .await?;
        self.finish_run(started, options, report).await
    }

    /// Removes a document's points and record, unless another ingest is
    /// writing it. Returns whether it was removed.
    ///
    /// # Errors
    /// When the store or the index fails; the document is then left
    /// `indexing`, and removing it again finishes the job.
    pub async fn remove(&self, document: &Document) -> Result<bool, IngestError> {
        if !self.store.try_claim(document.id).await? {
            return Ok(false);
        }
        let removed = self.remove_document(document).await;
        self.store.release_claims(&[document.id]).await?;
        removed.map(|()| true)
    }

    /// Checks the options, creates the collection if needed, and settles what
    /// every file of the run is prepared against.
    async fn start_run<'o>(&self, options: &'o IngestOptions) -> Result<Run<'o>, IngestError> {
        let spec = CollectionSpec {
            dimension: self.embedder.dimension(),
        };
        options.chunking.validate()?;
        self.index
            .ensure_collection(&options.collection, spec)
            .await?;
        let check_points = self.index_lacks_points(&options.collection).await?;
        self.index.release(&options.collection).await?;

        let tags = normalize_tags(&options.tags);
        Ok(Run {
            options,
            settings: self.settings_hash(options, &tags),
            tags,
            check_points,
            released: std::sync::Mutex::new(Instant::now()),
        })
    }

    /// Warns about lost points, lets go of the collection and logs the summary.
    async fn finish_run(
        &self,
        started: Instant,
        options: &IngestOptions,
        mut report: IngestReport,
    ) -> Result<IngestReport, IngestError> {
        self.warn_if_index_lacks_points(&options.collection).await?;
        self.index.release(&options.collection).await?;

        report.elapsed_ms = millis(started.elapsed());
        log_summary(&report);
        Ok(report)
    }

    async fn ingest_files(
        &self,
        files: &[SourceFile],
        run: &Run<'_>,
        progress: &dyn IngestProgress,
        report: &mut IngestReport,
    ) -> Result<HashSet<String>, IngestError> {
        let options = run.options;
        let mut seen = HashSet::with_capacity(files.len());
        let mut batch = Batch::default();
        let mut claimed_elsewhere = Vec::new();

        for file in files {
            seen.insert(file.source_path.clone());
            match self.prepare(file, run, report).await? {
                Prepared::Document(prepared) => batch.push(*prepared),
                Prepared::Done => progress.file_done(&file.source_path),
                Prepared::ClaimedElsewhere => claimed_elsewhere.push(file),
            }
            if batch.chunks >= options.batch_chunks {
                self.write_batch(batch.take(), run, progress, report)
                    .await?;
            }
        }
        self.write_batch(batch.take(), run, progress, report)
            .await?;

        self.wait_for_claimed(claimed_elsewhere, run, progress, report)
            .await?;
        Ok(seen)
    }

    /// Takes up the files whose documents another ingest had claimed, once
    /// it lets go of them: most will be unchanged by then. A file still
    /// claimed after [`CLAIM_WAIT`] is reported as failed.
    async fn wait_for_claimed(
        &self,
        mut files: Vec<&SourceFile>,
        run: &Run<'_>,
        progress: &dyn IngestProgress,
        report: &mut IngestReport,
    ) -> Result<(), IngestError> {
        if !files.is_empty() {
            // The run holding those documents may be waiting for the index.
            self.index.release(&run.options.collection).await?;
        }
        let deadline = Instant::now() + CLAIM_WAIT;
        while !files.is_empty() && Instant::now() < deadline {
            debug!(
                documents = files.len(),
                "waiting for documents claimed by another ingest"
            );
            tokio::time::sleep(CLAIM_RETRY).await;

            let mut batch = Batch::default();
            let mut still_claimed = Vec::new();
            for file in files {
                match self.prepare(file, run, report).await? {
                    Prepared::Document(prepared) => batch.push(*prepared),
                    Prepared::Done => progress.file_done(&file.source_path),
                    Prepared::ClaimedElsewhere => still_claimed.push(file),
                }
            }
            self.write_batch(batch.take(), run, progress, report)
                .await?;
            self.index.release(&run.options.collection).await?;
            files = still_claimed;
        }

        for file in files {
            let error = IngestError::Claimed {
                path: file.path.clone(),
            };
            record_failure(report, file, &error);
        }
        Ok(())
    }

    /// Claims a file's document and reads and chunks it. Returns
    /// [`Prepared::Done`], with the claim released, when the document is
    /// unchanged, skipped or failed (each counted in the report).
    async fn prepare(
        &self,
        file: &SourceFile,
        run: &Run<'_>,
        report: &mut IngestReport,
    ) -> Result<Prepared, IngestError> {
        let id = DocumentId::new(&run.options.collection, &file.source_path);
        if !self.store.try_claim(id).await? {
            return Ok(Prepared::ClaimedElsewhere);
        }

        let prepared = self.prepare_claimed(file, run, report).await;
        if !matches!(prepared, Ok(Prepared::Document(_))) {
            self.store.release_claims(&[id]).await?;
        }
        prepared
    }

    /// [`prepare`](Self::prepare), once the document is claimed.
    async fn prepare_claimed(
        &self,
        file: &SourceFile,
        run: &Run<'_>,
        report: &mut IngestReport,
    ) -> Result<Prepared, IngestError> {
        let options = run.options;
        let read_started = Instant::now();
        let bytes = match tokio::fs::read(&file.path).await {
            Ok(bytes) => bytes,
            Err(source) => {
                let error = IngestError::Read {
                    path: file.path.clone(),
                    source,
                };
                record_failure(report, file, &error);
                return Ok(Prepared::Done);
            }
        };
        let hash = content_hash(&bytes);
        report.stages.read_ms += millis(read_started.elapsed());

        let existing = self
            .store
            .find_document(&options.collection, &file.source_path)
            .await?;
        let unchanged = existing.as_ref().filter(|doc| {
            doc.state == DocumentState::Ready
                && doc.content_hash == hash
                && doc.settings_hash == run.settings
        });
        if let Some(document) = unchanged {
            if !run.check_points || self.has_all_points(document).await? {
                report.documents_unchanged += 1;
                return Ok(Prepared::Done);
            }
            warn!(source_path = %document.source_path, "points missing from the vector index; writing the document again");
            report.documents_repaired += 1;
        }

        let fingerprint = Fingerprint {
            content_hash: hash,
            settings_hash: run.settings.clone(),
        };
        match self.chunk_file(file, &bytes, fingerprint, run, report) {
            Ok(Some((document, chunks))) => {
                let is_new = existing.is_none();
                Ok(Prepared::Document(Box::new(PreparedDocument {
                    document,
                    chunks,
                    is_new,
                })))
            }
            Ok(None) => {
                if let Some(document) = existing {
                    self.remove_document(&document).await?;
                    report.documents_removed += 1;
                }
                Ok(Prepared::Done)
            }
            Err(error) => {
                record_failure(report, file, &error);
                Ok(Prepared::Done)
            }
        }
    }

    /// Whether the index lacks points at the start of a run, so that each
    /// unchanged document's points must be checked.
    async fn index_lacks_points(&self, collection: &str) -> Result<bool, IngestError> {
        let shortfall = index_shortfall(self.store, self.index, collection).await?;
        if let Some(Shortfall { points, chunks }) = shortfall {
            warn!(
                collection,
                points,
                chunks,
                "the vector index lacks points of committed chunks; checking each document"
            );
        }
        Ok(shortfall.is_some())
    }

    /// Warns at the end of a run whose index still lacks points: another
    /// ingest that shares the store but not the index (another data
    /// directory) wrote documents this run then found unchanged.
    async fn warn_if_index_lacks_points(&self, collection: &str) -> Result<(), IngestError> {
        let shortfall = index_shortfall(self.store, self.index, collection).await?;
        if let Some(Shortfall { points, chunks }) = shortfall {
            warn!(
                collection,
                points,
                chunks,
                "the vector index holds fewer points than the store has chunks: an ingest with \
                 another data directory is writing this collection; ingest again here once it ends"
            );
        }
        Ok(())
    }

    /// Whether every committed chunk of a document has its point.
    async fn has_all_points(&self, document: &Document) -> Result<bool, IngestError> {
        let points: HashSet<ChunkId> = self
            .index
            .document_points(&document.collection, document.id)
            .await?
            .into_iter()
            .collect();
        let chunks = self.store.document_chunks(document.id).await?;
        Ok(chunks.iter().all(|chunk| points.contains(&chunk.id)))
    }

    /// Decodes, extracts and chunks one file; `None` when extraction skips it.
    fn chunk_file(
        &self,
        file: &SourceFile,
        bytes: &[u8],
        fingerprint: Fingerprint,
        run: &Run<'_>,
        report: &mut IngestReport,
    ) -> Result<Option<(Document, Vec<Chunk>)>, IngestError> {
        let options = run.options;
        let step = Instant::now();
        let decoded = decode_bytes(bytes, file.kind).map_err(|e| e.in_file(&file.path))?;
        report.stages.decode_ms += millis(step.elapsed());

        let step = Instant::now();
        let extraction =
            extract_document(file.kind, &decoded.text).map_err(|e| e.in_file(&file.path))?;
        report.stages.extract_ms += millis(step.elapsed());
        let extracted = match extraction {
            Extraction::Content(extracted) => extracted,
            Extraction::Skipped { reason } => {
                debug!(source_path = %file.source_path, %reason, "skipped");
                report.documents_skipped += 1;
                report.skipped.push(FileFailure {
                    source_path: file.source_path.clone(),
                    error: reason,
                });
                return Ok(None);
            }
        };

        let step = Instant::now();
        let drafts = chunk_document(&extracted, self.embedder.token_counter(), &options.chunking)
            .map_err(|e| e.in_file(&file.path))?;
        report.stages.chunk_ms += millis(step.elapsed());

        let document = Document {
            id: DocumentId::new(&options.collection, &file.source_path),
            collection: options.collection.clone(),
            source_path: file.source_path.clone(),
            kind: file.kind,
            content_hash: fingerprint.content_hash,
            settings_hash: fingerprint.settings_hash,
            title: extracted.title.clone(),
            state: DocumentState::Indexing,
            chunk_count: drafts.len() as u32,
            metadata: DocumentMetadata {
                encoding: Some(decoded.encoding.to_string()),
                size_bytes: bytes.len() as u64,
                tags: run.tags.clone(),
            },
        };
        let chunks = drafts
            .into_iter()
            .map(|draft| chunk_from_draft(document.id, draft))
            .collect();
        Ok(Some((document, chunks)))
    }

    /// Embeds a batch of documents' chunks together, then writes each document.
    ///
    /// The documents' claims are released once they are written, and the
    /// collection is handed back to the index (so that other processes may
    /// use it) when [`RELEASE_EVERY`] has passed since it last was: reopening
    /// a shard costs more the larger it is.
    async fn write_batch(
        &self,
        batch: Vec<PreparedDocument>,
        run: &Run<'_>,
        progress: &dyn IngestProgress,
        report: &mut IngestReport,
    ) -> Result<(), IngestError> {
        if batch.is_empty() {
            return Ok(());
        }
        let options = run.options;
        let claims: Vec<DocumentId> = batch.iter().map(|p| p.document.id).collect();
        let written = self.write_claimed(batch, options, progress, report).await;
        if written.is_err() || run.release_due() {
            self.index.release(&options.collection).await?;
        }
        self.store.release_claims(&claims).await?;
        written
    }

    async fn write_claimed(
        &self,
        batch: Vec<PreparedDocument>,
        options: &IngestOptions,
        progress: &dyn IngestProgress,
        report: &mut IngestReport,
    ) -> Result<(), IngestError> {
        let texts: Vec<String> = batch
            .iter()
            .flat_map(|p| p.chunks.iter().map(|c| c.text.clone()))
            .collect();
        let hashes: Vec<String> = batch
            .iter()
            .flat_map(|p| p.chunks.iter().map(|c| c.text_hash.clone()))
            .collect();

        let step = Instant::now();
        let cached = CachedEmbedder::new(self.embedder, self.store);
        let (mut vectors, stats) = cached.embed(&texts, &hashes).await?;
        report.stages.embed_ms += millis(step.elapsed());
        report.embeddings_computed += stats.computed;
        report.embeddings_cached += stats.cached;

        let step = Instant::now();
        for prepared in &batch {
            self.store.mark_indexing(&prepared.document).await?;
        }
        report.stages.store_ms += millis(step.elapsed());

        // One upsert, and so one flush of the index, for the whole batch.
        let step = Instant::now();
        let mut rest = vectors.drain(..);
        let points: Vec<Point> = batch
            .iter()
            .flat_map(|prepared| {
                let own: Vec<Vec<f32>> = rest.by_ref().take(prepared.chunks.len()).collect();
                let document = &prepared.document;
                prepared
                    .chunks
                    .iter()
                    .zip(own)
                    .map(move |(c, v)| point(document, c, v))
            })
            .collect();
        self.index.upsert(&options.collection, points).await?;
        report.stages.index_ms += millis(step.elapsed());

        for prepared in batch {
            self.commit_document(&prepared, options, report).await?;
            progress.file_done(&prepared.document.source_path);
            if prepared.is_new {
                report.documents_new += 1;
            } else {
                report.documents_changed += 1;
            }
        }
        Ok(())
    }

    /// Commits one document whose points are upserted, then deletes its
    /// points of an earlier version, in the order the module docs describe.
    async fn commit_document(
        &self,
        prepared: &PreparedDocument,
        options: &IngestOptions,
        report: &mut IngestReport,
    ) -> Result<(), IngestError> {
        let collection = &options.collection;
        let document = &prepared.document;

        let step = Instant::now();
        self.store
            .commit_document(document, &prepared.chunks)
            .await?;
        report.stages.store_ms += millis(step.elapsed());

        // A new document has no older points to delete: the store had no
        // record of it, and this pipeline records a document before writing
        // its points. (Points left by another store are never committed
        // here, so search never shows them.) Looking is a scan of the
        // collection's points, so skipping it keeps a large first ingest
        // from slowing down as it grows.
        let step = Instant::now();
        let mut stale = Vec::new();
        if !prepared.is_new {
            let keep: HashSet<ChunkId> = prepared.chunks.iter().map(|c| c.id).collect();
            stale = self
                .index
                .document_points(collection, document.id)
                .await?
                .into_iter()
                .filter(|id| !keep.contains(id))
                .collect();
            self.index.delete_points(collection, &stale).await?;
        }
        report.stages.index_ms += millis(step.elapsed());

        self.store.mark_ready(document.id).await?;
        report.chunks += prepared.chunks.len();
        report.tokens += prepared
            .chunks
            .iter()
            .map(|c| c.token_count as usize)
            .sum::<usize>();
        debug!(source_path = %document.source_path, chunks = prepared.chunks.len(), stale = stale.len(), "document written");
        Ok(())
    }

    /// Removes documents under `roots` that this run did not see.
    async fn prune(
        &self,
        roots: &[PathBuf],
        seen: &HashSet<String>,
        options: &IngestOptions,
        report: &mut IngestReport,
    ) -> Result<(), IngestError> {
        for document in self.store.list_documents(&options.collection).await? {
            let gone = !seen.contains(&document.source_path);
            if !gone || !is_under_any(&document.source_path, roots) {
                continue;
            }
            // A document another ingest is writing is not gone for that run.
            if self.store.try_claim(document.id).await? {
                let removed = self.remove_document(&document).await;
                self.store.release_claims(&[document.id]).await?;
                removed?;
                report.documents_removed += 1;
            }
        }
        Ok(())
    }

    /// Deletes a document's points, then its record; a run killed between the
    /// two leaves it `indexing` with its points already gone, and the next
    /// prune finishes the job. The caller holds the document's claim.
    async fn remove_document(&self, document: &Document) -> Result<(), IngestError> {
        self.store.mark_indexing(document).await?;
        let deleted = self
            .index
            .delete_document(&document.collection, document.id)
            .await;
        self.index.release(&document.collection).await?;
        deleted?;
        self.store.delete_document(document.id).await?;
        info!(source_path = %document.source_path, "document removed");
        Ok(())
    }
}

/// An index that holds fewer points of a collection than the store has
/// committed chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub points: usize,
    pub chunks: u64,
}

/// The collection's [`Shortfall`], if its index has one.
///
/// Points are upserted before their chunks are committed and deleted after,
/// so an index that holds all of its collection's points never has fewer:
/// fewer means points were lost (an index restored from an old copy, or a
/// data directory other than the one the store was filled with).
///
/// # Errors
/// When the index or the store fails, or the index has no such collection.
pub async fn index_shortfall(
    store: &dyn MetadataStore,
    index: &dyn VectorIndex,
    collection: &str,
) -> Result<Option<Shortfall>, IngestError> {
    let points = index.count(collection).await?;
    let chunks = store.collection_counts(collection).await?.chunks;
    Ok(((points as u64) < chunks).then_some(Shortfall { points, chunks }))
}

fn chunk_from_draft(document: DocumentId, draft: ChunkDraft) -> Chunk {
    let text_hash = content_hash(draft.text.as_bytes());
    Chunk {
        id: ChunkId::new(document, draft.ordinal, &text_hash),
        document_id: document,
        ordinal: draft.ordinal,
        text: draft.text,
        text_hash,
        token_count: draft.token_count,
        location: draft.location,
    }
}

/// A chunk as a point: its embedding, its BM25 terms and what a hit shows.
fn point(document: &Document, chunk: &Chunk, vector: Vec<f32>) -> Point {
    Point {
        id: chunk.id,
        vector,
        sparse: english_bm25().document(&chunk.text),
        payload: PointPayload {
            document_id: document.id,
            source_path: document.source_path.clone(),
            kind: document.kind,
            title: document.title.clone(),
            ordinal: chunk.ordinal,
            text: chunk.text.clone(),
            location: chunk.location.clone(),
            tags: document.metadata.tags.clone(),
            path_prefixes: path_prefixes(&document.source_path),
        },
    }
}

fn is_under_any(source_path: &str, roots: &[PathBuf]) -> bool {
    let path = Path::new(source_path);
    roots.iter().any(|root| path.starts_with(root))
}

/// The roots as absolute paths without symbolic links, so that a file has one
/// source path whatever directory grounded runs from.
fn canonical_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>, IngestError> {
    roots
        .iter()
        .map(|root| {
            std::fs::canonicalize(root).map_err(|_| IngestError::MissingRoot { path: root.clone() })
        })
        .collect()
}

/// Counts a file the walk could not take: unsupported types by extension,
/// everything else as a failure.
fn record_walk_error(report: &mut IngestReport, error: IngestError) {
    if let IngestError::UnsupportedFile { path } = &error {
        let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        let extension = extension.unwrap_or_else(|| "(none)".to_string());
        *report
            .unsupported_by_extension
            .entry(extension)
            .or_default() += 1;
        report.files_unsupported += 1;
        return;
    }
    let path = error
        .path()
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    warn!(source_path = %path, %error, "file not ingested");
    push_failure(report, path, &error);
}

fn record_failure(report: &mut IngestReport, file: &SourceFile, error: &IngestError) {
    debug!(source_path = %file.source_path, %error, "file not ingested");
    push_failure(report, file.source_path.clone(), error);
}

fn push_failure(report: &mut IngestReport, source_path: String, error: &IngestError) {
    report.documents_failed += 1;
    report.failures.push(FileFailure {
        source_path,
        error: error.to_string(),
    });
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

fn log_summary(report: &IngestReport) {
    info!(
        collection = %report.collection,
        files = report.files_seen,
        new = report.documents_new,
        changed = report.documents_changed,
        repaired = report.documents_repaired,
        unchanged = report.documents_unchanged,
        removed = report.documents_removed,
        skipped = report.documents_skipped,
        failed = report.documents_failed,
        chunks = report.chunks,
        embeddings_computed = report.embeddings_computed,
        embeddings_cached = report.embeddings_cached,
        elapsed_ms = report.elapsed_ms as u64,
        chunks_per_second = report.chunks_per_second() as u64,
        "ingest finished"
    );
}
