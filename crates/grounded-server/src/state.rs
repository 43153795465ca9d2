//! What every handler shares: the open engine and the server's settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use grounded_auth::{JwtVerifier, Principal};
use grounded_embed::Embedder;
use grounded_index::VectorIndex;
use grounded_ingest::IngestOptions;
use grounded_query::{AnswerOptions, Answerer};
use grounded_store::MetadataStore;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::access::{Access, AccessSettings};
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
    /// Proxies, default rates and the prompt log.
    pub access: AccessSettings,
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
    access: Access,
}

impl AppState {
    /// A server whose callers authenticate with the store's API keys.
    pub fn new(engine: Engine, config: ServerConfig) -> Self {
        Self::with_token_issuer(engine, config, None)
    }

    /// A server whose callers authenticate with the store's API keys or,
    /// when `jwt` is given, with that issuer's bearer tokens.
    pub fn with_token_issuer(
        engine: Engine,
        config: ServerConfig,
        jwt: Option<JwtVerifier>,
    ) -> Self {
        let access = Access::new(engine.store.clone(), config.access.clone(), jwt);
        Self {
            inner: Arc::new(Inner {
                engine,
                config,
                metrics: crate::metrics::handle(),
                idempotency: IdempotencyCache::default(),
                access,
            }),
        }
    }

    pub fn access(&self) -> &Access {
        &self.inner.access
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

    /// The collection a request names, or else the default (or, for a
    /// caller who may not see the default, the first collection it may
    /// see); checked, and visible to the caller.
    ///
    /// A collection the caller may not see gets the very answer a
    /// collection that does not exist gets from search, so that a caller
    /// cannot learn whether it exists.
    pub fn collection(
        &self,
        principal: &Principal,
        requested: Option<&str>,
    ) -> Result<String, crate::ApiError> {
        let name = self.collection_name(principal, requested)?;
        if !principal.sees(&name) {
            return Err(grounded_index::IndexError::CollectionNotFound(name).into());
        }
        Ok(name)
    }

    /// The collection's name as [`collection`](Self::collection) chooses
    /// it, checked, whether or not the caller may see it: for the routes
    /// that answer an unknown collection with an empty list or a missing
    /// document, and must answer a hidden one the same way.
    pub fn collection_name(
        &self,
        principal: &Principal,
        requested: Option<&str>,
    ) -> Result<String, crate::ApiError> {
        let default = &self.inner.config.default_collection;
        let name = match (requested, &principal.collections) {
            (Some(name), _) => name,
            (None, Some(allowed)) if !principal.sees(default) => {
                allowed.first().map_or(default.as_str(), String::as_str)
            }
            (None, _) => default.as_str(),
        };
        grounded_core::validate_collection_name(name).map_err(crate::ApiError::unprocessable)?;
        Ok(name.to_string())
    }
}
