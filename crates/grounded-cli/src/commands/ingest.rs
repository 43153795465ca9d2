//! `grounded ingest`: load files into a collection.

use std::path::PathBuf;

use grounded_embed::Embedder;
use grounded_ingest::pipeline::{IngestProgress, IngestReport};
use grounded_ingest::{ChunkConfig, IngestOptions, Ingestor, WalkOptions};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{ChunkingArgs, GlobalArgs, IngestArgs};
use crate::context::{Context, collection_name};
use crate::output;

/// Files larger than this are skipped as unlikely to be documents.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

pub async fn run(global: &GlobalArgs, args: IngestArgs) -> anyhow::Result<()> {
    let context = Context::open(global).await?;
    let options = options(&args, context.embedder.as_ref())?;

    let report = ingest(&context, &args.paths, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        output::print_ingest_report(&report);
    }
    context.close().await;
    Ok(())
}

/// Builds the run's options from the flags, checking them against the model.
pub fn options(args: &IngestArgs, embedder: &dyn Embedder) -> anyhow::Result<IngestOptions> {
    Ok(IngestOptions {
        collection: collection_name(&args.collection.collection)?.to_string(),
        chunking: chunking(&args.chunking, embedder)?,
        walk: WalkOptions {
            follow_links: false,
            exclude: args.excludes.clone(),
            max_file_bytes: MAX_FILE_BYTES,
        },
        prune: args.prune,
        batch_chunks: args.batch_chunks as usize,
        tags: args.tags.clone(),
    })
}

/// The chunk sizes the flags give, checked against the model's limit.
pub fn chunking(args: &ChunkingArgs, embedder: &dyn Embedder) -> anyhow::Result<ChunkConfig> {
    let limit = embedder.max_input_tokens();
    if args.chunk_tokens > limit {
        anyhow::bail!(
            "--chunk-tokens {} exceeds the model's limit of {limit} tokens",
            args.chunk_tokens
        );
    }
    let chunking = ChunkConfig {
        max_tokens: args.chunk_tokens,
        overlap_tokens: args.chunk_overlap,
    };
    chunking.validate().map_err(|_| {
        anyhow::anyhow!(
            "--chunk-overlap {} must be smaller than --chunk-tokens {}, which must be at least 1",
            chunking.overlap_tokens,
            chunking.max_tokens
        )
    })?;
    Ok(chunking)
}

/// Runs one ingest with a progress bar on a terminal.
pub async fn ingest(
    context: &Context,
    paths: &[PathBuf],
    options: &IngestOptions,
) -> anyhow::Result<IngestReport> {
    let ingestor = Ingestor::new(
        context.embedder.as_ref(),
        context.store.as_ref(),
        context.index.as_ref(),
    );
    let progress = BarProgress::new();
    let report = ingestor.run(paths, options, &progress).await?;
    progress.bar.finish_and_clear();
    Ok(report)
}

/// A progress bar on stderr; indicatif draws nothing when it is not a terminal.
struct BarProgress {
    bar: ProgressBar,
}

impl BarProgress {
    fn new() -> Self {
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{spinner} ingesting [{bar:30}] {pos}/{len} files {elapsed} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Self { bar }
    }
}

impl IngestProgress for BarProgress {
    fn files_found(&self, count: usize) {
        self.bar.set_length(count as u64);
    }

    fn file_done(&self, source_path: &str) {
        self.bar.set_message(source_path.to_string());
        self.bar.inc(1);
    }
}
