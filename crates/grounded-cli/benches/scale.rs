//! Qdrant Edge at sizes beyond a book: how long building a collection of
//! synthetic chunks takes, how much memory and disk it needs, and how fast a
//! search of it is, as `just bench` prints them and writes them to
//! `bench/results/scale.md`.
//!
//! Sizes come from `GROUNDED_BENCH_SCALE` (points, comma-separated; default
//! 10000,100000). 1,000,000 is asked for explicitly: upserts into one Edge
//! shard slow down as it fills, and building that many takes hours on two
//! cores. Each size gets a fresh [`EdgeIndex`] in the target
//! directory, filled through the public API exactly as an ingest fills it:
//! points with grounded's layout (a random unit vector of 384 dimensions,
//! the BM25 vector of a synthetic text of about a chunk's length, the
//! payload of a chunk), upserted 1,024 at a time. Then random queries
//! (`GROUNDED_BENCH_SCALE_QUERIES`, default 100 a mode) are searched for the
//! top 10, and the collection is closed and opened again, as every
//! `grounded search` command and every ingest batch does.
//!
//! `EdgeIndex` never builds an HNSW index (it does not call Qdrant Edge's
//! `optimize`), so every dense search here is exact: the figures show where
//! that stops being fast enough.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use grounded_core::{ChunkId, ChunkLocation, DocumentId, DocumentKind};
use grounded_index::{
    CollectionSpec, DEFAULT_RRF_K, EdgeIndex, Point, PointFilter, PointPayload, Query, SearchMode,
    SparseVector, VectorIndex, english_bm25, path_prefixes,
};
use support::{Report, Summary};

const COLLECTION: &str = "scale";
const DIMENSION: usize = 384;

/// Points per upsert call.
const BATCH: usize = 1024;

/// Words in a synthetic chunk's text: about 1,000 characters, what a chunk
/// of 254 word-pieces holds.
const WORDS_PER_CHUNK: usize = 150;

/// Distinct words, drawn with a heavy head as real text is.
const VOCABULARY: usize = 20_000;

const CHUNKS_PER_DOCUMENT: usize = 8;

const TOP_K: usize = 10;

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "te", "vi", "zo", "pa", "de", "fu", "gi", "ho", "ju", "ba",
    "ce", "do", "li", "mo", "nu", "ri", "su", "to",
];

/// A small deterministic generator (SplitMix64), so that every run builds
/// the same collection.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A vector of uniform components, scaled to length 1.
    fn vector(&mut self) -> Vec<f32> {
        let mut vector: Vec<f32> = (0..DIMENSION)
            .map(|_| (self.unit() * 2.0 - 1.0) as f32)
            .collect();
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        vector.iter_mut().for_each(|x| *x /= norm);
        vector
    }

    /// A word; low ranks far more often than high ones (log-uniform ranks).
    fn word(&mut self) -> String {
        let rank = (VOCABULARY as f64).powf(self.unit()) as usize - 1;
        word(rank)
    }

    fn text(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| self.word())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The word of a rank: its digits in base 24 as syllables.
fn word(mut rank: usize) -> String {
    let mut word = String::new();
    loop {
        word.push_str(SYLLABLES[rank % SYLLABLES.len()]);
        rank /= SYLLABLES.len();
        if rank == 0 {
            return word;
        }
    }
}

/// The `i`th synthetic chunk, laid out as the ingest lays out a real one.
fn point(rng: &mut Rng, i: usize) -> Point {
    let source_path = format!(
        "synthetic/{:03}/doc-{}.txt",
        i % 1000,
        i / CHUNKS_PER_DOCUMENT
    );
    let document_id = DocumentId::new(COLLECTION, &source_path);
    let ordinal = (i % CHUNKS_PER_DOCUMENT) as u32;
    let text = rng.text(WORDS_PER_CHUNK);
    let line_start = ordinal * 12 + 1;
    Point {
        id: ChunkId::new(document_id, ordinal, &i.to_string()),
        vector: rng.vector(),
        sparse: english_bm25().document(&text),
        payload: PointPayload {
            document_id,
            path_prefixes: path_prefixes(&source_path),
            source_path,
            kind: DocumentKind::Text,
            title: Some(format!("Document {}", i / CHUNKS_PER_DOCUMENT)),
            ordinal,
            text,
            location: ChunkLocation {
                line_start,
                line_end: line_start + 14,
                section: Vec::new(),
                anchor: None,
            },
            tags: Vec::new(),
        },
    }
}

/// What one size came to.
struct Measured {
    points: usize,
    generate: Duration,
    upsert: Upserts,
    build_peak: Option<u64>,
    resident_after_build: Option<u64>,
    disk: (u64, u64),
    search_peak: Option<u64>,
    searches: Vec<(SearchMode, Summary)>,
    reopen: Duration,
    first_search_after_reopen: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes = support::env_list("GROUNDED_BENCH_SCALE", &[10_000, 100_000])?;
    let queries = support::env_usize("GROUNDED_BENCH_SCALE_QUERIES")?.unwrap_or(100);
    support::machine();
    let root = support::scratch_root().join("scale");
    std::fs::create_dir_all(&root)?;
    let mut measured = Vec::new();
    for size in sizes {
        let dir = tempfile::tempdir_in(&root)?;
        measured.push(measure(dir.path(), size, queries).await?);
        // Saved after each size, so that a run stopped at a larger one
        // keeps the figures of the smaller ones.
        write_report(Report::quiet(NAME, TITLE), &measured, queries)?;
    }
    write_report(Report::new(NAME, TITLE), &measured, queries)?;
    Ok(())
}

const NAME: &str = "scale";
const TITLE: &str = "Qdrant Edge at scale (synthetic chunks)";

fn write_report(mut report: Report, measured: &[Measured], queries: usize) -> anyhow::Result<()> {
    report.line(&format!(
        "- points: a random unit vector of {DIMENSION} dimensions, the BM25 vector of a text of \
         {WORDS_PER_CHUNK} synthetic words (vocabulary {VOCABULARY}, heavy-headed), a chunk's \
         payload; upserted {BATCH} at a time through `EdgeIndex` into a fresh shard"
    ));
    report.line(&format!(
        "- search: {queries} random queries a mode, top {TOP_K}; dense exact (no HNSW: \
         `EdgeIndex` never optimizes), sparse of 3 random words, hybrid of both"
    ));
    report.line("");
    report_measured(&mut report, measured);
    report.save()?;
    Ok(())
}

async fn measure(dir: &Path, size: usize, queries: usize) -> anyhow::Result<Measured> {
    eprintln!("building {size} points in {}", dir.display());
    support::reset_peak_memory();
    let index = EdgeIndex::open(dir)?;
    index
        .ensure_collection(
            COLLECTION,
            CollectionSpec {
                dimension: DIMENSION,
            },
        )
        .await?;
    let mut rng = Rng(size as u64);
    let (generate, upsert) = fill(&index, &mut rng, size).await?;
    let count = index.count(COLLECTION).await?;
    anyhow::ensure!(
        count == size,
        "the collection holds {count} points, not {size}"
    );
    let build_peak = support::peak_memory();
    let resident_after_build = support::current_memory();

    support::reset_peak_memory();
    let mut searches = Vec::new();
    for mode in [SearchMode::Dense, SearchMode::Sparse, SearchMode::Hybrid] {
        eprintln!("searching {size} points, {}", mode.as_str());
        searches.push((mode, search(&index, &mut rng, mode, queries).await?));
    }
    let search_peak = support::peak_memory();

    index.release(COLLECTION).await?;
    drop(index);
    let disk = support::disk_usage(dir);
    let started = Instant::now();
    let index = EdgeIndex::open(dir)?;
    index.count(COLLECTION).await?;
    let reopen = started.elapsed();
    let started = Instant::now();
    index
        .search(COLLECTION, &random_query(&mut rng, SearchMode::Dense))
        .await?;
    let first_search_after_reopen = started.elapsed();

    Ok(Measured {
        points: size,
        generate,
        upsert,
        build_peak,
        resident_after_build,
        disk,
        search_peak,
        searches,
        reopen,
        first_search_after_reopen,
    })
}

/// The time of each upsert call, in order.
struct Upserts(Vec<Duration>);

impl Upserts {
    fn total(&self) -> Duration {
        self.0.iter().sum()
    }

    /// Points per second over the first or the last tenth of the calls.
    fn rate_of_tenth(&self, last: bool) -> f64 {
        let tenth = (self.0.len() / 10).max(1);
        let calls = if last {
            &self.0[self.0.len() - tenth..]
        } else {
            &self.0[..tenth]
        };
        (calls.len() * BATCH) as f64 / calls.iter().sum::<Duration>().as_secs_f64()
    }
}

/// Upserts `size` points; the time spent making them and each upsert's.
async fn fill(
    index: &EdgeIndex,
    rng: &mut Rng,
    size: usize,
) -> anyhow::Result<(Duration, Upserts)> {
    let mut generate = Duration::ZERO;
    let mut upserts = Vec::with_capacity(size / BATCH + 1);
    for start in (0..size).step_by(BATCH) {
        let started = Instant::now();
        let points: Vec<Point> = (start..size.min(start + BATCH))
            .map(|i| point(rng, i))
            .collect();
        generate += started.elapsed();

        let started = Instant::now();
        index.upsert(COLLECTION, points).await?;
        upserts.push(started.elapsed());
        if upserts.len() % 100 == 0 {
            let recent: Duration = upserts[upserts.len() - 100..].iter().sum();
            eprintln!(
                "  {} points, the last {} at {:.0} points/s",
                start + BATCH,
                100 * BATCH,
                (100 * BATCH) as f64 / recent.as_secs_f64()
            );
        }
    }
    Ok((generate, Upserts(upserts)))
}

fn random_query(rng: &mut Rng, mode: SearchMode) -> Query {
    let terms = rng.text(3);
    Query {
        mode,
        dense: rng.vector(),
        sparse: match mode {
            SearchMode::Dense => SparseVector::default(),
            SearchMode::Sparse | SearchMode::Hybrid => english_bm25().query(&terms),
        },
        filter: PointFilter::default(),
        limit: TOP_K,
        min_score: None,
        rrf_k: DEFAULT_RRF_K,
    }
}

async fn search(
    index: &EdgeIndex,
    rng: &mut Rng,
    mode: SearchMode,
    queries: usize,
) -> anyhow::Result<Summary> {
    for _ in 0..3 {
        index.search(COLLECTION, &random_query(rng, mode)).await?;
    }
    let mut times = Vec::with_capacity(queries);
    for _ in 0..queries {
        let query = random_query(rng, mode);
        let started = Instant::now();
        index.search(COLLECTION, &query).await?;
        times.push(started.elapsed());
    }
    Ok(Summary::of(&times))
}

fn report_measured(report: &mut Report, measured: &[Measured]) {
    report.line("## Build");
    report.line("");
    let rows: Vec<Vec<String>> = measured
        .iter()
        .map(|m| {
            vec![
                m.points.to_string(),
                format!("{:.1}", m.upsert.total().as_secs_f64()),
                format!("{:.0}", m.points as f64 / m.upsert.total().as_secs_f64()),
                format!("{:.0}", m.upsert.rate_of_tenth(false)),
                format!("{:.0}", m.upsert.rate_of_tenth(true)),
                format!("{:.1}", m.generate.as_secs_f64()),
                support::mib(m.build_peak),
                support::mib(m.resident_after_build),
                format!(
                    "{} ({})",
                    support::mib(Some(m.disk.0)),
                    support::mib(Some(m.disk.1))
                ),
                format!("{:.2}", m.reopen.as_secs_f64()),
                format!("{:.1}", m.first_search_after_reopen.as_secs_f64() * 1000.0),
            ]
        })
        .collect();
    report.table(
        &[
            "points",
            "upsert s",
            "points/s",
            "points/s, first tenth",
            "points/s, last tenth",
            "generating s",
            "peak RSS MiB",
            "RSS after MiB",
            "disk MiB (apparent)",
            "reopen s",
            "first search after reopen ms",
        ],
        &rows,
    );
    report.line(
        "Upsert is the time inside `VectorIndex::upsert` (each call flushes); generating the \
         points (vectors, BM25 of the text) is not in it. Peak RSS is the process's high-water \
         mark while building (VmHWM, reset first). Reopen is `EdgeIndex::open` and a count, \
         which loads the shard, as each `grounded search` command and each ingest batch after \
         `release` does. No HNSW index is built: `EdgeIndex` exposes no optimize step.",
    );
    report.line("");

    report.line(&format!("## Search (top {TOP_K}, one query at a time)"));
    report.line("");
    let rows: Vec<Vec<String>> = measured
        .iter()
        .flat_map(|m| {
            m.searches.iter().map(|(mode, s)| {
                vec![
                    m.points.to_string(),
                    mode.as_str().to_owned(),
                    s.count.to_string(),
                    format!("{:.2}", s.p50_ms),
                    format!("{:.2}", s.p95_ms),
                    format!("{:.2}", s.p99_ms),
                    support::mib(m.search_peak),
                ]
            })
        })
        .collect();
    report.table(
        &[
            "points",
            "mode",
            "queries",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "peak RSS while searching MiB",
        ],
        &rows,
    );
}
