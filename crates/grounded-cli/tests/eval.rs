//! `grounded eval --dataset` on a tiny BEIR benchmark written to a temporary
//! directory: every measure per mode, in the printed table and JSON and in
//! the report files, with the answers of `--answers`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::failing;

const MEASURES: [&str; 5] = [
    "ndcg_at_10",
    "recall_at_10",
    "recall_at_100",
    "mrr_at_10",
    "map_at_100",
];

/// Four documents on unrelated topics, and five queries: q1 and q2 judged
/// on the document they are about, q3 judged on a document the corpus lacks
/// (so it scores 0 in every measure, yet counts), q4 not judged and q5
/// judged not relevant only (both left out). Every measure's mean is so
/// (1 + 1 + 0) / 3 in every mode.
fn write_benchmark(dir: &Path) {
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let corpus = [
        (
            "d1",
            "Lighthouses",
            "A lighthouse keeper trims the lamp wick every evening on the rocky coast.",
        ),
        (
            "d2",
            "Sourdough",
            "Sourdough bread rises with a starter of wild yeast and flour.",
        ),
        (
            "d3",
            "Glaciers",
            "Glaciers carve valleys as the ice creeps slowly downhill.",
        ),
        (
            "d4",
            "Beekeeping",
            "Beekeepers smoke the hive before lifting frames of honeycomb.",
        ),
    ];
    let lines: Vec<String> = corpus
        .iter()
        .map(|(id, title, text)| {
            serde_json::json!({"_id": id, "title": title, "text": text}).to_string()
        })
        .collect();
    std::fs::write(dir.join("corpus.jsonl"), lines.join("\n")).unwrap();

    let queries = [
        ("q1", "who trims the lighthouse lamp"),
        ("q2", "wild yeast starter for bread"),
        ("q3", "how glaciers carve valleys"),
        ("q4", "smoking a beehive"),
        ("q5", "honeycomb frames"),
    ];
    let lines: Vec<String> = queries
        .iter()
        .map(|(id, text)| serde_json::json!({"_id": id, "text": text}).to_string())
        .collect();
    std::fs::write(dir.join("queries.jsonl"), lines.join("\n")).unwrap();
    std::fs::write(
        dir.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq3\td9\t1\nq5\td4\t0\n",
    )
    .unwrap();
}

/// A benchmark and a data directory, both temporary.
struct Bench {
    root: tempfile::TempDir,
    dataset: PathBuf,
    data: PathBuf,
}

impl Bench {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let dataset = root.path().join("tiny");
        write_benchmark(&dataset);
        let data = root.path().join("data");
        Self {
            root,
            dataset,
            data,
        }
    }

    /// `grounded eval --dataset <tiny> ARGS`, which must succeed.
    fn eval(&self, args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_grounded"))
            .args(["eval", "--dataset", self.dataset.to_str().unwrap()])
            .args(args)
            .env("GROUNDED_DATA_DIR", &self.data)
            .env_remove("GROUNDED_DATABASE_URL")
            .env_remove("GROUNDED_QDRANT_URL")
            .env_remove("GROUNDED_EVAL_OUTPUT")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

/// The commit this test is built from, as `build.rs` should have found it.
fn head_commit() -> String {
    let output = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match output {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
        _ => "unknown".to_owned(),
    }
}

/// The report files of `dir`: its one `.md` and its one `.json`.
fn report_files(dir: &Path) -> (PathBuf, PathBuf) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let name = |path: &Path| path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name(&files[0]).starts_with("tiny-test-"), "{files:?}");
    assert!(name(&files[0]).ends_with("Z.json"), "{files:?}");
    assert_eq!(
        files[0].with_extension("md"),
        files[1],
        "one stem for both: {files:?}"
    );
    (files[1].clone(), files[0].clone())
}

#[test]
fn eval_reports_every_measure_per_mode_and_writes_the_run() {
    let bench = Bench::new();
    let runs = bench.root.path().join("runs");
    let output = bench.eval(&[
        "--json",
        "--answers",
        "2",
        "--llm",
        "extractive",
        "--output",
        runs.to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(report["documents"], 4, "{report}");
    assert_eq!(report["queries"], 3, "{report}");
    assert_eq!(report["commit"], head_commit().as_str(), "{report}");
    assert!(report["dirty"].is_boolean() || report["commit"] == "unknown");
    assert!(
        report["model"].as_str().unwrap().contains("MiniLM"),
        "{report}"
    );
    assert_eq!(report["chunking"]["max_tokens"], 254, "{report}");
    assert_eq!(report["rrf_k"], 10, "{report}");
    assert!(report["threads"].as_u64().unwrap() >= 1, "{report}");

    let modes = report["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(names, ["dense", "sparse", "hybrid"], "{report}");
    for mode in modes {
        assert_eq!(mode["queries"], 3, "{mode}");
        for measure in MEASURES {
            let value = mode[measure].as_f64().unwrap();
            assert!((value - 2.0 / 3.0).abs() < 1e-9, "{measure}: {mode}");
        }
        let with = &mode["latency_ms"];
        let without = &mode["latency_without_embedding_ms"];
        assert!(with["p50"].as_f64().unwrap() > 0.0, "{mode}");
        assert!(with["p50"].as_f64() <= with["p95"].as_f64(), "{mode}");
        assert!(without["p50"].as_f64() <= without["p95"].as_f64(), "{mode}");
    }

    // q1 and q2 are answered; each cites the one document about it.
    let answers = &report["answers"];
    assert_eq!(answers["produced_by"], "extractive", "{report}");
    assert_eq!(answers["answers"], 2, "{report}");
    assert_eq!(answers["cites_relevant"], 1.0, "{report}");
    assert_eq!(answers["ungrounded"], 0.0, "{report}");

    let (markdown_file, json_file) = report_files(&runs);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&markdown_file.display().to_string()),
        "{stderr}"
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    assert_eq!(written, report);
    let markdown = std::fs::read_to_string(&markdown_file).unwrap();
    for field in [report["model"].as_str().unwrap(), &head_commit()] {
        assert!(markdown.contains(field), "{field} missing from\n{markdown}");
    }
    assert!(
        markdown.contains("| extractive | 2 | 100.0 % | 0.0 % |"),
        "{markdown}"
    );
}

/// Without --json the table is printed: a header naming the five measures
/// and a row per mode asked for, the run written under the data directory.
#[test]
fn eval_prints_a_markdown_table_of_the_modes_asked_for() {
    let bench = Bench::new();
    let output = bench.eval(&["--mode", "sparse", "--mode", "hybrid"]);
    let stdout = String::from_utf8_lossy(&output.stdout);

    let header = stdout
        .lines()
        .find(|line| line.starts_with("| mode |"))
        .unwrap_or_else(|| panic!("no table in\n{stdout}"));
    for name in ["nDCG@10", "Recall@10", "Recall@100", "MRR@10", "MAP@100"] {
        assert!(header.contains(&format!("| {name} |")), "{header}");
    }
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("| sparse |") || line.starts_with("| hybrid |"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in rows {
        assert!(
            row.contains("| 0.6667 | 0.6667 | 0.6667 | 0.6667 | 0.6667 |"),
            "{row}"
        );
    }
    assert!(!stdout.contains("| dense |"), "{stdout}");

    let (markdown_file, _) = report_files(&bench.data.join("eval/runs"));
    assert_eq!(
        std::fs::read_to_string(markdown_file).unwrap(),
        stdout.trim_end().to_owned() + "\n"
    );
}

#[test]
fn eval_needs_a_benchmark_and_only_one() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let stderr = failing(&data, &["eval"]);
    assert!(stderr.contains("--dataset <DIR>"), "{stderr}");
    let stderr = failing(&data, &["eval", "--dataset", "a", "b"]);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn malformed_judgments_and_repeated_ids_are_named() {
    let bench = Bench::new();
    let dataset = bench.dataset.to_str().unwrap();
    let judgments = bench.dataset.join("qrels/test.tsv");
    std::fs::write(&judgments, "query-id\tcorpus-id\tscore\nq1 d1 1\n").unwrap();
    let stderr = failing(&bench.data, &["eval", "--dataset", dataset]);
    assert!(
        stderr.contains("test.tsv:2: expected query-id<TAB>corpus-id<TAB>score"),
        "{stderr}"
    );

    // A first line scored 1.0 is a judgment with a bad score, not a header.
    std::fs::write(&judgments, "q1\td1\t1.0\nq2\td2\t1\n").unwrap();
    let stderr = failing(&bench.data, &["eval", "--dataset", dataset]);
    assert!(
        stderr.contains("test.tsv:1: the score \"1.0\" is not a whole number"),
        "{stderr}"
    );
    std::fs::write(&judgments, "q1\td1\t0\nq1\td1\t1\n").unwrap();
    let stderr = failing(&bench.data, &["eval", "--dataset", dataset]);
    assert!(
        stderr.contains("test.tsv:2: document \"d1\" is judged twice for query \"q1\""),
        "{stderr}"
    );
    let stderr = failing(
        &bench.data,
        &["eval", "--dataset", dataset, "--split", "dev"],
    );
    assert!(
        stderr.contains("qrels/ has test.tsv: choose one with --split"),
        "{stderr}"
    );

    write_benchmark(&bench.dataset);
    let stderr = failing(
        &bench.data,
        &["eval", "--dataset", dataset, "--limit-queries", "0"],
    );
    assert!(
        stderr.contains("--limit-queries 0 leaves no query"),
        "{stderr}"
    );
    let file = bench.root.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let stderr = failing(
        &bench.data,
        &[
            "eval",
            "--dataset",
            dataset,
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        stderr.contains("--output must name a directory"),
        "{stderr}"
    );

    let queries = bench.dataset.join("queries.jsonl");
    let first = std::fs::read_to_string(&queries)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(&queries, format!("{first}\n{first}\n")).unwrap();
    let stderr = failing(&bench.data, &["eval", "--dataset", dataset]);
    assert!(
        stderr.contains("the query id \"q1\" appears twice"),
        "{stderr}"
    );

    write_benchmark(&bench.dataset);
    let corpus = bench.dataset.join("corpus.jsonl");
    let first = std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(&corpus, format!("{first}\n{first}\n")).unwrap();
    let stderr = failing(&bench.data, &["eval", "--dataset", dataset]);
    assert!(
        stderr.contains("the document id \"d1\" appears twice"),
        "{stderr}"
    );
}
