//! Embedding throughput of grounded's in-process all-MiniLM-L6-v2 next to
//! the reference implementation, sentence-transformers on PyTorch, with the
//! same model files, the same texts and the same number of threads, in the
//! same run.
//!
//! The texts are the first `GROUNDED_BENCH_TEXTS` (256) abstracts of BEIR
//! SciFact in `../shared/data/scifact`, as title, blank line, text; the
//! queries for single-text latency are its first 100 queries. The reference
//! runs in the virtual environment that `bench/reference/setup.sh` creates
//! (`GROUNDED_BENCH_VENV`); without it only grounded's side is measured.
//! `GROUNDED_BENCH_THREADS` sets the threads of both (default: all cores).
//! The table is printed and written to `embedding.md` in
//! `GROUNDED_BENCH_RESULTS` (a directory relative to the project root,
//! default `bench/results`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use grounded_embed::{MiniLm, ModelFiles, resolve_model_files};
use serde_json::Value;

const ROUNDS: usize = 3;

/// Texts per call, as the ingest pipeline hands them to the embedder.
const INGEST_BATCH: usize = 128;

struct Measure {
    name: String,
    texts: usize,
    tokens: usize,
    seconds: f64,
    query_ms: Vec<f64>,
}

impl Measure {
    fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.seconds
    }
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    let scifact = root.join("../shared/data/scifact");
    if !scifact.join("corpus.jsonl").is_file() {
        println!("skipped: {} is absent", scifact.display());
        return Ok(());
    }
    let count = env_number("GROUNDED_BENCH_TEXTS", 256);
    let threads = env_number(
        "GROUNDED_BENCH_THREADS",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let texts = corpus_texts(&scifact.join("corpus.jsonl"), count)?;
    let queries = query_texts(&scifact.join("queries.jsonl"), 100)?;

    let (files, _) = resolve_model_files(None, &grounded_core::default_cache_dir())?;
    let model = MiniLm::load_with_threads(&files, threads)?;
    let (ours, our_vectors) = measure_ours(&model, &texts, &queries)?;
    let reference = measure_reference(&root, &files, &texts, &queries, threads)?;

    let report = render(threads, &ours, reference.as_ref(), &our_vectors);
    print!("{report}");
    let results =
        std::env::var("GROUNDED_BENCH_RESULTS").unwrap_or_else(|_| "bench/results".into());
    write_result(&root.join(results).join("embedding.md"), &report)?;
    Ok(())
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn corpus_texts(path: &Path, count: usize) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::with_capacity(count);
    for line in std::fs::read_to_string(path)?.lines().take(count) {
        let value: Value = serde_json::from_str(line)?;
        let title = value["title"].as_str().unwrap_or("");
        let text = value["text"].as_str().unwrap_or("");
        texts.push(format!("{title}\n\n{text}"));
    }
    Ok(texts)
}

fn query_texts(path: &Path, count: usize) -> anyhow::Result<Vec<String>> {
    let mut queries = Vec::with_capacity(count);
    for line in std::fs::read_to_string(path)?.lines().take(count) {
        let value: Value = serde_json::from_str(line)?;
        queries.push(value["text"].as_str().unwrap_or("").to_owned());
    }
    Ok(queries)
}

/// The median of [`ROUNDS`] embeddings of `texts`, in calls of
/// [`INGEST_BATCH`] texts, after one warm-up call; then each query alone.
fn measure_ours(
    model: &MiniLm,
    texts: &[String],
    queries: &[String],
) -> anyhow::Result<(Measure, Vec<Vec<f32>>)> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut tokens = 0;
    for text in &refs {
        tokens += model.input_ids(text)?.len();
    }

    model.embed_sync(&refs[..refs.len().min(32)])?;
    let mut times = Vec::with_capacity(ROUNDS);
    let mut vectors = Vec::new();
    for _ in 0..ROUNDS {
        vectors.clear();
        let started = Instant::now();
        for batch in refs.chunks(INGEST_BATCH) {
            vectors.extend(model.embed_sync(batch)?);
        }
        times.push(started.elapsed().as_secs_f64());
    }

    let mut query_ms = Vec::with_capacity(queries.len());
    for query in queries {
        let started = Instant::now();
        model.embed_sync(&[query.as_str()])?;
        query_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let measure = Measure {
        name: "grounded (packed encoder on gemm)".to_owned(),
        texts: texts.len(),
        tokens,
        seconds: median(&mut times),
        query_ms: sorted(query_ms),
    };
    Ok((measure, vectors))
}

/// Runs `bench/reference/embed.py` in the reference environment; `None`
/// when that environment does not exist.
fn measure_reference(
    root: &Path,
    files: &ModelFiles,
    texts: &[String],
    queries: &[String],
    threads: usize,
) -> anyhow::Result<Option<(Measure, Vec<f32>)>> {
    let venv = std::env::var_os("GROUNDED_BENCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/grounded-bench-venv"));
    let python = venv.join("bin/python");
    if !python.is_file() {
        println!(
            "reference skipped: no environment at {} (run bench/reference/setup.sh)",
            venv.display()
        );
        return Ok(None);
    }

    let scratch = tempfile::tempdir()?;
    let texts_file = write_lines(&scratch.path().join("texts.jsonl"), texts)?;
    let queries_file = write_lines(&scratch.path().join("queries.jsonl"), queries)?;
    let vectors_file = scratch.path().join("vectors.f32");
    let output = Command::new(&python)
        .arg(root.join("bench/reference/embed.py"))
        .arg("--model")
        .arg(&files.dir)
        .arg("--texts")
        .arg(&texts_file)
        .arg("--queries")
        .arg(&queries_file)
        .arg("--vectors")
        .arg(&vectors_file)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--rounds")
        .arg(ROUNDS.to_string())
        .output()?;
    if !output.status.success() {
        anyhow::bail!(
            "the reference embedder failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let report: Value = serde_json::from_slice(&output.stdout)?;
    let versions = &report["versions"];
    let measure = Measure {
        name: format!(
            "sentence-transformers {} on torch {}",
            versions["sentence_transformers"].as_str().unwrap_or("?"),
            versions["torch"].as_str().unwrap_or("?")
        ),
        texts: report["texts"].as_u64().unwrap_or(0) as usize,
        tokens: report["tokens"].as_u64().unwrap_or(0) as usize,
        seconds: report["seconds"].as_f64().unwrap_or(f64::NAN),
        query_ms: report["query_ms"]
            .as_array()
            .map(|values| values.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default(),
    };
    let bytes = std::fs::read(&vectors_file)?;
    let vectors = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Some((measure, vectors)))
}

fn write_lines(path: &Path, lines: &[String]) -> anyhow::Result<PathBuf> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for line in lines {
        writeln!(file, "{}", serde_json::to_string(line)?)?;
    }
    file.flush()?;
    Ok(path.to_owned())
}

fn render(
    threads: usize,
    ours: &Measure,
    reference: Option<&(Measure, Vec<f32>)>,
    our_vectors: &[Vec<f32>],
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Embedding throughput, all-MiniLM-L6-v2, {} SciFact abstracts ({} real tokens), \
         {threads} threads, median of {ROUNDS} rounds; {}, load average {}; {} at commit {}\n\n",
        ours.texts,
        ours.tokens,
        machine(),
        std::fs::read_to_string("/proc/loadavg")
            .map(|text| text
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_else(|_| "unknown".to_owned()),
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        command_output("git", &["rev-parse", "--short", "HEAD"]),
    ));
    out.push_str("| implementation | seconds | texts/s | tokens/s | one query p50 ms | p95 ms |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    let mut rows = vec![ours];
    if let Some((measure, _)) = reference {
        rows.push(measure);
    }
    for measure in rows {
        out.push_str(&format!(
            "| {} | {:.2} | {:.1} | {:.0} | {:.2} | {:.2} |\n",
            measure.name,
            measure.seconds,
            measure.texts as f64 / measure.seconds,
            measure.tokens_per_second(),
            percentile(&measure.query_ms, 50.0),
            percentile(&measure.query_ms, 95.0),
        ));
    }

    if let Some((measure, vectors)) = reference {
        out.push_str(&format!(
            "\nratio (grounded / reference), tokens per second: {:.2}; one query p50: {:.2}x faster\n",
            ours.tokens_per_second() / measure.tokens_per_second(),
            percentile(&measure.query_ms, 50.0) / percentile(&ours.query_ms, 50.0),
        ));
        if measure.tokens != ours.tokens {
            out.push_str(&format!(
                "token counts differ: grounded {}, reference {}\n",
                ours.tokens, measure.tokens
            ));
        }
        out.push_str(&format!(
            "largest 1 - cosine between the two implementations' vectors: {:.2e}\n",
            largest_distance(our_vectors, vectors)
        ));
    }
    out
}

/// The largest 1 - cos(a, b) over the texts; both sides are unit vectors.
fn largest_distance(ours: &[Vec<f32>], reference: &[f32]) -> f64 {
    let dimension = ours.first().map_or(1, Vec::len);
    ours.iter()
        .zip(reference.chunks_exact(dimension))
        .map(|(a, b)| {
            let dot: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            1.0 - dot
        })
        .fold(0.0, f64::max)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// The first line a command prints, or "unknown".
fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn write_result(path: &Path, report: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, report)?;
    eprintln!("written to {}", path.display());
    Ok(())
}
