//! End-to-end tests of the `grounded` binary, run as a user runs it, on
//! chapters of the Rust book's Markdown sources from `../shared/data`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Chapters copied into each test's corpus: enough to tell topics apart,
/// few enough to embed in well under a minute.
const CHAPTERS: &[&str] = &[
    "ch04-00-understanding-ownership.md",
    "ch04-01-what-is-ownership.md",
    "ch04-02-references-and-borrowing.md",
    "ch16-00-concurrency.md",
    "ch16-01-threads.md",
    "ch16-03-shared-state.md",
    "ch08-02-strings.md",
];

fn book_sources() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/rust-book-md/src");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent (shared test data)", dir.display());
        None
    }
}

/// A data directory and a corpus of a few chapters, both temporary.
struct Workspace {
    _root: tempfile::TempDir,
    data: PathBuf,
    corpus: PathBuf,
}

impl Workspace {
    fn new(sources: &Path) -> Self {
        let root = tempfile::tempdir().unwrap();
        let corpus = root.path().join("book");
        std::fs::create_dir_all(&corpus).unwrap();
        for chapter in CHAPTERS {
            std::fs::copy(sources.join(chapter), corpus.join(chapter)).unwrap();
        }
        let data = root.path().join("data");
        Self {
            _root: root,
            data,
            corpus,
        }
    }

    fn grounded(&self, args: &[&str]) -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_grounded"))
            .args(args)
            .env("GROUNDED_DATA_DIR", &self.data)
            .env_remove("GROUNDED_COLLECTION")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "grounded {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    fn ingest(&self, extra: &[&str]) -> Value {
        let corpus = self.corpus.to_str().unwrap();
        let mut args = vec!["ingest", corpus, "--json"];
        args.extend_from_slice(extra);
        self.grounded(&args)
    }

    fn search(&self, query: &str) -> Vec<Value> {
        let result = self.grounded(&["search", query, "-k", "5", "--json"]);
        result["hits"].as_array().unwrap().clone()
    }
}

fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {report}"))
}

fn file_name(hit: &Value) -> String {
    let path = hit["source_path"].as_str().unwrap();
    Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn ingest_is_incremental_search_finds_chapters_and_prune_removes() {
    let Some(sources) = book_sources() else {
        return;
    };
    let workspace = Workspace::new(&sources);

    let first = workspace.ingest(&[]);
    assert_eq!(count(&first, "documents_new"), CHAPTERS.len() as u64);
    assert_eq!(count(&first, "documents_failed"), 0);
    let chunks = count(&first, "chunks");
    assert!(chunks > 50, "{first}");
    assert!(count(&first, "embeddings_computed") > 0);

    let second = workspace.ingest(&[]);
    assert_eq!(count(&second, "embeddings_computed"), 0, "{second}");
    assert_eq!(count(&second, "documents_changed"), 0);
    assert_eq!(count(&second, "documents_unchanged"), CHAPTERS.len() as u64);
    assert_eq!(count(&second, "chunks"), 0);

    let ownership = workspace.search("what is ownership");
    assert!(
        file_name(&ownership[0]).starts_with("ch04-"),
        "{ownership:?}"
    );
    let threads = workspace.search("how do I share data between threads");
    assert!(file_name(&threads[0]).starts_with("ch16-"), "{threads:?}");
    for hit in ownership.iter().chain(&threads) {
        assert!(hit["line_start"].as_u64().unwrap() >= 1);
        assert!(hit["line_end"].as_u64() >= hit["line_start"].as_u64());
    }

    edit_re_embeds_only_changed_chunks(&workspace);
    prune_removes_a_deleted_file(&workspace);
    other_chunk_sizes_rechunk_every_document(&workspace);
}

fn edit_re_embeds_only_changed_chunks(workspace: &Workspace) {
    let strings = workspace.corpus.join("ch08-02-strings.md");
    let mut text = std::fs::read_to_string(&strings).unwrap();
    text.push_str("\n\nZebra crossings are painted in quokka purple in this edited paragraph.\n");
    std::fs::write(&strings, text).unwrap();

    let report = workspace.ingest(&[]);
    assert_eq!(count(&report, "documents_changed"), 1, "{report}");
    assert_eq!(
        count(&report, "documents_unchanged"),
        CHAPTERS.len() as u64 - 1
    );
    let computed = count(&report, "embeddings_computed");
    let written = count(&report, "chunks");
    assert!(
        (1..=2).contains(&computed),
        "re-embedded {computed} of {written} chunks"
    );
    assert!(written > computed * 5, "{report}");

    let hits = workspace.search("Zebra crossings are painted in quokka purple");
    let edited = hits
        .iter()
        .find(|hit| hit["text"].as_str().unwrap().contains("quokka purple"));
    let edited = edited.unwrap_or_else(|| panic!("the edited chunk is not among {hits:?}"));
    assert_eq!(file_name(edited), "ch08-02-strings.md");
}

fn prune_removes_a_deleted_file(workspace: &Workspace) {
    std::fs::remove_file(workspace.corpus.join("ch08-02-strings.md")).unwrap();

    let without_prune = workspace.ingest(&[]);
    assert_eq!(count(&without_prune, "documents_removed"), 0);
    let report = workspace.ingest(&["--prune"]);
    assert_eq!(count(&report, "documents_removed"), 1, "{report}");

    let hits = workspace.search("zebra crossings painted quokka purple");
    assert!(
        hits.iter()
            .all(|hit| file_name(hit) != "ch08-02-strings.md"),
        "{hits:?}"
    );
}

fn other_chunk_sizes_rechunk_every_document(workspace: &Workspace) {
    let report = workspace.ingest(&["--chunk-tokens", "128", "--chunk-overlap", "16"]);
    let remaining = CHAPTERS.len() as u64 - 1;
    assert_eq!(count(&report, "documents_changed"), remaining, "{report}");
    assert!(count(&report, "embeddings_computed") > 0);

    let again = workspace.ingest(&["--chunk-tokens", "128", "--chunk-overlap", "16"]);
    assert_eq!(count(&again, "documents_unchanged"), remaining, "{again}");
}

#[test]
fn ask_answers_with_citations_of_retrieved_sources() {
    let Some(sources) = book_sources() else {
        return;
    };
    let workspace = Workspace::new(&sources);
    workspace.ingest(&[]);

    let answer = workspace.grounded(&["ask", "What is a data race?", "--json"]);
    let text = answer["text"].as_str().unwrap();
    let citations = answer["citations"].as_array().unwrap();
    assert!(!citations.is_empty(), "{answer}");
    for citation in citations {
        let marker = format!("[{}]", citation["number"]);
        assert!(text.contains(&marker), "{marker} not in {text}");
    }
    assert!(text.to_lowercase().contains("data race"), "{text}");
}

/// Runs `grounded` expecting it to fail; returns its one-line error.
fn failing(data: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_grounded"))
        .args(args)
        .env("GROUNDED_DATA_DIR", data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert!(!output.status.success(), "grounded {args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_input_gets_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let missing = root.path().join("no-such-dir");
    let missing = missing.to_str().unwrap();
    let here = root.path().to_str().unwrap();

    let stderr = failing(&data, &["ingest", here, "--collection", "bad name!"]);
    assert!(stderr.contains("invalid collection name"), "{stderr}");

    let stderr = failing(&data, &["ingest", missing]);
    assert_eq!(stderr, format!("error: path {missing} does not exist"));

    let stderr = failing(&data, &["ingest", here, "--chunk-overlap", "300"]);
    assert!(stderr.contains("--chunk-overlap 300 must be smaller than --chunk-tokens 254"));

    let stderr = failing(&data, &["search", "x", "-k", "0"]);
    assert!(stderr.contains("0 is out of range"), "{stderr}");

    std::fs::write(root.path().join("not-a-dir"), "x").unwrap();
    let stderr = failing(&root.path().join("not-a-dir"), &["search", "x"]);
    assert!(stderr.ends_with("is not a directory"), "{stderr}");
}

/// The store's record of a data directory, read by the test itself.
async fn open_store(data: &Path) -> grounded_store::SqliteStore {
    grounded_store::SqliteStore::open(&data.join("grounded.db"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_ingest_shows_no_partial_document_and_the_next_run_completes_it() {
    use grounded_index::VectorIndex;
    use grounded_store::MetadataStore;

    let Some(sources) = book_sources() else {
        return;
    };
    let workspace = Workspace::new(&sources);
    let corpus = workspace.corpus.to_str().unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_grounded"))
        .args(["ingest", corpus, "--batch-chunks", "8", "--json"])
        .env("GROUNDED_DATA_DIR", &workspace.data)
        .env_remove("GROUNDED_COLLECTION")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_ready_documents(&workspace.data, 2).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let store = open_store(&workspace.data).await;
    let counts = store.collection_counts("default").await.unwrap();
    assert!(
        (counts.ready_documents as usize) < CHAPTERS.len(),
        "the kill came after the ingest finished: {counts:?}"
    );
    store.close().await;

    for query in [
        "what is ownership",
        "threads",
        "strings",
        "borrowing",
        "mutex",
    ] {
        let hits = workspace.grounded(&["search", query, "-k", "20", "--json"]);
        let store = open_store(&workspace.data).await;
        for hit in hits["hits"].as_array().unwrap() {
            let document = store.find_document("default", hit["source_path"].as_str().unwrap());
            let document = document
                .await
                .unwrap()
                .expect("a hit of an unknown document");
            let committed: Vec<String> = store
                .document_chunks(document.id)
                .await
                .unwrap()
                .iter()
                .map(|chunk| chunk.id.to_string())
                .collect();
            let chunk_id = hit["chunk_id"].as_str().unwrap().to_string();
            assert!(
                committed.contains(&chunk_id),
                "uncommitted chunk {chunk_id} was returned"
            );
        }
        store.close().await;
    }

    let report = workspace.ingest(&[]);
    let finished = count(&report, "documents_new") + count(&report, "documents_changed");
    assert_eq!(
        finished + count(&report, "documents_unchanged"),
        CHAPTERS.len() as u64
    );
    assert!(finished >= 1, "{report}");

    let store = open_store(&workspace.data).await;
    let counts = store.collection_counts("default").await.unwrap();
    assert_eq!(
        counts.ready_documents as usize,
        CHAPTERS.len(),
        "{counts:?}"
    );
    assert_eq!(counts.indexing_documents, 0);
    let index = grounded_index::EdgeIndex::open(&workspace.data.join("index")).unwrap();
    let points = index.count("default").await.unwrap();
    assert_eq!(
        points as u64, counts.chunks,
        "the index holds points the store does not know"
    );
}

/// Polls the store of a running ingest until `wanted` documents are ready.
async fn wait_for_ready_documents(data: &Path, wanted: u64) {
    use grounded_store::MetadataStore;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        let path = data.join("grounded.db");
        // Opening can race with the ingest's own first migration; retry then.
        if let (true, Ok(store)) = (
            path.exists(),
            grounded_store::SqliteStore::open(&path).await,
        ) {
            let counts = store.collection_counts("default").await;
            store.close().await;
            if counts.is_ok_and(|counts| counts.ready_documents >= wanted) {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the ingest never made {wanted} documents ready");
}
