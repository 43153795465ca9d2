//! Query embeddings for a server: recent queries come from memory, and
//! queries that arrive while the model is busy are embedded together, one
//! batch instead of many single-text runs competing for the same cores.
//!
//! The cache holds the vectors of the most recent distinct query texts
//! (exact text, any request size up to the batch limit); hits and misses
//! are counted in `grounded_embedding_cache_hits_total` and
//! `grounded_embedding_cache_misses_total` with `cache="query"`.
//!
//! One worker runs the model. It takes the first waiting request, adds every
//! other request already waiting up to the batch limit, embeds them in one
//! call and hands each request its vectors. A lone request waits for nothing:
//! batches form only from requests that queued while the previous batch ran.
//! Requests larger than half the limit (an ingest's batches) skip the queue.

use std::sync::Arc;

use async_trait::async_trait;
use grounded_provider::ProviderError;
use quick_cache::sync::Cache;
use tokio::sync::{mpsc, oneshot};

use crate::{EmbedError, Embedder, Embedding, TokenCounter};

/// How many requests may wait for the worker before callers wait to queue.
const QUEUE: usize = 1024;

/// An [`Embedder`] that answers small requests from a cache of recent
/// texts and batches the concurrent ones it has to compute.
pub struct QueryEmbedder {
    inner: Arc<dyn Embedder>,
    jobs: mpsc::Sender<Job>,
    max_batch: usize,
    cache: Option<Cache<String, Embedding>>,
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Embedding>, EmbedError>>,
}

impl QueryEmbedder {
    /// Batches up to `max_batch` texts per model call and remembers the
    /// vectors of the last `cache_texts` distinct texts (0: no cache). Must
    /// be called inside a Tokio runtime, which runs the worker until this
    /// embedder is dropped.
    pub fn new(inner: Arc<dyn Embedder>, max_batch: usize, cache_texts: usize) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let max_batch = max_batch.max(1);
        tokio::spawn(run_worker(inner.clone(), queue, max_batch));
        Self {
            inner,
            jobs,
            max_batch,
            cache: (cache_texts > 0).then(|| Cache::new(cache_texts)),
        }
    }

    /// The vectors of `texts` if every one is cached.
    fn cached(&self, texts: &[String]) -> Option<Vec<Embedding>> {
        let cache = self.cache.as_ref()?;
        let found: Option<Vec<Embedding>> = texts.iter().map(|text| cache.get(text)).collect();
        let counter = if found.is_some() {
            metrics::counter!("grounded_embedding_cache_hits_total", "cache" => "query")
        } else {
            metrics::counter!("grounded_embedding_cache_misses_total", "cache" => "query")
        };
        counter.increment(texts.len() as u64);
        found
    }

    fn remember(&self, texts: &[String], vectors: &[Embedding]) {
        if let Some(cache) = &self.cache {
            for (text, vector) in texts.iter().zip(vectors) {
                cache.insert(text.clone(), vector.clone());
            }
        }
    }

    /// Embeds `texts` in the worker's next batch.
    async fn batched(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            texts: texts.to_vec(),
            reply,
        };
        let gone = || EmbedError::Inference("the embedding worker has stopped".into());
        self.jobs.send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run_worker(inner: Arc<dyn Embedder>, mut queue: mpsc::Receiver<Job>, max_batch: usize) {
    while let Some(first) = queue.recv().await {
        let mut texts = first.texts.len();
        let mut jobs = vec![first];
        while texts < max_batch {
            let Ok(job) = queue.try_recv() else {
                break;
            };
            texts += job.texts.len();
            jobs.push(job);
        }
        embed_jobs(inner.as_ref(), jobs).await;
    }
}

/// Embeds the jobs' texts in one call and replies to each with its share.
async fn embed_jobs(inner: &dyn Embedder, jobs: Vec<Job>) {
    let texts: Vec<String> = jobs.iter().flat_map(|job| job.texts.clone()).collect();
    tracing::trace!(
        requests = jobs.len(),
        texts = texts.len(),
        "embedding batch"
    );

    match inner.embed(&texts).await {
        Ok(vectors) => {
            let mut vectors = vectors.into_iter();
            for job in jobs {
                let share: Vec<Embedding> = vectors.by_ref().take(job.texts.len()).collect();
                let _ = job.reply.send(Ok(share));
            }
        }
        Err(error) => {
            for job in jobs {
                let _ = job.reply.send(Err(share_error(&error)));
            }
        }
    }
}

/// A copy of `error` for each request of a failed batch. A provider error
/// keeps its class, so a server still answers 429 or 504; any other
/// becomes [`EmbedError::Inference`] with the same message.
fn share_error(error: &EmbedError) -> EmbedError {
    match error {
        EmbedError::Provider(error) => EmbedError::Provider(copy_provider_error(error)),
        other => EmbedError::Inference(other.to_string()),
    }
}

fn copy_provider_error(error: &ProviderError) -> ProviderError {
    match error {
        ProviderError::RateLimited {
            provider,
            attempts,
            retry_after,
            message,
        } => ProviderError::RateLimited {
            provider: provider.clone(),
            attempts: *attempts,
            retry_after: *retry_after,
            message: message.clone(),
        },
        ProviderError::Status {
            provider,
            status,
            code,
            message,
            attempts,
        } => ProviderError::Status {
            provider: provider.clone(),
            status: *status,
            code: code.clone(),
            message: message.clone(),
            attempts: *attempts,
        },
        ProviderError::Timeout {
            provider,
            timeout,
            attempts,
        } => ProviderError::Timeout {
            provider: provider.clone(),
            timeout: *timeout,
            attempts: *attempts,
        },
        ProviderError::Connect {
            provider,
            message,
            attempts,
        } => ProviderError::Connect {
            provider: provider.clone(),
            message: message.clone(),
            attempts: *attempts,
        },
        ProviderError::Protocol { provider, message } => ProviderError::Protocol {
            provider: provider.clone(),
            message: message.clone(),
        },
        ProviderError::Invalid { provider, message } => ProviderError::Invalid {
            provider: provider.clone(),
            message: message.clone(),
        },
        ProviderError::ModelFiles(message) => ProviderError::ModelFiles(message.clone()),
        ProviderError::Local(message) => ProviderError::Local(message.clone()),
    }
}

#[async_trait]
impl Embedder for QueryEmbedder {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn max_input_tokens(&self) -> usize {
        self.inner.max_input_tokens()
    }

    fn token_counter(&self) -> TokenCounter<'_> {
        self.inner.token_counter()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        if texts.len() * 2 > self.max_batch {
            return self.inner.embed(texts).await;
        }
        if let Some(vectors) = self.cached(texts) {
            return Ok(vectors);
        }
        let vectors = self.batched(texts).await?;
        self.remember(texts, &vectors);
        Ok(vectors)
    }
}
