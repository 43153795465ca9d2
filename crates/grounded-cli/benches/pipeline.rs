//! Ingest throughput and search latency on the Rust book, as `just bench`
//! prints them.
//!
//! The corpus is the HTML book that rustup installs (`rust-docs`), or the
//! book's Markdown sources in `../shared/data` when `GROUNDED_BENCH_BOOK=md`.
//! A cold ingest into a fresh data directory (the model already on disk) is
//! followed by a warm re-ingest, then a fixed list of queries is run several
//! times, with the query embedding included in the latency.

use std::path::{Path, PathBuf};
use std::time::Instant;

use grounded_core::{DataDir, default_cache_dir};
use grounded_embed::{MiniLm, resolve_model_files};
use grounded_index::EdgeIndex;
use grounded_ingest::pipeline::{IngestReport, NoProgress};
use grounded_ingest::{ChunkConfig, IngestOptions, Ingestor, WalkOptions};
use grounded_query::{Retriever, SearchRequest};
use grounded_store::SqliteStore;

const QUERIES: &[&str] = &[
    "what is ownership",
    "how do I share data between threads",
    "difference between a String and a string slice",
    "how to handle errors with Result",
    "what does the borrow checker do",
    "how do closures capture their environment",
    "iterators and lazy evaluation",
    "smart pointers Box Rc RefCell",
    "how to write tests in Rust",
    "pattern matching with match and if let",
    "what is a trait object",
    "how do lifetimes prevent dangling references",
    "installing Rust with rustup",
    "what is Cargo",
    "unsafe Rust raw pointers",
    "how to define an enum",
];

const ROUNDS: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (corpus, excludes) = corpus()?;
    let cache_dir = default_cache_dir();
    let (files, _) = resolve_model_files(None, &cache_dir)?;
    let embedder = MiniLm::load(&files)?;

    let scratch = tempfile::tempdir()?;
    let data = DataDir::new(scratch.path());
    let store = SqliteStore::open(&data.database()).await?;
    let index = EdgeIndex::open(&data.index())?;
    let options = options(excludes);
    let ingestor = Ingestor::new(&embedder, &store, &index);

    let cold = ingestor
        .run(std::slice::from_ref(&corpus), &options, &NoProgress)
        .await?;
    let warm = ingestor
        .run(std::slice::from_ref(&corpus), &options, &NoProgress)
        .await?;

    let retriever = Retriever::new(&embedder, &index, &store);
    let latencies = search_latencies(&retriever, &options.collection).await?;

    print_report(&corpus, &cold, &warm, &latencies);
    Ok(())
}

fn corpus() -> anyhow::Result<(PathBuf, Vec<String>)> {
    if std::env::var("GROUNDED_BENCH_BOOK").as_deref() == Ok("md") {
        let md =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/rust-book-md/src");
        return Ok((md, Vec::new()));
    }
    Ok((
        grounded_cli::book::installed_book()?,
        grounded_cli::book::excludes(),
    ))
}

fn options(excludes: Vec<String>) -> IngestOptions {
    IngestOptions {
        collection: "bench".into(),
        chunking: ChunkConfig {
            max_tokens: 254,
            overlap_tokens: 32,
        },
        walk: WalkOptions {
            follow_links: false,
            exclude: excludes,
            max_file_bytes: 64 << 20,
        },
        prune: false,
        batch_chunks: 128,
        tags: Vec::new(),
    }
}

async fn search_latencies(retriever: &Retriever<'_>, collection: &str) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(QUERIES.len() * ROUNDS);
    for _ in 0..ROUNDS {
        for query in QUERIES {
            let request = SearchRequest::new(collection, *query, 10);
            let started = Instant::now();
            retriever.search(&request).await?;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_report(corpus: &Path, cold: &IngestReport, warm: &IngestReport, latencies: &[f64]) {
    println!("corpus: {}", corpus.display());
    println!(
        "threads: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!();
    println!(
        "| run | documents | chunks | tokens | embeddings computed | seconds | chunks/s | tokens/s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, report) in [("cold", cold), ("warm", warm)] {
        println!(
            "| {name} | {} | {} | {} | {} | {:.2} | {:.1} | {:.0} |",
            report.documents_new + report.documents_changed + report.documents_unchanged,
            report.chunks,
            report.tokens,
            report.embeddings_computed,
            report.elapsed_ms / 1000.0,
            report.chunks_per_second(),
            report.tokens_per_second(),
        );
    }
    let s = &cold.stages;
    println!();
    println!(
        "cold stages (ms): walk {:.0}, read {:.0}, decode {:.0}, extract {:.0}, chunk {:.0}, \
         embed {:.0}, index {:.0}, store {:.0}",
        s.walk_ms,
        s.read_ms,
        s.decode_ms,
        s.extract_ms,
        s.chunk_ms,
        s.embed_ms,
        s.index_ms,
        s.store_ms
    );
    println!();
    println!(
        "search over {} queries x {ROUNDS} rounds, query embedding included: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        QUERIES.len(),
        percentile(latencies, 50.0),
        percentile(latencies, 95.0),
        latencies.last().copied().unwrap_or_default(),
    );
}
