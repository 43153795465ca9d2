//! Prometheus metrics: one recorder per process, rendered at `/metrics`.
//!
//! Series, all prefixed `grounded_`: `http_requests_total` and
//! `http_request_duration_seconds` by route, method and status;
//! `retrieval_duration_seconds` by mode; `embedding_cache_hits_total` and
//! `embedding_cache_misses_total`; `tokens_total` by model and direction
//! (`in` for prompt tokens, `out` for completion tokens); and, from the
//! providers, `provider_retries_total` and `provider_errors_total`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets in seconds, from a cached search to a long answer.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use.
///
/// When another recorder was installed first (by an embedding program), the
/// handle renders only what reaches this one: nothing.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let recorder = builder
                .set_buckets(&BUCKETS)
                .map(|builder| builder.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was installed already: /metrics stays empty");
            }
            describe();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// Histograms keep their samples until upkeep folds them in; without it a
/// server that is never scraped would grow without bound.
fn spawn_upkeep(handle: PrometheusHandle) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(5));
            loop {
                interval.tick().await;
                handle.run_upkeep();
            }
        });
    }
}

pub fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("route", route.to_string()),
        ("method", method.to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!("grounded_http_requests_total", &labels).increment(1);
    metrics::histogram!("grounded_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
}

pub fn record_retrieval(mode: &str, elapsed: Duration) {
    metrics::histogram!("grounded_retrieval_duration_seconds", "mode" => mode.to_string())
        .record(elapsed.as_secs_f64());
}

/// An upload's chunks found in (hits) or missing from (misses) the store's
/// embedding cache; the query cache counts its own, as `cache="query"`.
pub fn record_cache(hits: usize, misses: usize) {
    metrics::counter!("grounded_embedding_cache_hits_total", "cache" => "store")
        .increment(hits as u64);
    metrics::counter!("grounded_embedding_cache_misses_total", "cache" => "store")
        .increment(misses as u64);
}

/// The `# HELP` line of every series.
fn describe() {
    use metrics::{describe_counter, describe_histogram};

    describe_counter!(
        "grounded_http_requests_total",
        "HTTP requests by route, method and status"
    );
    describe_histogram!(
        "grounded_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to the response's start, by route, method and status"
    );
    describe_histogram!(
        "grounded_retrieval_duration_seconds",
        metrics::Unit::Seconds,
        "Retrieval time of one search, query embedding included, by mode"
    );
    describe_counter!(
        "grounded_embedding_cache_hits_total",
        "Texts whose embedding came from a cache (store: uploads; query: searches)"
    );
    describe_counter!(
        "grounded_embedding_cache_misses_total",
        "Texts the embedding model had to embed (store: uploads; query: searches)"
    );
    describe_counter!(
        "grounded_tokens_total",
        "Chat model tokens by model and direction (in: prompt, out: completion)"
    );
    describe_counter!(
        "grounded_provider_retries_total",
        "Provider calls retried, by provider and reason"
    );
    describe_counter!(
        "grounded_provider_errors_total",
        "Provider calls that failed after their retries, by provider and class"
    );
}

pub fn record_tokens(model: &str, prompt: u32, completion: u32) {
    metrics::counter!("grounded_tokens_total", "model" => model.to_string(), "direction" => "in")
        .increment(u64::from(prompt));
    metrics::counter!("grounded_tokens_total", "model" => model.to_string(), "direction" => "out")
        .increment(u64::from(completion));
}
