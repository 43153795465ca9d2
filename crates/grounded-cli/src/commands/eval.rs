//! `grounded eval`: retrieval quality on a BEIR-format benchmark.
//!
//! The corpus is written out as one text file per document (title, blank
//! line, text) under `<data dir>/eval/<dataset>/` and ingested into the
//! collection `eval-<dataset>` by the ordinary pipeline, so the figures
//! measure exactly what `grounded search` does: the same chunking, embedding
//! cache, sparse vectors and fusion. Each judged query is then searched in
//! each mode; a document ranks where its best chunk ranks. Optionally the
//! first judged queries are answered as `grounded ask` answers them.
//!
//! Each run is reported as Markdown and JSON, with what decides its figures
//! (model, chunking, fusion, commit, machine), under `<data dir>/eval/runs/`.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use grounded_auth::{unix_now, utc_time};
use grounded_index::SearchMode;
use grounded_ingest::{ChunkConfig, IngestOptions, WalkOptions};
use grounded_query::eval::{Judgments, Latencies, PrecomputedQueries, Scores};
use grounded_query::{AnswerOptions, Answerer, PromptBudget, Retriever, SearchRequest};
use serde::Serialize;
use serde_json::Value;
use tracing::info;

use crate::cli::{EvalArgs, GlobalArgs, Mode};
use crate::commands::ask::ask;
use crate::commands::ingest::ingest;
use crate::context::Context;
use crate::llm;

/// Chunks asked for per query: enough distinct documents for recall@100
/// after a document's further chunks are folded into its best one.
const HITS_PER_QUERY: usize = 300;

/// Hits of the search whose latency is reported: `grounded search`'s
/// default page.
const TIMED_HITS: usize = 10;

/// Sources an answer is composed from, and the tokens its prompt may use:
/// `grounded ask`'s defaults.
const ANSWER_SOURCES: usize = 5;
const ANSWER_PROMPT_TOKENS: usize = 3000;

/// The commit the binary was built from, and whether the tree differed from
/// it (`true`, `false` or `unknown`), as `build.rs` found them.
const COMMIT: &str = env!("GROUNDED_GIT_COMMIT");
const DIRTY: &str = env!("GROUNDED_GIT_DIRTY");

/// One BEIR dataset, read whole.
struct Dataset {
    name: String,
    /// Each document's corpus id, title and text.
    corpus: Vec<(String, String, String)>,
    queries: HashMap<String, String>,
    /// Query id to its judgments, for the split asked for.
    qrels: HashMap<String, Judgments>,
}

/// A query of the benchmark that has judgments, with them.
struct JudgedQuery<'a> {
    id: &'a str,
    text: &'a str,
    judgments: &'a Judgments,
}

/// The ingested corpus: its collection, and each file's source path (as
/// hits name it) mapped to its corpus id.
struct Corpus {
    collection: String,
    files: HashMap<String, String>,
}

impl Corpus {
    /// The corpus ids of `source_paths`, in order, skipping unknown paths.
    fn ids<'a>(&self, source_paths: impl Iterator<Item = &'a str>) -> Vec<String> {
        source_paths
            .filter_map(|path| self.files.get(path).cloned())
            .collect()
    }
}

/// The figures of one mode.
#[derive(Debug, Serialize)]
struct ModeScore {
    mode: &'static str,
    queries: usize,
    #[serde(flatten)]
    scores: Scores,
    /// Per query: embedding the query (dense and hybrid) and searching.
    latency_ms: Percentiles,
    /// Per query: searching with the query's vector computed beforehand.
    latency_without_embedding_ms: Percentiles,
}

#[derive(Debug, Serialize)]
struct Percentiles {
    p50: f64,
    p95: f64,
}

impl From<&Latencies> for Percentiles {
    fn from(latencies: &Latencies) -> Self {
        Self {
            p50: latencies.percentile_ms(50.0),
            p95: latencies.percentile_ms(95.0),
        }
    }
}

/// How the answers to the first judged queries fared.
#[derive(Debug, Serialize)]
struct AnswerScore {
    /// `extractive` or the chat model's id.
    produced_by: String,
    answers: usize,
    /// The share of answers citing at least one judged relevant document.
    cites_relevant: f64,
    /// The share of answers that cite nothing (`grounded: false`).
    ungrounded: f64,
    /// Per answer: retrieving, composing the prompt and answering.
    latency_ms: Percentiles,
}

/// What the figures were measured with, so that runs can be compared.
#[derive(Debug, Serialize)]
struct Setup {
    model: String,
    chunking: Chunking,
    rrf_k: usize,
    commit: &'static str,
    /// Whether the work tree differed from the commit; null when unknown.
    dirty: Option<bool>,
    /// When the run started, UTC.
    date: String,
    arch: &'static str,
    threads: usize,
}

#[derive(Debug, Serialize)]
struct Chunking {
    max_tokens: usize,
    overlap_tokens: usize,
}

#[derive(Debug, Serialize)]
struct EvalReport {
    dataset: String,
    split: String,
    collection: String,
    documents: usize,
    chunks: u64,
    /// Judged queries scored in each mode.
    queries: usize,
    #[serde(flatten)]
    setup: Setup,
    modes: Vec<ModeScore>,
    /// Absent unless `--answers` asked for some.
    #[serde(skip_serializing_if = "Option::is_none")]
    answers: Option<AnswerScore>,
}

pub async fn run(global: &GlobalArgs, args: EvalArgs) -> anyhow::Result<()> {
    let started_at = unix_now();
    let dir = args
        .benchmark()
        .context("give the benchmark directory with --dataset DIR")?;
    let dataset = Dataset::read(dir, &args.split)?;
    let judged = judged_queries(&dataset, dir, &args)?;
    let output_dir = args
        .output
        .clone()
        .unwrap_or_else(|| global.data_dir.join("eval").join("runs"));
    // Made now, so that a bad --output fails before the run, not after it.
    std::fs::create_dir_all(&output_dir).with_context(|| {
        format!(
            "cannot make the report directory {} (--output must name a directory)",
            output_dir.display()
        )
    })?;

    let context = Context::open(global).await?;
    // Loaded before the ingest, so that a model that cannot load fails at once.
    let answerer = match args.answers {
        0 => None,
        _ => Some(llm::answerer(
            global,
            &args.answer,
            context.embedder.clone(),
        )?),
    };
    let options = ingest_options(&format!("eval-{}", dataset.name));
    let corpus = ingest_corpus(global, &context, &dataset, &options).await?;

    let modes = score_modes(&context, &corpus, &args, &judged).await?;
    let answers = match &answerer {
        Some(answerer) => Some(score_answers(&context, answerer, &corpus, &args, &judged).await?),
        None => None,
    };

    let chunks = context
        .store
        .collection_counts(&corpus.collection)
        .await?
        .chunks;
    let report = EvalReport {
        dataset: dataset.name.clone(),
        split: args.split.clone(),
        documents: dataset.corpus.len(),
        chunks,
        collection: corpus.collection,
        queries: judged.len(),
        setup: setup(context.embedder.model_id(), &options, &args, started_at),
        modes,
        answers,
    };
    context.close().await;
    publish(&report, &output_dir, started_at, args.json)
}

/// The judged queries to score, sorted by id: those of `queries.jsonl` with
/// a relevant judgment in the split, the first `--limit-queries` of them.
fn judged_queries<'a>(
    dataset: &'a Dataset,
    dir: &Path,
    args: &EvalArgs,
) -> anyhow::Result<Vec<JudgedQuery<'a>>> {
    if args.limit_queries == Some(0) {
        anyhow::bail!("--limit-queries 0 leaves no query to score: give 1 or more");
    }
    let mut judged: Vec<JudgedQuery> = dataset
        .qrels
        .iter()
        .filter_map(|(id, judgments)| {
            let text = dataset.queries.get(id)?;
            Some(JudgedQuery {
                id,
                text,
                judgments,
            })
        })
        .collect();
    judged.sort_by(|a, b| a.id.cmp(b.id));
    judged.truncate(args.limit_queries.unwrap_or(usize::MAX));
    if judged.is_empty() {
        anyhow::bail!(
            "no query of {} has a relevance judgment in qrels/{}.tsv to score",
            dir.display(),
            args.split
        );
    }
    Ok(judged)
}

/// Writes the corpus out and ingests it, reusing cached embeddings.
async fn ingest_corpus(
    global: &GlobalArgs,
    context: &Context,
    dataset: &Dataset,
    options: &IngestOptions,
) -> anyhow::Result<Corpus> {
    let corpus_dir = global.data_dir.join("eval").join(&dataset.name);
    let files = write_corpus(&corpus_dir, dataset)?;
    let report = ingest(context, &[corpus_dir], options).await?;
    info!(
        collection = options.collection,
        documents = dataset.corpus.len(),
        embeddings_computed = report.embeddings_computed,
        elapsed_ms = report.elapsed_ms,
        "eval corpus ingested"
    );
    Ok(Corpus {
        collection: options.collection.clone(),
        files,
    })
}

fn chosen_modes(modes: &[Mode]) -> Vec<SearchMode> {
    if modes.is_empty() {
        return vec![SearchMode::Dense, SearchMode::Sparse, SearchMode::Hybrid];
    }
    modes.iter().map(|&mode| mode.into()).collect()
}

/// Scores each chosen mode, the queries embedded once beforehand.
async fn score_modes(
    context: &Context,
    corpus: &Corpus,
    args: &EvalArgs,
    judged: &[JudgedQuery<'_>],
) -> anyhow::Result<Vec<ModeScore>> {
    let modes = chosen_modes(&args.modes);
    let mut queries = PrecomputedQueries::new(context.embedder.as_ref());
    let embed_times = embed_queries(&mut queries, judged, &modes).await?;
    let retriever = Retriever::new(&queries, context.index.as_ref(), context.store.as_ref());

    let mut scores = Vec::with_capacity(modes.len());
    for mode in modes {
        let score = score_mode(&retriever, corpus, mode, args, judged, &embed_times).await?;
        info!(
            mode = score.mode,
            queries = score.queries,
            ndcg_at_10 = score.scores.ndcg_at_10,
            "eval mode scored"
        );
        scores.push(score);
    }
    Ok(scores)
}

/// Whether a search in `mode` embeds its query.
fn embeds(mode: SearchMode) -> bool {
    matches!(mode, SearchMode::Dense | SearchMode::Hybrid)
}

/// Embeds each judged query once, ahead of the searches, when a mode needs
/// it; returns how long each took (none when no mode embeds).
async fn embed_queries(
    queries: &mut PrecomputedQueries<'_>,
    judged: &[JudgedQuery<'_>],
    modes: &[SearchMode],
) -> anyhow::Result<Vec<Duration>> {
    if !modes.iter().any(|&mode| embeds(mode)) {
        return Ok(Vec::new());
    }
    let mut times = Vec::with_capacity(judged.len());
    for query in judged {
        let elapsed = queries
            .embed_query(query.text)
            .await
            .with_context(|| format!("failed to embed query {}", query.id))?;
        times.push(elapsed);
    }
    Ok(times)
}

/// Searches every judged query in one mode and averages the measures.
/// Latency is that of a second, top-10 search of the same query; with
/// embedding, it adds the query's embedding time, taken beforehand, to the
/// search given its vector.
async fn score_mode(
    retriever: &Retriever<'_>,
    corpus: &Corpus,
    mode: SearchMode,
    args: &EvalArgs,
    judged: &[JudgedQuery<'_>],
    embed_times: &[Duration],
) -> anyhow::Result<ModeScore> {
    let mut scores = Vec::with_capacity(judged.len());
    let mut with_embedding = Latencies::default();
    let mut without_embedding = Latencies::default();
    for (number, query) in judged.iter().enumerate() {
        let request = SearchRequest {
            mode,
            rrf_k: args.rrf_k,
            ..SearchRequest::new(&corpus.collection, query.text, HITS_PER_QUERY)
        };

        let hits = retriever
            .search(&request)
            .await
            .with_context(|| format!("query {} failed", query.id))?;

        // Timed apart, as the search a user runs: the scoring search above
        // reads hundreds of hits for recall@100.
        let timed = SearchRequest {
            limit: TIMED_HITS,
            ..request.clone()
        };
        let started = Instant::now();
        retriever
            .search(&timed)
            .await
            .with_context(|| format!("query {} failed", query.id))?;
        let searched = started.elapsed();
        let embedded = match embeds(mode) {
            true => embed_times.get(number).copied().unwrap_or_default(),
            false => Duration::ZERO,
        };
        with_embedding.push(embedded + searched);
        without_embedding.push(searched);

        let ranked = corpus.ids(hits.iter().map(|hit| hit.source_path.as_str()));
        scores.push(Scores::of(&ranked, query.judgments));
    }

    Ok(ModeScore {
        mode: mode.as_str(),
        queries: judged.len(),
        scores: Scores::mean(&scores),
        latency_ms: Percentiles::from(&with_embedding),
        latency_without_embedding_ms: Percentiles::from(&without_embedding),
    })
}

/// Answers the first `--answers` judged queries from their hybrid hits, the
/// way `grounded ask` does, and counts the answers citing a relevant
/// document and those citing nothing.
async fn score_answers(
    context: &Context,
    answerer: &Answerer,
    corpus: &Corpus,
    args: &EvalArgs,
    judged: &[JudgedQuery<'_>],
) -> anyhow::Result<AnswerScore> {
    let options = AnswerOptions {
        budget: PromptBudget {
            max_prompt_tokens: ANSWER_PROMPT_TOKENS,
        },
        max_tokens: args.answer.max_tokens,
        temperature: args.answer.temperature,
        attribution: args.answer.attribution.0,
    };
    let asked = &judged[..args.answers.min(judged.len())];
    let (mut cites_relevant, mut ungrounded) = (0, 0);
    let mut latencies = Latencies::default();
    for query in asked {
        let request = SearchRequest {
            rrf_k: args.rrf_k,
            ..SearchRequest::new(&corpus.collection, query.text, ANSWER_SOURCES)
        };
        let started = Instant::now();
        let (_, outcome) = ask(context, answerer, &request, options)
            .await
            .with_context(|| format!("answering query {} failed", query.id))?;
        latencies.push(started.elapsed());

        let answer = &outcome.answer;
        let cited = corpus.ids(answer.citations.iter().map(|c| c.source_path.as_str()));
        let relevant = |id: &String| query.judgments.get(id).is_some_and(|&grade| grade > 0);
        cites_relevant += usize::from(cited.iter().any(relevant));
        ungrounded += usize::from(!answer.grounded);
    }

    let count = asked.len().max(1) as f64;
    Ok(AnswerScore {
        produced_by: answerer.model().id().to_owned(),
        answers: asked.len(),
        cites_relevant: cites_relevant as f64 / count,
        ungrounded: ungrounded as f64 / count,
        latency_ms: Percentiles::from(&latencies),
    })
}

fn setup(model: &str, options: &IngestOptions, args: &EvalArgs, started_at: i64) -> Setup {
    Setup {
        model: model.to_owned(),
        chunking: Chunking {
            max_tokens: options.chunking.max_tokens,
            overlap_tokens: options.chunking.overlap_tokens,
        },
        rrf_k: args.rrf_k,
        commit: COMMIT,
        dirty: DIRTY.parse().ok(),
        date: utc_time(started_at, 'T'),
        arch: std::env::consts::ARCH,
        threads: std::thread::available_parallelism().map_or(1, usize::from),
    }
}

fn ingest_options(collection: &str) -> IngestOptions {
    IngestOptions {
        collection: collection.to_owned(),
        chunking: ChunkConfig {
            max_tokens: 254,
            overlap_tokens: 32,
        },
        walk: WalkOptions {
            follow_links: false,
            exclude: Vec::new(),
            max_file_bytes: 64 << 20,
        },
        prune: true,
        batch_chunks: 128,
        tags: Vec::new(),
    }
}

/// Writes each corpus document to `<dir>/<id>.txt` unless it already holds
/// that text; returns each file's source path (as the ingest records it)
/// mapped to its corpus id.
fn write_corpus(dir: &Path, dataset: &Dataset) -> anyhow::Result<HashMap<String, String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let root = dir
        .canonicalize()
        .with_context(|| format!("failed to resolve {}", dir.display()))?;

    let mut files = HashMap::with_capacity(dataset.corpus.len());
    for (id, title, text) in &dataset.corpus {
        let path = root.join(format!("{}.txt", file_stem(id)));
        let content = format!("{title}\n\n{text}\n");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            std::fs::write(&path, &content)
                .with_context(|| format!("failed to write {}", path.display()))?;
        }
        files.insert(path.display().to_string(), id.clone());
    }
    remove_stale_files(&root, &files)?;
    Ok(files)
}

/// Removes the text files of documents the dataset no longer has (an earlier
/// version of it, or another dataset of the same name), so that the ingest's
/// prune removes them from the collection too.
fn remove_stale_files(root: &Path, files: &HashMap<String, String>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(root).with_context(|| format!("failed to list {}", root.display()))?;
    for entry in entries {
        let path = entry?.path();
        let stale = path.extension().is_some_and(|extension| extension == "txt")
            && !files.contains_key(&path.display().to_string());
        if stale {
            std::fs::remove_file(&path)
                .with_context(|| format!("failed to remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// A corpus id as a file name: characters other than letters, digits, `-`
/// and `_` are written as `%XX`, so that distinct ids stay distinct.
fn file_stem(id: &str) -> String {
    let mut stem = String::with_capacity(id.len());
    for byte in id.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => stem.push(byte as char),
            other => stem.push_str(&format!("%{other:02X}")),
        }
    }
    stem
}

impl Dataset {
    /// Reads `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv` under `dir`.
    fn read(dir: &Path, split: &str) -> anyhow::Result<Self> {
        if dir.is_file() {
            anyhow::bail!(
                "{} is a file; give the benchmark's directory, which holds corpus.jsonl, \
                 queries.jsonl and qrels/",
                dir.display()
            );
        }
        if !dir.is_dir() {
            anyhow::bail!("benchmark directory {} does not exist", dir.display());
        }
        let name = dir
            .canonicalize()?
            .file_name()
            .map(|name| file_stem(&name.to_string_lossy()).to_lowercase())
            .unwrap_or_else(|| "dataset".to_owned());
        if name == "runs" {
            anyhow::bail!(
                "{}: a benchmark named runs would share eval/runs/ of the data directory with \
                 the reports; rename its directory",
                dir.display()
            );
        }

        let corpus = read_jsonl(&dir.join("corpus.jsonl"), |value| {
            let id = string_field(value, "_id")?;
            let title = value.get("title").and_then(Value::as_str).unwrap_or("");
            let text = string_field(value, "text")?;
            Some((id, title.trim().to_owned(), text))
        })?;
        check_unique_ids(
            &dir.join("corpus.jsonl"),
            "document",
            corpus.iter().map(|(id, _, _)| id),
        )?;
        let queries: Vec<(String, String)> = read_jsonl(&dir.join("queries.jsonl"), |value| {
            Some((string_field(value, "_id")?, string_field(value, "text")?))
        })?;
        check_unique_ids(
            &dir.join("queries.jsonl"),
            "query",
            queries.iter().map(|(id, _)| id),
        )?;
        let queries = queries.into_iter().collect();
        let qrels = read_qrels(&dir.join("qrels").join(format!("{split}.tsv")))?;
        Ok(Self {
            name,
            corpus,
            queries,
            qrels,
        })
    }
}

/// Fails on an empty file or one that lists an id twice: the figures would
/// silently describe another benchmark than the file. `kind` names what the
/// ids are of ("document", "query").
fn check_unique_ids<'a>(
    path: &Path,
    kind: &str,
    ids: impl Iterator<Item = &'a String>,
) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    for (number, id) in ids.enumerate() {
        if !seen.insert(id) {
            anyhow::bail!(
                "{}: the {kind} id {id:?} appears twice (again as entry {})",
                path.display(),
                number + 1
            );
        }
    }
    if seen.is_empty() {
        anyhow::bail!("{} holds no {kind}s", path.display());
    }
    Ok(())
}

fn string_field(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Each line of a JSON Lines file through `parse`; a line that is not JSON or
/// lacks a field is an error naming the file and the line.
fn read_jsonl<T>(path: &Path, parse: impl Fn(&Value) -> Option<T>) -> anyhow::Result<Vec<T>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut items = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("failed to read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a JSON object", path.display(), number + 1))?;
        let item = parse(&value).with_context(|| {
            format!(
                "{}:{}: missing \"_id\" or \"text\"",
                path.display(),
                number + 1
            )
        })?;
        items.push(item);
    }
    Ok(items)
}

/// `query-id<TAB>corpus-id<TAB>score` lines, after a header line if there is
/// one (a first line whose score is not a number); rows scored 0 or less are
/// judged not relevant and dropped. A score that is not a whole number, a
/// line of another shape and a pair judged twice are errors naming the line.
fn read_qrels(path: &Path) -> anyhow::Result<HashMap<String, Judgments>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "failed to read the relevance judgments {}{}",
            path.display(),
            splits_beside(path)
        )
    })?;
    let mut qrels: HashMap<String, Judgments> = HashMap::new();
    let mut pairs = HashSet::new();
    for (number, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), number + 1);
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let is_header = number == 0 && fields.len() == 3 && fields[2].parse::<f64>().is_err();
        if is_header || line.trim().is_empty() {
            continue;
        }
        let [query, document, score] = fields.as_slice() else {
            anyhow::bail!(
                "{}: expected query-id<TAB>corpus-id<TAB>score, found {} tab-separated fields",
                at(),
                fields.len()
            );
        };
        let Ok(score) = score.parse::<i64>() else {
            anyhow::bail!("{}: the score {score:?} is not a whole number", at());
        };
        if !pairs.insert((query.to_string(), document.to_string())) {
            anyhow::bail!(
                "{}: document {document:?} is judged twice for query {query:?}",
                at()
            );
        }
        if score > 0 {
            let judged = qrels.entry((*query).to_owned()).or_default();
            judged.insert(
                (*document).to_owned(),
                u32::try_from(score).unwrap_or(u32::MAX),
            );
        }
    }
    Ok(qrels)
}

/// ", which has: train.tsv, dev.tsv" for the judgment files beside a
/// missing one, so that the error says which `--split` exists.
fn splits_beside(path: &Path) -> String {
    let Some(entries) = path.parent().and_then(|dir| std::fs::read_dir(dir).ok()) else {
        return String::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".tsv"))
        .collect();
    names.sort();
    if names.is_empty() {
        return String::new();
    }
    format!(
        " (qrels/ has {}: choose one with --split)",
        names.join(", ")
    )
}

/// Prints the report (Markdown, or JSON with `--json`) and writes both forms
/// to `<dir>/<dataset>-<split>-<UTC timestamp>.md` and `.json`.
fn publish(report: &EvalReport, dir: &Path, started_at: i64, json: bool) -> anyhow::Result<()> {
    let markdown = markdown(report);
    let json_text = serde_json::to_string_pretty(report)?;
    println!("{}", if json { &json_text } else { &markdown });

    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let stamp: String = utc_time(started_at, 'T')
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let stem = format!("{}-{}-{stamp}", report.dataset, file_stem(&report.split));
    let paths = [
        (dir.join(format!("{stem}.md")), markdown),
        (dir.join(format!("{stem}.json")), json_text + "\n"),
    ];
    for (path, text) in &paths {
        std::fs::write(path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    eprintln!(
        "eval report written to {} and {}",
        paths[0].0.display(),
        paths[1].0.display()
    );
    Ok(())
}

/// The report as Markdown: what was measured and how, then one table row
/// per mode, then the answers if any.
fn markdown(report: &EvalReport) -> String {
    let mut text = format!("# {} ({} split)\n\n", report.dataset, report.split);
    text.push_str(&setup_table(report));
    text.push('\n');
    text.push_str(&modes_table(&report.modes));
    if let Some(answers) = &report.answers {
        text.push('\n');
        text.push_str(&answers_table(answers));
    }
    text
}

fn setup_table(report: &EvalReport) -> String {
    let setup = &report.setup;
    let dirty = match setup.dirty {
        Some(true) => " (work tree modified)",
        Some(false) => "",
        None => " (work tree unknown)",
    };
    let rows = [
        (
            "corpus",
            format!(
                "{} documents, {} chunks in collection `{}`",
                report.documents, report.chunks, report.collection
            ),
        ),
        ("queries", format!("{} judged", report.queries)),
        ("model", setup.model.clone()),
        (
            "chunking",
            format!(
                "{} tokens, {} overlap",
                setup.chunking.max_tokens, setup.chunking.overlap_tokens
            ),
        ),
        ("fusion", format!("reciprocal rank, k = {}", setup.rrf_k)),
        ("commit", format!("{}{dirty}", setup.commit)),
        ("date", setup.date.clone()),
        (
            "machine",
            format!("{}, {} threads", setup.arch, setup.threads),
        ),
    ];
    let mut table = String::from("| setting | value |\n| --- | --- |\n");
    for (name, value) in rows {
        table.push_str(&format!("| {name} | {value} |\n"));
    }
    table
}

fn modes_table(modes: &[ModeScore]) -> String {
    let mut table = String::from(
        "| mode | nDCG@10 | Recall@10 | Recall@100 | MRR@10 | MAP@100 | p50 / p95 ms | \
         p50 / p95 ms without embedding |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for mode in modes {
        let s = &mode.scores;
        table.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {} |\n",
            mode.mode,
            s.ndcg_at_10,
            s.recall_at_10,
            s.recall_at_100,
            s.mrr_at_10,
            s.map_at_100,
            milliseconds(&mode.latency_ms),
            milliseconds(&mode.latency_without_embedding_ms),
        ));
    }
    table
}

fn answers_table(answers: &AnswerScore) -> String {
    format!(
        "| answers by | answers | cite a relevant document | ungrounded | p50 / p95 ms |\n\
         | --- | ---: | ---: | ---: | ---: |\n\
         | {} | {} | {:.1} % | {:.1} % | {} |\n",
        answers.produced_by,
        answers.answers,
        answers.cites_relevant * 100.0,
        answers.ungrounded * 100.0,
        milliseconds(&answers.latency_ms),
    )
}

fn milliseconds(latency: &Percentiles) -> String {
    format!("{:.1} / {:.1}", latency.p50, latency.p95)
}
