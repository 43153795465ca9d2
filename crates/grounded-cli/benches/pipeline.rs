//! Ingest throughput and search latency, as `just bench` prints them and
//! writes them to `bench/results/pipeline.md`.
//!
//! Corpora (`GROUNDED_BENCH_CORPUS=book|scifact|all`, default all): the HTML
//! Rust book that rustup installs (`rust-docs`; its Markdown sources in
//! `../shared/data` with `GROUNDED_BENCH_BOOK=md`), and BEIR SciFact from
//! `../shared/data`, written out as one text file per abstract as
//! `grounded eval` does (`GROUNDED_BENCH_LIMIT=N` takes its first N).
//!
//! Each corpus is ingested three times into one fresh data directory (the
//! model already on disk): cold, with an empty embedding cache; again into
//! the same collection, where nothing changed and nothing is written; and
//! into a fresh collection, where every chunk is written again but every
//! embedding comes from the cache. Then each corpus's queries are searched
//! in each mode, once through [`Retriever::search`] (the query embedded, as
//! a command or a server without a query cache does) and once against the
//! index and store alone with the query's vectors computed beforehand.
//!
//! The data directory is left under the target directory for the HTTP
//! benchmark, which serves the SciFact collection from it.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use grounded_core::{DataDir, default_cache_dir};
use grounded_embed::{Embedder, MiniLm, resolve_model_files};
use grounded_index::{DEFAULT_RRF_K, EdgeIndex, PointFilter, Query, SearchMode, VectorIndex};
use grounded_ingest::Ingestor;
use grounded_ingest::pipeline::{IngestReport, NoProgress, StageTimes};
use grounded_query::{Retriever, SearchRequest};
use grounded_store::{MetadataStore, SqliteStore};
use support::{Report, SciFact, Summary};

const BOOK_QUERIES: &[&str] = &[
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

/// Rounds over the book's 16 queries, for enough samples for a p99.
const BOOK_ROUNDS: usize = 8;

/// Hits per search, as `grounded search` asks by default.
const TOP_K: usize = 10;

/// How many points `Retriever::search` asks the index for per wanted hit
/// (its `OVERFETCH`, plus 4), so that the search without the embedding asks
/// the same of the index.
fn index_limit(top_k: usize) -> usize {
    top_k * 3 + 4
}

/// One corpus to ingest and search.
struct Corpus {
    name: &'static str,
    root: PathBuf,
    exclude: Vec<String>,
    queries: Vec<String>,
}

/// One ingest run and the most memory the process held during it.
struct Run {
    corpus: &'static str,
    name: &'static str,
    report: IngestReport,
    peak_memory: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let corpora = corpora()?;
    if corpora.is_empty() {
        eprintln!("skipped: no corpus to benchmark");
        return Ok(());
    }
    let (files, _) = resolve_model_files(None, &default_cache_dir())?;
    let embedder = MiniLm::load(&files)?;

    let data_dir = support::scratch_root().join("data");
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)?;
    }
    std::fs::create_dir_all(&data_dir)?;
    let data = DataDir::new(&data_dir);
    let store = SqliteStore::open(&data.database()).await?;
    let index = EdgeIndex::open(&data.index())?;

    let mut report = Report::new("pipeline", "Ingest and search");
    describe(&mut report, &corpora);
    let mut runs = Vec::new();
    for corpus in &corpora {
        runs.extend(ingest_three_ways(&embedder, &store, &index, corpus).await?);
    }
    report_ingest(&mut report, &runs);

    let mut rows = Vec::new();
    for corpus in &corpora {
        rows.extend(search_latencies(&embedder, &store, &index, corpus).await?);
    }
    report_search(&mut report, &rows);

    store.close().await;
    report.save()?;
    Ok(())
}

fn corpora() -> anyhow::Result<Vec<Corpus>> {
    let chosen = std::env::var("GROUNDED_BENCH_CORPUS").unwrap_or_else(|_| "all".into());
    if !["book", "scifact", "all"].contains(&chosen.as_str()) {
        anyhow::bail!("GROUNDED_BENCH_CORPUS must be book, scifact or all, not {chosen:?}");
    }
    let mut corpora = Vec::new();
    if chosen != "scifact" {
        corpora.push(book()?);
    }
    if chosen != "book"
        && let Some(scifact) = SciFact::find()
    {
        let limit = support::document_limit()?;
        let (root, _) = scifact.write_corpus(limit)?;
        let queries = support::env_usize("GROUNDED_BENCH_QUERIES")?;
        corpora.push(Corpus {
            name: "scifact",
            root,
            exclude: Vec::new(),
            queries: scifact.queries(queries)?,
        });
    }
    Ok(corpora)
}

fn book() -> anyhow::Result<Corpus> {
    let queries = (0..BOOK_ROUNDS)
        .flat_map(|_| BOOK_QUERIES.iter().map(|query| (*query).to_owned()))
        .collect();
    if std::env::var("GROUNDED_BENCH_BOOK").as_deref() == Ok("md") {
        return Ok(Corpus {
            name: "book",
            root: support::shared_data().join("rust-book-md/src"),
            exclude: Vec::new(),
            queries,
        });
    }
    Ok(Corpus {
        name: "book",
        root: grounded_cli::book::installed_book()?,
        exclude: grounded_cli::book::excludes(),
        queries,
    })
}

fn describe(report: &mut Report, corpora: &[Corpus]) {
    for corpus in corpora {
        report.line(&format!(
            "- corpus `{}`: {} ({} queries)",
            corpus.name,
            corpus.root.display(),
            corpus.queries.len()
        ));
    }
    if let Ok(Some(limit)) = support::document_limit() {
        report.line(&format!("- SciFact limited to its first {limit} documents"));
    }
    report.line(
        "- chunks of at most 254 tokens with 32 of overlap, 128 chunks per batch, \
         all-MiniLM-L6-v2 in process on the CPU, SQLite and Qdrant Edge in process",
    );
    report.line("");
}

/// Cold, then unchanged, then into a fresh collection with a warm cache.
async fn ingest_three_ways(
    embedder: &MiniLm,
    store: &SqliteStore,
    index: &EdgeIndex,
    corpus: &Corpus,
) -> anyhow::Result<Vec<Run>> {
    let ingestor = Ingestor::new(embedder, store, index);
    let roots = std::slice::from_ref(&corpus.root);
    let warm_collection = format!("{}-warm", corpus.name);
    let plan = [
        ("cold", corpus.name),
        ("unchanged", corpus.name),
        ("warm cache, new collection", warm_collection.as_str()),
    ];

    let mut runs = Vec::new();
    for (name, collection) in plan {
        eprintln!("ingesting {} ({name})", corpus.name);
        let options = support::ingest_options(collection, corpus.exclude.clone());
        support::reset_peak_memory();
        let report = ingestor.run(roots, &options, &NoProgress).await?;
        runs.push(Run {
            corpus: corpus.name,
            name,
            report,
            peak_memory: support::peak_memory(),
        });
    }
    Ok(runs)
}

fn report_ingest(report: &mut Report, runs: &[Run]) {
    report.line("## Ingest");
    report.line("");
    let cold_ms = |corpus: &str| {
        runs.iter()
            .find(|run| run.corpus == corpus && run.name == "cold")
            .map_or(0.0, |run| run.report.elapsed_ms)
    };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            let r = &run.report;
            let documents = r.documents_new + r.documents_changed + r.documents_unchanged;
            let seconds = r.elapsed_ms / 1000.0;
            vec![
                format!("{} {}", run.corpus, run.name),
                documents.to_string(),
                r.chunks.to_string(),
                r.tokens.to_string(),
                r.embeddings_computed.to_string(),
                r.embeddings_cached.to_string(),
                format!("{seconds:.2}"),
                format!("{:.1}", documents as f64 / seconds.max(1e-9)),
                format!("{:.1}", r.chunks_per_second()),
                format!("{:.0}", r.tokens_per_second()),
                format!(
                    "{:.1}%",
                    100.0 * r.elapsed_ms / cold_ms(run.corpus).max(1e-9)
                ),
                support::mib(run.peak_memory),
            ]
        })
        .collect();
    report.table(
        &[
            "run",
            "documents",
            "chunks written",
            "tokens",
            "embedded",
            "from cache",
            "seconds",
            "documents/s",
            "chunks/s",
            "tokens/s",
            "of cold",
            "peak RSS MiB",
        ],
        &rows,
    );
    report.line(
        "Documents are those seen (new, changed or unchanged). Peak RSS is the process's \
         high-water mark during the run (VmHWM, reset before each run), the loaded model \
         included.",
    );
    report.line("");

    report.line("Time by stage (ms, summed over documents; share of the run):");
    report.line("");
    let rows: Vec<Vec<String>> = runs
        .iter()
        .filter(|run| run.name != "unchanged")
        .map(stage_row)
        .collect();
    report.table(
        &[
            "run", "walk", "read", "decode", "extract", "chunk", "embed", "index", "store",
            "slowest",
        ],
        &rows,
    );
}

fn stage_row(run: &Run) -> Vec<String> {
    let stages = stages(&run.report.stages);
    let total = run.report.elapsed_ms.max(1e-9);
    let slowest = stages
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or("", |stage| stage.0);
    let mut row = vec![format!("{} {}", run.corpus, run.name)];
    row.extend(
        stages
            .iter()
            .map(|(_, ms)| format!("{ms:.0} ({:.0}%)", 100.0 * ms / total)),
    );
    row.push(slowest.to_owned());
    row
}

fn stages(s: &StageTimes) -> [(&'static str, f64); 8] {
    [
        ("walk", s.walk_ms),
        ("read", s.read_ms),
        ("decode", s.decode_ms),
        ("extract", s.extract_ms),
        ("chunk", s.chunk_ms),
        ("embed", s.embed_ms),
        ("index", s.index_ms),
        ("store", s.store_ms),
    ]
}

/// Per mode, latencies with the query embedded and without it, and the
/// embedding alone.
async fn search_latencies(
    embedder: &MiniLm,
    store: &SqliteStore,
    index: &EdgeIndex,
    corpus: &Corpus,
) -> anyhow::Result<Vec<Vec<String>>> {
    eprintln!("searching {}", corpus.name);
    let retriever = Retriever::new(embedder, index, store);
    let (vectors, embed_times) = embed_each(embedder, &corpus.queries).await?;
    let row = |mode: &str, what: &str, samples: &[Duration]| {
        let s = Summary::of(samples);
        vec![
            corpus.name.to_owned(),
            mode.to_owned(),
            what.to_owned(),
            s.count.to_string(),
            format!("{:.2}", s.p50_ms),
            format!("{:.2}", s.p95_ms),
            format!("{:.2}", s.p99_ms),
            format!("{:.2}", s.mean_ms),
        ]
    };

    let mut rows = vec![row("-", "query embedding alone", &embed_times)];
    for mode in [SearchMode::Dense, SearchMode::Sparse, SearchMode::Hybrid] {
        let with = with_embedding(&retriever, corpus, mode).await?;
        let without = without_embedding(store, index, corpus, &vectors, mode).await?;
        rows.push(row(mode.as_str(), "with query embedding", &with));
        rows.push(row(mode.as_str(), "index and store only", &without));
    }
    Ok(rows)
}

async fn embed_each(
    embedder: &MiniLm,
    queries: &[String],
) -> anyhow::Result<(Vec<Vec<f32>>, Vec<Duration>)> {
    let mut vectors = Vec::with_capacity(queries.len());
    let mut times = Vec::with_capacity(queries.len());
    for query in queries {
        let started = Instant::now();
        let mut embedded = embedder.embed(std::slice::from_ref(query)).await?;
        times.push(started.elapsed());
        vectors.push(embedded.pop().unwrap_or_default());
    }
    Ok((vectors, times))
}

async fn with_embedding(
    retriever: &Retriever<'_>,
    corpus: &Corpus,
    mode: SearchMode,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(corpus.queries.len());
    for query in &corpus.queries {
        let mut request = SearchRequest::new(corpus.name, query.as_str(), TOP_K);
        request.mode = mode;
        let started = Instant::now();
        retriever.search(&request).await?;
        times.push(started.elapsed());
    }
    Ok(times)
}

/// The index's search and the store's visibility check, which is all that
/// `Retriever::search` does besides embedding (and dropping repeats).
async fn without_embedding(
    store: &SqliteStore,
    index: &EdgeIndex,
    corpus: &Corpus,
    vectors: &[Vec<f32>],
    mode: SearchMode,
) -> anyhow::Result<Vec<Duration>> {
    let bm25 = grounded_index::english_bm25();
    let mut times = Vec::with_capacity(corpus.queries.len());
    for (query, vector) in corpus.queries.iter().zip(vectors) {
        let query = Query {
            mode,
            dense: vector.clone(),
            sparse: bm25.query(query),
            filter: PointFilter::default(),
            limit: index_limit(TOP_K),
            min_score: None,
            rrf_k: DEFAULT_RRF_K,
        };
        let started = Instant::now();
        let points = index.search(corpus.name, &query).await?;
        let ids: Vec<_> = points.iter().map(|point| point.id).collect();
        store.visible_chunks(&ids).await?;
        times.push(started.elapsed());
    }
    Ok(times)
}

fn report_search(report: &mut Report, rows: &[Vec<String>]) {
    report.line(&format!(
        "## Search latency (top {TOP_K}, one query at a time)"
    ));
    report.line("");
    report.table(
        &[
            "corpus", "mode", "measured", "queries", "p50 ms", "p95 ms", "p99 ms", "mean ms",
        ],
        rows,
    );
    report.line(&format!(
        "\"with query embedding\" is `Retriever::search`; \"index and store only\" is \
         `VectorIndex::search` (asking for {} points, as the retriever does) and \
         `MetadataStore::visible_chunks` with the query's vectors computed beforehand.",
        index_limit(TOP_K)
    ));
}
