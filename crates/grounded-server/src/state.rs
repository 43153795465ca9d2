//! What every handler shares: the open engine and the server's settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use grounded_embed::Embedder;
use grounded_index::VectorIndex;
use grounded_ingest::IngestOptions;
use grounded_query::{AnswerOptions, Answerer};
use grounded_store::MetadataStore;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::idempotency::IdempotencyCache;

/// The components a server answers from, opened by the caller.
pub struct Engine {
    pub embedder: Arc<dyn Embedder>,
    pub store: Arc<dyn MetadataStore>,
    pub index: Arc<dyn VectorIndex>,
    pub answerer: Answerer,
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The collection of requests that name none.
    pub default_collection: String,
    /// Where uploaded documents are kept, one directory per collection, so
    /// that an interrupted ingest of one can be repeated.
    pub uploads_dir: PathBuf,
    /// How uploads are chunked and batched; the collection and tags are the
    /// request's.
    pub ingest: IngestOptions,
    /// Answer settings a request does not override.
    pub answer: AnswerOptions,
    /// The longest a request may take before its response starts.
    pub request_timeout: Duration,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

/// The state of a running server, cheap to clone into every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: ServerConfig,
    metrics: PrometheusHandle,
    idempotency: IdempotencyCache,
}

impl AppState {
    pub fn new(engine: Engine, config: ServerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                config,
                metrics: crate::metrics::handle(),
                idempotency: IdempotencyCache::default(),
            }),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }

    pub fn idempotency(&self) -> &IdempotencyCache {
        &self.inner.idempotency
    }

    /// The collection a request names, or the default; checked.
    pub fn collection(&self, requested: Option<&str>) -> Result<String, crate::ApiError> {
        let name = requested.unwrap_or(&self.inner.config.default_collection);
        grounded_core::validate_collection_name(name).map_err(crate::ApiError::unprocessable)?;
        Ok(name.to_string())
    }
}
