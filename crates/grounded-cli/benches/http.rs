//! Requests per second on `POST /v1/search` against a real listening server,
//! as `just bench` prints them and writes them to `bench/results/http.md`.
//!
//! The server is the router of `grounded serve` (with its query embedder:
//! concurrent queries batched, recent ones cached), started in process on
//! 127.0.0.1 over the SciFact collection that the ingest benchmark left in
//! the target directory (ingested here if it is missing; the book with
//! `GROUNDED_BENCH_CORPUS=book` or where SciFact is absent). A closed-loop
//! load generator in the same process keeps each of 1, 8 and 32 connections
//! (`GROUNDED_BENCH_CONNECTIONS`) busy with one request after another for
//! 10 seconds a level (`GROUNDED_BENCH_SECONDS`): first with unique queries,
//! each embedded, then with eight queries in turn, answered from the query
//! cache. Load generator and server share the machine's cores.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use grounded_core::{DataDir, default_cache_dir};
use grounded_embed::{Embedder, MiniLm, QueryEmbedder, resolve_model_files};
use grounded_index::EdgeIndex;
use grounded_ingest::Ingestor;
use grounded_ingest::pipeline::NoProgress;
use grounded_query::{AnswerModel, AnswerOptions, Answerer, PromptTemplates};
use grounded_server::access::AccessSettings;
use grounded_server::{AppState, Engine, ServerConfig};
use grounded_store::{MetadataStore, SqliteStore};
use serde_json::json;
use support::{Report, SciFact, Summary};

/// As `grounded serve` sets them.
const QUERY_BATCH: usize = 32;
const QUERY_CACHE: usize = 10_000;

const TOP_K: usize = 10;

/// How many distinct queries the repeated-query levels cycle through.
const REPEATED: usize = 8;

const BOOK_QUERIES: &[&str] = &[
    "what is ownership",
    "how do I share data between threads",
    "what is a trait object",
    "how do lifetimes work",
    "error handling with Result",
    "what does the borrow checker do",
    "iterators and closures",
    "smart pointers Box Rc RefCell",
];

/// The collection to serve and the queries to send.
struct Corpus {
    collection: &'static str,
    root: PathBuf,
    exclude: Vec<String>,
    queries: Vec<String>,
}

/// Hands out the queries of one kind of level, one per request, across
/// every connection.
struct Queries {
    texts: Vec<String>,
    /// Whether each request's text must be one not sent before: after a
    /// pass over `texts`, a pass number is appended.
    unique: bool,
    sent: AtomicUsize,
}

impl Queries {
    fn next(&self) -> String {
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        let text = &self.texts[n % self.texts.len()];
        let pass = n / self.texts.len();
        if self.unique && pass > 0 {
            format!("{text} {pass}")
        } else {
            text.clone()
        }
    }
}

/// What one level of load came to.
struct Level {
    kind: &'static str,
    connections: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let corpus = corpus()?;
    let (files, _) = resolve_model_files(None, &default_cache_dir())?;
    let model: Arc<dyn Embedder> = Arc::new(MiniLm::load(&files)?);

    let data_dir = support::scratch_root().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let data = DataDir::new(data_dir);
    let store = Arc::new(SqliteStore::open(&data.database()).await?);
    let index = Arc::new(EdgeIndex::open(&data.index())?);

    let mut report = Report::new("http", "POST /v1/search under load");
    ingest(
        &mut report,
        model.as_ref(),
        store.as_ref(),
        index.as_ref(),
        &corpus,
    )
    .await?;

    let (base, stop, server) = start_server(model, store.clone(), index, &corpus).await?;
    let url = format!("{base}/v1/search");
    let connections = support::env_list("GROUNDED_BENCH_CONNECTIONS", &[1, 8, 32])?;
    let seconds = support::env_usize("GROUNDED_BENCH_SECONDS")?.unwrap_or(10);
    let duration = Duration::from_secs(seconds as u64);

    let unique = Queries {
        texts: corpus.queries.clone(),
        unique: true,
        sent: AtomicUsize::new(0),
    };
    let repeated = Queries {
        texts: corpus.queries.iter().take(REPEATED).cloned().collect(),
        unique: false,
        sent: AtomicUsize::new(0),
    };
    let mut levels = Vec::new();
    for (kind, queries) in [
        ("unique", Arc::new(unique)),
        ("repeated", Arc::new(repeated)),
    ] {
        // A few requests first, so that repeated levels start from a filled
        // cache and no level pays for opening the shard.
        for _ in 0..REPEATED {
            drive(&url, corpus.collection, &queries, 1, Duration::ZERO).await?;
        }
        for &n in &connections {
            eprintln!("{kind} queries, {n} connections");
            let mut level = drive(&url, corpus.collection, &queries, n, duration).await?;
            level.kind = kind;
            levels.push(level);
        }
    }

    let _ = stop.send(());
    server.await??;
    store.close().await;
    report_levels(&mut report, &corpus, &levels, seconds);
    report.save()?;
    Ok(())
}

fn corpus() -> anyhow::Result<Corpus> {
    let book_only = std::env::var("GROUNDED_BENCH_CORPUS").as_deref() == Ok("book");
    if !book_only && let Some(scifact) = SciFact::find() {
        let (root, _) = scifact.write_corpus(support::document_limit()?)?;
        return Ok(Corpus {
            collection: "scifact",
            root,
            exclude: Vec::new(),
            queries: scifact.queries(None)?,
        });
    }
    Ok(Corpus {
        collection: "book",
        root: grounded_cli::book::installed_book()?,
        exclude: grounded_cli::book::excludes(),
        queries: BOOK_QUERIES
            .iter()
            .map(|query| (*query).to_owned())
            .collect(),
    })
}

/// Brings the collection up to date: nothing to do after the ingest
/// benchmark, a cold ingest otherwise.
async fn ingest(
    report: &mut Report,
    model: &dyn Embedder,
    store: &SqliteStore,
    index: &EdgeIndex,
    corpus: &Corpus,
) -> anyhow::Result<()> {
    eprintln!("ingesting {}", corpus.root.display());
    let options = support::ingest_options(corpus.collection, corpus.exclude.clone());
    let ingested = Ingestor::new(model, store, index)
        .run(std::slice::from_ref(&corpus.root), &options, &NoProgress)
        .await?;
    let counts = store.collection_counts(corpus.collection).await?;
    report.line(&format!(
        "- collection `{}` from {}: {} documents, {} chunks ({} embedded now)",
        corpus.collection,
        corpus.root.display(),
        counts.ready_documents,
        counts.chunks,
        ingested.embeddings_computed
    ));
    Ok(())
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// The router on 127.0.0.1 at a free port; its base URL, its stop signal
/// and its task.
async fn start_server(
    model: Arc<dyn Embedder>,
    store: Arc<SqliteStore>,
    index: Arc<EdgeIndex>,
    corpus: &Corpus,
) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>, ServerTask)> {
    let embedder: Arc<dyn Embedder> = Arc::new(QueryEmbedder::new(model, QUERY_BATCH, QUERY_CACHE));
    let answerer = Answerer::new(
        AnswerModel::Extractive,
        embedder.clone(),
        Arc::new(PromptTemplates::builtin()),
    );
    let engine = Engine {
        embedder,
        store,
        index,
        answerer,
    };
    let scratch = support::scratch_root();
    let config = ServerConfig {
        default_collection: corpus.collection.into(),
        uploads_dir: scratch.join("uploads"),
        ingest: support::ingest_options(corpus.collection, Vec::new()),
        answer: AnswerOptions::default(),
        request_timeout: Duration::from_secs(30),
        max_body_bytes: 4 << 20,
        access: AccessSettings::default(),
    };
    let router = grounded_server::router(AppState::new(engine, config));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(grounded_server::serve(listener, router, async move {
        let _ = stopped.await;
    }));
    Ok((base, stop, task))
}

/// Keeps `connections` connections busy for `duration`, each sending its
/// next request when the last one is answered (at least one request each).
async fn drive(
    url: &str,
    collection: &str,
    queries: &Arc<Queries>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Level> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let (url, collection, queries) = (url.to_owned(), collection.to_owned(), queries.clone());
        tasks.push(tokio::spawn(async move {
            connection(client, url, collection, queries, deadline).await
        }));
    }

    let mut level = Level {
        kind: "",
        connections,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await?;
        level.latencies.extend(latencies);
        level.errors += errors;
    }
    level.elapsed = started.elapsed();
    Ok(level)
}

/// One connection's requests until the deadline: the latencies of the
/// answered ones and how many failed.
async fn connection(
    client: reqwest::Client,
    url: String,
    collection: String,
    queries: Arc<Queries>,
    deadline: Instant,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    loop {
        let body = json!({"query": queries.next(), "top_k": TOP_K, "collection": collection});
        let started = Instant::now();
        let answered = match client.post(&url).json(&body).send().await {
            Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
            Err(_) => false,
        };
        if answered {
            latencies.push(started.elapsed());
        } else {
            errors += 1;
        }
        if Instant::now() >= deadline {
            return (latencies, errors);
        }
    }
}

fn report_levels(report: &mut Report, corpus: &Corpus, levels: &[Level], seconds: usize) {
    report.line("");
    report.line(&format!(
        "## Closed loop, {seconds} s a level, hybrid search, top {TOP_K}"
    ));
    report.line("");
    let rows: Vec<Vec<String>> = levels
        .iter()
        .map(|level| {
            let s = Summary::of(&level.latencies);
            vec![
                level.kind.to_owned(),
                level.connections.to_string(),
                s.count.to_string(),
                level.errors.to_string(),
                format!("{:.1}", s.count as f64 / level.elapsed.as_secs_f64()),
                format!("{:.1}", s.p50_ms),
                format!("{:.1}", s.p95_ms),
                format!("{:.1}", s.p99_ms),
            ]
        })
        .collect();
    report.table(
        &[
            "queries",
            "connections",
            "answered",
            "errors",
            "requests/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
        ],
        &rows,
    );
    report.line(&format!(
        "Unique: the {} queries of the corpus in turn, a pass number appended after the \
         first pass, so every request embeds its query (batched with those that arrive \
         meanwhile, up to {QUERY_BATCH}). Repeated: {REPEATED} of them in turn, from the \
         server's query cache. Load generator (reqwest, one client per connection) and \
         server run in one process on the same cores; the server has authentication off.",
        corpus.queries.len()
    ));
}
