//! What the benchmarks share: the machine they ran on, latency percentiles,
//! peak memory, the real data they read, and the Markdown file each one
//! writes under `bench/results/`.
//!
//! Each benchmark is its own binary and uses only part of this module.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use grounded_ingest::{ChunkConfig, IngestOptions, WalkOptions};
use grounded_query::eval::Latencies;
use serde_json::Value;

/// The shared real data (`../shared/data` from the project root), absent in
/// a fresh clone.
pub fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

/// The project root.
pub fn project_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Where the benchmarks keep what outlives one run: the data directory that
/// the ingest benchmark fills and the HTTP benchmark serves, and the SciFact
/// corpus written out as text files.
pub fn scratch_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("grounded-bench")
}

/// A whole number from the environment, or `None` when it is unset.
///
/// # Errors
/// When it is set to something that is not a number.
pub fn env_usize(name: &str) -> anyhow::Result<Option<usize>> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{name} must be a whole number, not {value:?}")),
        Err(_) => Ok(None),
    }
}

/// A comma-separated list of whole numbers from the environment, or `default`.
///
/// # Errors
/// When an item is not a number.
pub fn env_list(name: &str, default: &[usize]) -> anyhow::Result<Vec<usize>> {
    let Ok(value) = std::env::var(name) else {
        return Ok(default.to_vec());
    };
    value
        .split(',')
        .map(|item| {
            let item = item.trim().replace('_', "");
            item.parse()
                .with_context(|| format!("{name} must list whole numbers, not {value:?}"))
        })
        .collect()
}

/// How many SciFact documents the benchmarks read (`GROUNDED_BENCH_LIMIT`),
/// `None` for all of them.
pub fn document_limit() -> anyhow::Result<Option<usize>> {
    env_usize("GROUNDED_BENCH_LIMIT")
}

/// The ingest settings of `grounded ingest` and `grounded eval`.
pub fn ingest_options(collection: &str, exclude: Vec<String>) -> IngestOptions {
    IngestOptions {
        collection: collection.into(),
        chunking: ChunkConfig {
            max_tokens: 254,
            overlap_tokens: 32,
        },
        walk: WalkOptions {
            follow_links: false,
            exclude,
            max_file_bytes: 64 << 20,
        },
        prune: false,
        batch_chunks: 128,
        tags: Vec::new(),
    }
}

/// BEIR SciFact as the benchmarks read it, or `None` (after saying so) when
/// the shared data is absent.
pub struct SciFact {
    pub dir: PathBuf,
}

impl SciFact {
    pub fn find() -> Option<Self> {
        let dir = shared_data().join("scifact");
        if dir.join("corpus.jsonl").is_file() && dir.join("queries.jsonl").is_file() {
            return Some(Self { dir });
        }
        eprintln!(
            "skipped SciFact: {} holds no corpus.jsonl and queries.jsonl",
            dir.display()
        );
        None
    }

    /// Writes the first `limit` documents as text files (title, blank line,
    /// text), as `grounded eval` does, into a directory of their own that
    /// later runs reuse; returns it and the number of files.
    ///
    /// # Errors
    /// When the corpus cannot be read or the files cannot be written.
    pub fn write_corpus(&self, limit: Option<usize>) -> anyhow::Result<(PathBuf, usize)> {
        let name = limit.map_or_else(|| "scifact-all".to_owned(), |n| format!("scifact-{n}"));
        let dir = scratch_root().join("corpus").join(name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;

        let mut written = 0;
        for line in json_lines(&self.dir.join("corpus.jsonl"))?
            .into_iter()
            .take(limit.unwrap_or(usize::MAX))
        {
            let field = |name: &str| line[name].as_str().unwrap_or_default().to_owned();
            let stem: String = field("_id")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let path = dir.join(format!("{stem}.txt"));
            let content = format!("{}\n\n{}\n", field("title"), field("text"));
            if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                std::fs::write(&path, &content)
                    .with_context(|| format!("failed to write {}", path.display()))?;
            }
            written += 1;
        }
        Ok((dir, written))
    }

    /// The text of the first `limit` queries, in file order.
    ///
    /// # Errors
    /// When the queries cannot be read.
    pub fn queries(&self, limit: Option<usize>) -> anyhow::Result<Vec<String>> {
        Ok(json_lines(&self.dir.join("queries.jsonl"))?
            .into_iter()
            .filter_map(|line| line["text"].as_str().map(str::to_owned))
            .take(limit.unwrap_or(usize::MAX))
            .collect())
    }
}

fn json_lines(path: &Path) -> anyhow::Result<Vec<Value>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("failed to read {}", path.display()))?;
        if !line.trim().is_empty() {
            lines.push(serde_json::from_str(&line)?);
        }
    }
    Ok(lines)
}

/// Latency samples, summarised.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    /// Percentiles by the nearest-rank method, as `grounded eval` reports
    /// them ([`Latencies::percentile_ms`]).
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut latencies = Latencies::default();
        samples.iter().for_each(|&sample| latencies.push(sample));
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        Self {
            count: ms.len(),
            p50_ms: latencies.percentile_ms(50.0),
            p95_ms: latencies.percentile_ms(95.0),
            p99_ms: latencies.percentile_ms(99.0),
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            max_ms: ms.iter().copied().fold(f64::MIN, f64::max),
        }
    }
}

/// Starts a new peak for [`peak_memory`]; false where the kernel does not
/// allow it, and the peak is then the process's since it started.
pub fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The most resident memory of this process since it started or since the
/// last [`reset_peak_memory`], in bytes (Linux's `VmHWM`, what
/// `getrusage`'s `ru_maxrss` reports).
pub fn peak_memory() -> Option<u64> {
    status_bytes("VmHWM")
}

/// The resident memory of this process now, in bytes.
pub fn current_memory() -> Option<u64> {
    status_bytes("VmRSS")
}

fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes as MiB for a table, or `?` when unknown.
pub fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "?".to_owned(),
        |b| format!("{:.0}", b as f64 / 1048576.0),
    )
}

/// The bytes that the files under `dir` take on disk (allocated blocks, so
/// sparse files count what they use) and their apparent size.
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;

    let mut used = 0;
    let mut apparent = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                used += metadata.blocks() * 512;
                apparent += metadata.len();
            }
        }
    }
    (used, apparent)
}

/// A benchmark's results: printed as they come and written, with the
/// machine they were measured on, to `bench/results/<name>.md` (or under
/// `GROUNDED_BENCH_RESULTS`, relative to the project root).
pub struct Report {
    name: &'static str,
    text: String,
    quiet: bool,
}

impl Report {
    pub fn new(name: &'static str, title: &str) -> Self {
        Self::start(name, title, false)
    }

    /// A report that is written but not printed: for saving what is
    /// measured so far while a long benchmark goes on.
    pub fn quiet(name: &'static str, title: &str) -> Self {
        Self::start(name, title, true)
    }

    fn start(name: &'static str, title: &str, quiet: bool) -> Self {
        let mut report = Self {
            name,
            text: String::new(),
            quiet,
        };
        report.line(&format!("# {title}"));
        report.line("");
        for (key, value) in machine() {
            report.line(&format!("- {key}: {value}"));
        }
        report.line("");
        report
    }

    /// Appends a line (or paragraph) and prints it.
    pub fn line(&mut self, text: &str) {
        if !self.quiet {
            println!("{text}");
        }
        self.text.push_str(text);
        self.text.push('\n');
    }

    /// Appends a Markdown table and prints it, then a blank line.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.line(&format!("| {} |", header.join(" | ")));
        let rule: Vec<&str> = header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---" } else { "---:" })
            .collect();
        self.line(&format!("| {} |", rule.join(" | ")));
        for row in rows {
            self.line(&format!("| {} |", row.join(" | ")));
        }
        self.line("");
    }

    /// Writes the report; returns where.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(self) -> anyhow::Result<PathBuf> {
        // Relative to the project root, not to the package that cargo runs
        // the benchmark in.
        let dir = std::env::var_os("GROUNDED_BENCH_RESULTS")
            .map_or_else(|| PathBuf::from("bench/results"), PathBuf::from);
        let dir = project_root().join(dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let path = dir.join(format!("{}.md", self.name));
        std::fs::write(&path, self.text)
            .with_context(|| format!("failed to write {}", path.display()))?;
        if !self.quiet {
            println!("written to {}", path.display());
        }
        Ok(path)
    }
}

/// What the figures are measured on, and when: taken at the first call, so
/// call it when the benchmark starts if its report is made at the end.
pub fn machine() -> &'static [(&'static str, String)] {
    static MACHINE: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    MACHINE.get_or_init(describe_machine)
}

fn describe_machine() -> Vec<(&'static str, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|line| line.starts_with("MemTotal"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kib / 1048576.0))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|load| {
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned());

    vec![
        (
            "measured",
            command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        ),
        (
            "machine",
            format!("{cpu}, {threads} threads, {memory} memory"),
        ),
        ("load average at start (1, 5, 15 min)", load),
        ("kernel", command_output("uname", &["-sr"])),
        ("rustc", command_output("rustc", &["--version"])),
        ("commit", commit()),
    ]
}

fn commit() -> String {
    let root = project_root();
    let root = root.to_string_lossy();
    let head = command_output("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["-C", &root, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|output| !output.stdout.is_empty());
    if dirty {
        format!("{head} with uncommitted changes")
    } else {
        head
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
