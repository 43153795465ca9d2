//! End-to-end tests of the `grounded` binary, run as a user runs it, on
//! chapters of the Rust book's Markdown sources from `../shared/data`.
//! Tests on Postgres use a scratch database on the server that
//! `GROUNDED_TEST_DATABASE_URL` names, and skip with a message without one.

mod access;
mod eval;
mod keys;

use std::path::{Path, PathBuf};
use std::process::Command;

use grounded_index::VectorIndex;
use grounded_store::MetadataStore;
use grounded_store::scratch::{ScratchDatabase, test_server_url};
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

/// A data directory and a corpus of a few chapters, both temporary, and the
/// metadata store: the data directory's SQLite file, or a Postgres database.
struct Workspace {
    _root: tempfile::TempDir,
    data: PathBuf,
    corpus: PathBuf,
    database_url: Option<String>,
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
            database_url: None,
        }
    }

    /// The same, with its metadata in the Postgres database at `url`.
    fn on_postgres(sources: &Path, url: &str) -> Self {
        Self {
            database_url: Some(url.to_owned()),
            ..Self::new(sources)
        }
    }

    /// `grounded ARGS` against this workspace.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_grounded"));
        command
            .args(args)
            .env("GROUNDED_DATA_DIR", &self.data)
            .env_remove("GROUNDED_COLLECTION");
        match &self.database_url {
            Some(url) => command.env("GROUNDED_DATABASE_URL", url),
            None => command.env_remove("GROUNDED_DATABASE_URL"),
        };
        command
    }

    /// The metadata store, opened by the test itself.
    async fn open_store(&self) -> Result<Box<dyn MetadataStore>, grounded_store::StoreError> {
        match &self.database_url {
            Some(url) => grounded_store::open_store(url).await,
            None => {
                let path = self.data.join("grounded.db");
                let store = grounded_store::SqliteStore::open(&path).await?;
                Ok(Box::new(store))
            }
        }
    }

    /// How many points the collection's vector index holds.
    async fn index_points(&self) -> usize {
        let index = grounded_index::EdgeIndex::open(&self.data.join("index")).unwrap();
        index.count("default").await.unwrap()
    }

    fn grounded(&self, args: &[&str]) -> Value {
        let output = self.command(args).output().unwrap();
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

    let outcome = workspace.grounded(&[
        "ask",
        "What is a data race?",
        "--llm",
        "extractive",
        "--json",
    ]);
    let answer = &outcome;
    assert_eq!(answer["grounded"], true, "{outcome}");
    let text = answer["answer"].as_str().unwrap();
    let citations = answer["citations"].as_array().unwrap();
    assert!(!citations.is_empty(), "{answer}");
    for citation in citations {
        let marker = format!("[{}]", citation["number"]);
        assert!(text.contains(&marker), "{marker} not in {text}");
        assert!(
            !citation["snippet"].as_str().unwrap().is_empty(),
            "{citation}"
        );
    }
    assert!(text.to_lowercase().contains("data race"), "{text}");

    serve_answers_over_http_and_stops_gracefully(&workspace);

    modes_and_filters_narrow_the_hits(&workspace);
    collections_are_listed_and_deleted_whole(&workspace);
}

/// The local model answers a question about the book through the whole
/// pipeline: usage and finish reason reported, and the answer is grounded
/// exactly when it cites a source, every cited number naming a source of
/// its prompt. (SmolLM2-135M rarely cites, so "grounded" is not asserted.)
#[test]
fn ask_with_the_local_model_answers_and_cites_only_given_sources() {
    let Some(sources) = book_sources() else {
        return;
    };
    let workspace = Workspace::new(&sources);
    workspace.ingest(&[]);

    for attribution in ["off", "0.8"] {
        let both = workspace.grounded(&[
            "ask",
            "What does a Mutex do?",
            "--llm",
            "local",
            "--max-tokens",
            "80",
            "--attribution",
            attribution,
            "--json",
            "--show-prompt",
        ]);
        let answer = &both["answer"];
        assert_eq!(
            answer["produced_by"], "SmolLM2-135M-Instruct-Q4_1",
            "{both}"
        );
        assert!(!answer["answer"].as_str().unwrap().is_empty(), "{both}");
        let user = both["prompt"][1]["content"].as_str().unwrap();
        let text = answer["answer"].as_str().unwrap();
        let citations = answer["citations"].as_array().unwrap();
        assert_eq!(answer["grounded"], !citations.is_empty(), "{both}");
        for citation in citations {
            let number = citation["number"].as_u64().unwrap();
            assert!(text.contains(&format!("[{number}]")), "{both}");
            assert!(
                user.contains(&format!("<source id=\"{number}\">")),
                "[{number}] names no source"
            );
        }
        if attribution == "off" {
            assert_eq!(answer["attributed_markers"], 0, "{both}");
        }
        let written = answer["usage"]["completion_tokens"].as_u64().unwrap();
        assert!((1..=80).contains(&written), "{both}");
        let reason = answer["finish_reason"].as_str().unwrap();
        assert!(
            reason == "stop" || (reason == "length" && written == 80),
            "{both}"
        );
    }
}

/// `grounded serve` on a free port: it searches and answers over HTTP what
/// the CLI ingested, takes an upload, and on SIGTERM stops with success.
fn serve_answers_over_http_and_stops_gracefully(workspace: &Workspace) {
    use std::io::{BufRead, BufReader};

    let mut server = workspace
        .command(&["serve", "--addr", "127.0.0.1:0", "--llm", "extractive"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    let base = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve ended before listening"
        );
        if let Some(rest) = line.split("serving on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let search: Value = client
            .post(format!("{base}/v1/search"))
            .json(&serde_json::json!({"query": "What is a data race?", "top_k": 3}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let hits = search["hits"].as_array().unwrap();
        assert!(hits.iter().any(|hit| file_name(hit).starts_with("ch16")), "{search}");

        let answer: Value = client
            .post(format!("{base}/v1/answer"))
            .json(&serde_json::json!({"question": "What is a data race?"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["produced_by"], "extractive", "{answer}");
        assert_eq!(answer["grounded"], true, "{answer}");

        let upload = client
            .post(format!("{base}/v1/documents"))
            .json(&serde_json::json!({"path": "notes/x.md", "text": "# X\n\nA note about xylophones.\n"}))
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status().as_u16(), 201);
        let uploaded: Value = upload.json().await.unwrap();
        let id = uploaded["document"]["id"].as_str().unwrap();
        let deleted = client
            .delete(format!("{base}/v1/documents/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status().as_u16(), 204);
    });

    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.wait().unwrap();
    assert!(
        status.success(),
        "serve did not stop cleanly on SIGTERM: {status}"
    );
}

/// `grounded search QUERY ARGS… -k 10 --json`'s hits.
fn hits(workspace: &Workspace, query: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["search", query, "-k", "10", "--json"];
    all.extend_from_slice(args);
    let result = workspace.grounded(&all);
    result["hits"].as_array().unwrap().clone()
}

fn modes_and_filters_narrow_the_hits(workspace: &Workspace) {
    // BM25 finds the chapter that names the type; so does hybrid, by default.
    for mode in ["sparse", "hybrid", "dense"] {
        let found = hits(workspace, "Mutex<T> lock", &["--mode", mode]);
        assert_eq!(
            file_name(&found[0]),
            "ch16-03-shared-state.md",
            "{mode}: {found:?}"
        );
        no_two_hits_overlap(&found);
    }

    let file = workspace.corpus.join("ch04-01-what-is-ownership.md");
    let found = hits(workspace, "ownership", &["--path", file.to_str().unwrap()]);
    assert!(!found.is_empty());
    assert!(
        found
            .iter()
            .all(|hit| file_name(hit) == "ch04-01-what-is-ownership.md")
    );

    let corpus = format!("{}/", workspace.corpus.display());
    assert_eq!(hits(workspace, "ownership", &["--path", &corpus]).len(), 10);
    let sibling = format!("{}2", workspace.corpus.display());
    assert!(hits(workspace, "ownership", &["--path", &sibling]).is_empty());

    // A relative path is resolved as ingest resolves its paths.
    let output = workspace
        .command(&[
            "search",
            "ownership",
            "--json",
            "--path",
            "./book/ch16-01-threads.md",
        ])
        .current_dir(workspace.corpus.parent().unwrap())
        .output()
        .unwrap();
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    let found = result["hits"].as_array().unwrap();
    assert!(!found.is_empty(), "{result}");
    assert!(
        found
            .iter()
            .all(|hit| file_name(hit) == "ch16-01-threads.md")
    );

    assert!(hits(workspace, "ownership", &["--kind", "html"]).is_empty());
    assert_eq!(
        hits(
            workspace,
            "ownership",
            &["--kind", "html", "--kind", "markdown"]
        )
        .len(),
        10
    );
    // Integer payload fields match too: only a document's first chunk has ordinal 0.
    let first = hits(workspace, "ownership", &["--filter", "ordinal=0"]);
    let files: std::collections::BTreeSet<String> = first.iter().map(file_name).collect();
    assert!(!first.is_empty() && files.len() == first.len(), "{first:?}");
    for mode in ["dense", "sparse", "hybrid"] {
        let none = hits(
            workspace,
            "ownership",
            &["--mode", mode, "--filter", "no_such_field=1"],
        );
        assert!(
            none.is_empty(),
            "{mode}: a filter on a missing field let {} through",
            none.len()
        );
    }
    let strict = hits(
        workspace,
        "ownership",
        &["--mode", "dense", "--min-score", "0.99"],
    );
    assert!(strict.is_empty(), "{strict:?}");

    // Tags come from the ingest; retagging rewrites every document from the cache.
    let report = workspace.ingest(&["--tag", "book", "--tag", "rust"]);
    assert_eq!(
        count(&report, "documents_changed"),
        CHAPTERS.len() as u64,
        "{report}"
    );
    assert_eq!(count(&report, "embeddings_computed"), 0, "{report}");
    assert_eq!(
        hits(workspace, "ownership", &["--tag", "book", "--tag", "rust"]).len(),
        10
    );
    assert!(hits(workspace, "ownership", &["--tag", "book", "--tag", "go"]).is_empty());
}

/// No two hits are chunks of one document that share lines.
fn no_two_hits_overlap(hits: &[Value]) {
    let lines = |hit: &Value| {
        (
            hit["line_start"].as_u64().unwrap(),
            hit["line_end"].as_u64().unwrap(),
        )
    };
    for (i, a) in hits.iter().enumerate() {
        for b in &hits[i + 1..] {
            let ((a_start, a_end), (b_start, b_end)) = (lines(a), lines(b));
            let same = a["source_path"] == b["source_path"];
            assert!(!same || a_end < b_start || b_end < a_start, "{a}\n{b}");
        }
    }
}

fn collections_are_listed_and_deleted_whole(workspace: &Workspace) {
    let listed = workspace.grounded(&["collections", "list", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "default");
    assert_eq!(count(&listed[0], "ready_documents"), CHAPTERS.len() as u64);
    assert_eq!(listed[0]["chunks"], listed[0]["points"], "{listed:?}");

    let output = workspace
        .command(&["collections", "delete", "nope"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("there is no collection \"nope\""),
        "{stderr}"
    );

    let deleted = workspace
        .command(&["collections", "delete", "default"])
        .output()
        .unwrap();
    assert!(deleted.status.success(), "{deleted:?}");
    let listed = workspace.grounded(&["collections", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
    let output = workspace
        .command(&["search", "data race"])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "a deleted collection was searched"
    );
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

    let stderr = failing(&data, &["search", "x", "--filter", "novalue"]);
    assert!(stderr.contains("\"novalue\" is not KEY=VALUE"), "{stderr}");
    let stderr = failing(&data, &["search", "x", "--kind", "pdf"]);
    assert!(
        stderr.contains("\"pdf\" is not a document kind"),
        "{stderr}"
    );
}

#[test]
fn a_collection_made_for_another_model_is_refused_naming_both_sizes() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let notes = root.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("a.md"), "# A\n\nSome text.\n").unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let index = grounded_index::EdgeIndex::open(&data.join("index")).unwrap();
        let spec = grounded_index::CollectionSpec { dimension: 768 };
        index.ensure_collection("wide", spec).await.unwrap();
    });

    let stderr = failing(&data, &["ingest", notes.to_str().unwrap(), "-c", "wide"]);
    assert!(
        stderr.contains("dimension 768") && stderr.contains("produces 384"),
        "{stderr}"
    );
}

/// Notes with code in them, which tiktoken counts in more tokens than words.
const OPENAI_NOTES: &str = "# Vectors\n\n\
    A vector grows on the heap: `let mut v: Vec<u8> = Vec::with_capacity(16);` \
    reserves room, and `v.extend_from_slice(&[1, 2, 3]);` fills it.\n\n\
    ## Iterators\n\n\
    `v.iter().map(|x| x * 2).filter(|x| *x > 2).collect::<Vec<_>>()` doubles and \
    keeps the large ones; `into_iter()` moves the values out instead.\n\n\
    ## Slices\n\n\
    A slice `&v[1..]` borrows part of the vector without copying it.\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_embedder_ingests_and_searches_and_its_collection_refuses_the_local_one() {
    use grounded_embed::TokenCounter;
    use grounded_standin::{StandIn, StandInConfig};

    let standin = StandIn::start(StandInConfig {
        api_key: Some("sk-standin".into()),
        ..StandInConfig::default()
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let notes = root.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("vectors.md"), OPENAI_NOTES).unwrap();
    std::fs::write(
        notes.join("xylophone.txt"),
        "Xylophones are struck with mallets.\n",
    )
    .unwrap();
    let workspace = Workspace {
        data: root.path().join("data"),
        corpus: notes,
        database_url: None,
        _root: root,
    };
    let openai = |args: &[&str]| {
        let mut command = workspace.command(args);
        command
            .env("GROUNDED_EMBEDDER", "openai")
            .env("OPENAI_BASE_URL", standin.base_url())
            .env("OPENAI_API_KEY", "sk-standin")
            .env("OPENAI_EMBEDDING_MODEL", "text-embedding-3-small")
            .env("OPENAI_EMBEDDING_DIMENSIONS", "64");
        command
    };
    let run = |mut command: Command| {
        tokio::task::block_in_place(|| {
            let output = command.output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            (output.status.success(), stdout, stderr)
        })
    };
    let corpus = workspace.corpus.to_str().unwrap();

    let (ok, stdout, stderr) = run(openai(&[
        "ingest",
        corpus,
        "--chunk-tokens",
        "24",
        "--chunk-overlap",
        "0",
        "--json",
    ]));
    assert!(ok, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(count(&report, "documents_new"), 2, "{report}");
    let chunks = count(&report, "chunks");
    assert!(chunks > 3, "{report}");
    assert_eq!(workspace.index_points().await as u64, chunks);

    // What reached the API: every chunk once, none over 24 tiktoken tokens.
    let tiktoken = TokenCounter::for_openai_model("text-embedding-3-small");
    let inputs: Vec<String> = standin
        .requests()
        .iter()
        .filter(|request| request.path == "/v1/embeddings")
        .flat_map(|request| {
            assert_eq!(request.header("authorization"), Some("Bearer sk-standin"));
            let body = request.body.clone().unwrap();
            assert_eq!(body["dimensions"], 64);
            body["input"].as_array().unwrap().clone()
        })
        .map(|input| input.as_str().unwrap().to_string())
        .collect();
    assert_eq!(inputs.len() as u64, chunks, "{inputs:?}");
    for input in &inputs {
        assert!(
            tiktoken.count(input) <= 24,
            "{input:?}: {}",
            tiktoken.count(input)
        );
    }

    // A chunk's exact text embeds to the chunk's vector: it comes first.
    let wanted = inputs
        .iter()
        .find(|text| text.contains("into_iter"))
        .unwrap();
    let (ok, stdout, stderr) = run(openai(&["search", wanted, "--mode", "dense", "--json"]));
    assert!(ok, "{stdout}\n{stderr}");
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    let first = &result["hits"][0];
    assert_eq!(first["text"].as_str(), Some(wanted.as_str()), "{result}");
    assert!(first["score"].as_f64().unwrap() > 0.999, "{result}");

    let (ok, _, stderr) = run(openai(&["ingest", corpus, "--chunk-tokens", "9000"]));
    assert!(
        !ok && stderr.contains("exceeds the model's limit of 8191 tokens"),
        "{stderr}"
    );

    // The local model makes vectors of another size: refused, naming both.
    let (ok, _, stderr) = run(workspace.command(&["ingest", corpus, "--embedder", "local"]));
    assert!(
        !ok,
        "the local embedder wrote into a collection of the OpenAI one"
    );
    assert!(
        stderr.contains("dimension 64") && stderr.contains("produces 384"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(workspace.command(&["search", "vectors", "--embedder", "local"]));
    assert!(!ok && stderr.contains("dimension 64"), "{stderr}");
}

#[tokio::test]
async fn migrate_brings_either_store_to_its_schema_version() {
    let root = tempfile::tempdir().unwrap();
    let migrate = |workspace_url: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_grounded"));
        command
            .arg("migrate")
            .env("GROUNDED_DATA_DIR", root.path().join("data"));
        match workspace_url {
            Some(url) => command.env("GROUNDED_DATABASE_URL", url),
            None => command.env_remove("GROUNDED_DATABASE_URL"),
        };
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };

    let sqlite = migrate(None);
    assert!(
        sqlite.ends_with("grounded.db is at schema version 3\n"),
        "{sqlite}"
    );

    let Some(database) = scratch_database("migrate_brings_either_store").await else {
        return;
    };
    let postgres = migrate(Some(database.url()));
    assert!(postgres.ends_with("is at schema version 2\n"), "{postgres}");
    let store = grounded_store::open_store(database.url()).await.unwrap();
    assert_eq!(store.collection_counts("default").await.unwrap().chunks, 0);
    store.close().await;
}

#[tokio::test]
async fn a_database_url_that_cannot_work_gets_one_clear_line() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let search_with = |url: &str| {
        let line = failing(&data, &["--database-url", url, "search", "x"]);
        assert_eq!(line.lines().count(), 1, "{line}");
        line
    };

    let line = search_with("mysql://root:hunter2@localhost/db");
    assert!(
        line.starts_with("error: unsupported database URL mysql://root:***@"),
        "{line}"
    );
    assert!(!line.contains("hunter2"), "a password was shown: {line}");

    let line = search_with("postgres://grounded@localhost:port/db");
    assert!(line.contains("failed to open database"), "{line}");

    let line = search_with("postgres://");
    assert!(line.contains("names no database"), "{line}");

    let line = search_with("postgres://grounded@127.0.0.1:1/grounded?password=sekrit");
    assert!(
        line.contains("password=***") && !line.contains("sekrit"),
        "{line}"
    );

    let started = std::time::Instant::now();
    let line = search_with("postgres://grounded:sekrit@127.0.0.1:1/grounded");
    assert!(
        line.contains("127.0.0.1:1") && line.to_lowercase().contains("refused"),
        "{line}"
    );
    assert!(!line.contains("sekrit"), "a password was shown: {line}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "retried: {line}"
    );

    let Some(database) = scratch_database("a_database_url_that_cannot_work").await else {
        return;
    };
    let missing = database
        .url()
        .replace(database.name(), "grounded_no_such_database");
    let line = search_with(&missing);
    assert!(
        line.contains("grounded_no_such_database") && line.contains("does not exist"),
        "{line}"
    );

    let store = grounded_store::PostgresStore::open(database.url())
        .await
        .unwrap();
    store.close().await;
    database.record_newer_migration(99).await.unwrap();
    let line = search_with(database.url());
    assert!(
        line.contains("has schema version 99, newer than the 2"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_ingest_shows_no_partial_document_and_the_next_run_completes_it() {
    let Some(sources) = book_sources() else {
        return;
    };
    killed_ingest_is_completed_by_the_next(&Workspace::new(&sources)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_ingest_on_postgres_shows_no_partial_document_and_the_next_run_completes_it() {
    let Some(sources) = book_sources() else {
        return;
    };
    let Some(database) = scratch_database("a_killed_ingest_on_postgres").await else {
        return;
    };
    killed_ingest_is_completed_by_the_next(&Workspace::on_postgres(&sources, database.url())).await;
}

/// Kills a real ingest process once two documents are ready, checks that no
/// search returns an uncommitted chunk, and that the next run completes the
/// collection with exactly one point per committed chunk.
async fn killed_ingest_is_completed_by_the_next(workspace: &Workspace) {
    let corpus = workspace.corpus.to_str().unwrap();
    let mut child = workspace
        .command(&["ingest", corpus, "--batch-chunks", "8", "--json"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_ready_documents(workspace, 2).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let store = workspace.open_store().await.unwrap();
    let counts = store.collection_counts("default").await.unwrap();
    assert!(
        (counts.ready_documents as usize) < CHAPTERS.len(),
        "the kill came after the ingest finished: {counts:?}"
    );

    for query in [
        "what is ownership",
        "threads",
        "strings",
        "borrowing",
        "mutex",
    ] {
        let hits = workspace.grounded(&["search", query, "-k", "20", "--json"]);
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
    }

    let report = workspace.ingest(&[]);
    let finished = count(&report, "documents_new") + count(&report, "documents_changed");
    assert_eq!(
        finished + count(&report, "documents_unchanged"),
        CHAPTERS.len() as u64
    );
    assert!(finished >= 1, "{report}");

    let counts = store.collection_counts("default").await.unwrap();
    assert_eq!(
        counts.ready_documents as usize,
        CHAPTERS.len(),
        "{counts:?}"
    );
    assert_eq!(counts.indexing_documents, 0);
    assert_eq!(
        workspace.index_points().await as u64,
        counts.chunks,
        "the index holds points the store does not know"
    );
    store.close().await;
}

async fn scratch_database(test: &str) -> Option<ScratchDatabase> {
    let server = test_server_url(test)?;
    Some(ScratchDatabase::create(&server).await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_ingests_at_once_on_postgres_write_each_document_once() {
    let Some(sources) = book_sources() else {
        return;
    };
    let Some(database) = scratch_database("two_ingests_at_once_on_postgres").await else {
        return;
    };
    let workspace = Workspace::on_postgres(&sources, database.url());
    let corpus = workspace.corpus.to_str().unwrap();

    let start = || {
        workspace
            .command(&["ingest", corpus, "--batch-chunks", "8", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (start(), start());
    let reports: Vec<Value> = [first, second]
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "an ingest failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            serde_json::from_str(stdout.trim()).unwrap()
        })
        .collect();

    let total = |field| reports.iter().map(|r| count(r, field)).sum::<u64>();
    let all = CHAPTERS.len() as u64;
    assert_eq!(
        total("documents_new"),
        all,
        "each document written once: {reports:?}"
    );
    assert_eq!(total("documents_unchanged"), all, "{reports:?}");
    assert_eq!(total("documents_failed"), 0, "{reports:?}");
    for report in &reports {
        assert!(
            count(report, "documents_new") >= 1,
            "one ingest did no work: {reports:?}"
        );
    }

    let store = workspace.open_store().await.unwrap();
    let counts = store.collection_counts("default").await.unwrap();
    assert_eq!(
        (counts.ready_documents, counts.indexing_documents),
        (all, 0)
    );
    let mut chunks = 0;
    for document in store.list_documents("default").await.unwrap() {
        let stored = store.document_chunks(document.id).await.unwrap();
        assert_eq!(
            stored.len() as u32,
            document.chunk_count,
            "{}",
            document.source_path
        );
        chunks += stored.len() as u64;
    }
    assert_eq!(chunks, counts.chunks);
    assert_eq!(
        total("chunks"),
        chunks,
        "a chunk was written twice: {reports:?}"
    );
    assert_eq!(workspace.index_points().await as u64, chunks);

    let cached = store.cached_embeddings(None, 100_000).await.unwrap().len() as u64;
    assert_eq!(
        total("embeddings_computed"),
        cached,
        "a text was embedded twice"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_exported_from_sqlite_and_imported_into_postgres_are_not_computed_again() {
    let Some(sources) = book_sources() else {
        return;
    };
    let Some(database) = scratch_database("embeddings_exported_from_sqlite").await else {
        return;
    };
    let laptop = Workspace::new(&sources);
    let first = laptop.ingest(&[]);
    let computed = count(&first, "embeddings_computed");
    assert!(computed > 0);

    let file = laptop.data.join("embeddings.jsonl");
    let file = file.to_str().unwrap();
    laptop
        .command(&["cache", "export", file])
        .status()
        .unwrap()
        .success()
        .then_some(())
        .unwrap();
    let lines = std::fs::read_to_string(file).unwrap().lines().count() as u64;
    assert_eq!(lines, computed + 1, "a header and one line per embedding");

    let wrong = laptop.data.join("wrong.jsonl");
    let header = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let line = r#"{"model_id":"sentence-transformers/all-MiniLM-L6-v2@256","text_hash":"#;
    let hash = "0".repeat(64);
    std::fs::write(
        &wrong,
        format!("{header}\n{line}\"{hash}\",\"dimension\":1,\"vector\":\"AACAPw==\"}}\n"),
    )
    .unwrap();
    let output = laptop
        .command(&["cache", "import", wrong.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("line 2: a vector of dimension 1"),
        "{stderr}"
    );

    let server = Workspace::on_postgres(&sources, database.url());
    std::fs::remove_dir_all(&server.corpus).unwrap();
    copy_dir(&laptop.corpus, &server.corpus);
    let imported = server.command(&["cache", "import", file]).status().unwrap();
    assert!(imported.success());

    // One cached vector made wrong (as a bad import of another model's
    // vectors would leave it) is computed again and replaced, not used.
    let store = server.open_store().await.unwrap();
    let model = "sentence-transformers/all-MiniLM-L6-v2@256";
    let spoiled = store.cached_embeddings(None, 1).await.unwrap()[0]
        .key
        .text_hash
        .clone();
    store
        .replace_embeddings(model, &[(spoiled.clone(), vec![0.5; 4])])
        .await
        .unwrap();

    let report = server.ingest(&[]);
    assert_eq!(count(&report, "documents_new"), CHAPTERS.len() as u64);
    assert_eq!(count(&report, "embeddings_computed"), 1, "{report}");
    let healed = store.get_embeddings(model, &[spoiled]).await.unwrap();
    assert_eq!(healed.values().next().unwrap().len(), 384);
    store.close().await;
    assert_eq!(count(&report, "chunks"), count(&first, "chunks"));
    let hits = server.search("what is ownership");
    assert!(file_name(&hits[0]).starts_with("ch04-"), "{hits:?}");

    let again = server.ingest(&[]);
    assert_eq!(count(&again, "documents_unchanged"), CHAPTERS.len() as u64);

    // A second data directory on the same database starts with an empty
    // index: the ingest sees the missing points and writes them, from cache.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = Workspace {
        data: elsewhere.path().join("data"),
        corpus: server.corpus.clone(),
        database_url: server.database_url.clone(),
        _root: elsewhere,
    };
    let output = other.command(&["search", "ownership"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("but no vector index in"), "{stderr}");

    let repaired = other.ingest(&[]);
    assert_eq!(
        count(&repaired, "documents_repaired"),
        CHAPTERS.len() as u64,
        "{repaired}"
    );
    assert_eq!(count(&repaired, "embeddings_computed"), 0, "{repaired}");
    let hits = other.search("what is ownership");
    assert!(file_name(&hits[0]).starts_with("ch04-"), "{hits:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Polls the store of a running ingest until `wanted` documents are ready.
async fn wait_for_ready_documents(workspace: &Workspace, wanted: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let sqlite = workspace.data.join("grounded.db");
    while std::time::Instant::now() < deadline {
        // The ingest creates the SQLite file; opening it first would too.
        let created = workspace.database_url.is_some() || sqlite.exists();
        if created && let Ok(store) = workspace.open_store().await {
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
