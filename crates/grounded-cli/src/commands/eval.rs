//! `grounded eval`: retrieval quality on a BEIR-format benchmark.
//!
//! The corpus is written out as one text file per document (title, blank
//! line, text) under `<data dir>/eval/<dataset>/` and ingested into the
//! collection `eval-<dataset>` by the ordinary pipeline, so the figures
//! measure exactly what `grounded search` does: the same chunking, embedding
//! cache, sparse vectors and fusion. Each judged query is then searched in
//! each mode; a document ranks where its best chunk ranks.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use grounded_index::SearchMode;
use grounded_ingest::{ChunkConfig, IngestOptions, WalkOptions};
use grounded_query::eval::{Judgments, ndcg_at, recall_at};
use grounded_query::{Retriever, SearchRequest};
use serde::Serialize;
use serde_json::Value;
use tracing::info;

use crate::cli::{EvalArgs, GlobalArgs, Mode};
use crate::commands::ingest::ingest;
use crate::context::Context;

/// Chunks asked for per query: enough distinct documents for recall@100
/// after a document's further chunks are folded into its best one.
const HITS_PER_QUERY: usize = 300;

/// One BEIR dataset, read whole.
struct Dataset {
    name: String,
    /// Each document's corpus id, title and text.
    corpus: Vec<(String, String, String)>,
    queries: HashMap<String, String>,
    /// Query id to its judgments, for the split asked for.
    qrels: HashMap<String, Judgments>,
}

/// The figures of one mode.
#[derive(Debug, Serialize)]
struct ModeScore {
    mode: &'static str,
    ndcg_at_10: f64,
    recall_at_100: f64,
    queries: usize,
    p50_ms: f64,
}

#[derive(Debug, Serialize)]
struct EvalReport {
    dataset: String,
    split: String,
    collection: String,
    documents: usize,
    chunks: u64,
    rrf_k: usize,
    modes: Vec<ModeScore>,
}

pub async fn run(global: &GlobalArgs, args: EvalArgs) -> anyhow::Result<()> {
    let dataset = Dataset::read(&args.dataset, &args.split)?;
    let modes = chosen_modes(&args.modes);
    let mut judged: Vec<(&String, &Judgments)> = dataset
        .qrels
        .iter()
        .filter(|(id, _)| dataset.queries.contains_key(*id))
        .collect();
    judged.sort_by(|a, b| a.0.cmp(b.0));
    judged.truncate(args.limit_queries.unwrap_or(usize::MAX));
    if judged.is_empty() {
        anyhow::bail!(
            "no query of {} has a relevance judgment in qrels/{}.tsv to score",
            args.dataset.display(),
            args.split
        );
    }

    let context = Context::open(global).await?;
    let collection = format!("eval-{}", dataset.name);

    let corpus_dir = global.data_dir.join("eval").join(&dataset.name);
    let files = write_corpus(&corpus_dir, &dataset)?;
    let options = ingest_options(&collection);
    let report = ingest(&context, &[corpus_dir], &options).await?;
    info!(
        collection,
        documents = dataset.corpus.len(),
        embeddings_computed = report.embeddings_computed,
        elapsed_ms = report.elapsed_ms,
        "eval corpus ingested"
    );

    let retriever = Retriever::new(
        context.embedder.as_ref(),
        context.index.as_ref(),
        context.store.as_ref(),
    );
    let mut scores = Vec::new();
    for mode in modes {
        let score = score_mode(
            &retriever,
            &collection,
            mode,
            &args,
            &dataset,
            &judged,
            &files,
        )
        .await?;
        scores.push(score);
    }

    let chunks = context.store.collection_counts(&collection).await?.chunks;
    let report = EvalReport {
        dataset: dataset.name.clone(),
        split: args.split.clone(),
        collection,
        documents: dataset.corpus.len(),
        chunks,
        rrf_k: args.rrf_k,
        modes: scores,
    };
    print_report(&report, args.json)?;
    context.close().await;
    Ok(())
}

fn chosen_modes(modes: &[Mode]) -> Vec<SearchMode> {
    if modes.is_empty() {
        return vec![SearchMode::Dense, SearchMode::Sparse, SearchMode::Hybrid];
    }
    modes.iter().map(|&mode| mode.into()).collect()
}

/// Searches every judged query in one mode and averages the measures.
async fn score_mode(
    retriever: &Retriever<'_>,
    collection: &str,
    mode: SearchMode,
    args: &EvalArgs,
    dataset: &Dataset,
    judged: &[(&String, &Judgments)],
    files: &HashMap<String, String>,
) -> anyhow::Result<ModeScore> {
    let mut ndcg = 0.0;
    let mut recall = 0.0;
    let mut latencies = Vec::with_capacity(judged.len());
    for (query_id, judgments) in judged {
        let text = &dataset.queries[*query_id];
        let request = SearchRequest {
            mode,
            rrf_k: args.rrf_k,
            ..SearchRequest::new(collection, text.clone(), HITS_PER_QUERY)
        };

        let started = Instant::now();
        let hits = retriever
            .search(&request)
            .await
            .with_context(|| format!("query {query_id} failed"))?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);

        let ranked: Vec<String> = hits
            .iter()
            .filter_map(|hit| files.get(&hit.source_path).cloned())
            .collect();
        ndcg += ndcg_at(10, &ranked, judgments);
        recall += recall_at(100, &ranked, judgments);
    }

    let count = judged.len().max(1) as f64;
    latencies.sort_by(f64::total_cmp);
    Ok(ModeScore {
        mode: mode.as_str(),
        ndcg_at_10: ndcg / count,
        recall_at_100: recall / count,
        queries: judged.len(),
        p50_ms: latencies.get(latencies.len() / 2).copied().unwrap_or(0.0),
    })
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

        let corpus = read_jsonl(&dir.join("corpus.jsonl"), |value| {
            let id = string_field(value, "_id")?;
            let title = value.get("title").and_then(Value::as_str).unwrap_or("");
            let text = string_field(value, "text")?;
            Some((id, title.trim().to_owned(), text))
        })?;
        check_unique_ids(
            &dir.join("corpus.jsonl"),
            corpus.iter().map(|(id, _, _)| id),
        )?;
        let queries = read_jsonl(&dir.join("queries.jsonl"), |value| {
            Some((string_field(value, "_id")?, string_field(value, "text")?))
        })?
        .into_iter()
        .collect();
        let qrels = read_qrels(&dir.join("qrels").join(format!("{split}.tsv")))?;
        Ok(Self {
            name,
            corpus,
            queries,
            qrels,
        })
    }
}

/// Fails on an empty corpus or one that lists an id twice: the figures
/// would silently describe another corpus than the file.
fn check_unique_ids<'a>(path: &Path, ids: impl Iterator<Item = &'a String>) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            anyhow::bail!("{}: the document id {id:?} appears twice", path.display());
        }
    }
    if seen.is_empty() {
        anyhow::bail!("{} holds no documents", path.display());
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
/// one (a first line whose score is not a number); rows scored 0 are judged
/// not relevant and dropped.
fn read_qrels(path: &Path) -> anyhow::Result<HashMap<String, Judgments>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the relevance judgments {}", path.display()))?;
    let mut qrels: HashMap<String, Judgments> = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let is_header = number == 0
            && line
                .rsplit('\t')
                .next()
                .is_some_and(|score| score.trim().parse::<i64>().is_err());
        if is_header || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let parsed = match fields.as_slice() {
            [query, document, score] => score
                .trim()
                .parse::<i64>()
                .ok()
                .map(|s| (query, document, s)),
            _ => None,
        };
        let Some((query, document, score)) = parsed else {
            anyhow::bail!(
                "{}:{}: expected query-id<TAB>corpus-id<TAB>score",
                path.display(),
                number + 1
            );
        };
        if score > 0 {
            let grade = u32::try_from(score).unwrap_or(u32::MAX);
            let judged = qrels.entry((*query).to_owned()).or_default();
            judged.insert((*document).to_owned(), grade);
        }
    }
    Ok(qrels)
}

fn print_report(report: &EvalReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    println!(
        "{} ({} split): {} documents, {} chunks in collection {:?}; hybrid fuses with k = {}",
        report.dataset,
        report.split,
        report.documents,
        report.chunks,
        report.collection,
        report.rrf_k
    );
    println!(
        "{:<8} {:>8} {:>11} {:>8} {:>8}",
        "mode", "nDCG@10", "Recall@100", "queries", "p50 ms"
    );
    for score in &report.modes {
        println!(
            "{:<8} {:>8.4} {:>11.4} {:>8} {:>8.1}",
            score.mode, score.ndcg_at_10, score.recall_at_100, score.queries, score.p50_ms
        );
    }
    Ok(())
}
