//! Opening what every command needs: the embedder, the metadata store and
//! the vector index, from the global flags.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use grounded_core::{DataDir, Hit, default_cache_dir, validate_collection_name};
use grounded_embed::{Embedder, MiniLm, OpenAiBatching, OpenAiEmbedder, resolve_model_files};
use grounded_index::{EdgeIndex, IndexError, ServerIndex, ServerOptions, VectorIndex};
use grounded_ingest::pipeline::{Shortfall, index_shortfall};
use grounded_provider::openai::OpenAiConfig;
use grounded_query::{QueryError, Retriever, SearchRequest};
use grounded_store::{MetadataStore, SqliteStore, open_store};
use tracing::{info, warn};

use crate::cli::{EmbedderKind, GlobalArgs};

/// The open components of one run.
pub struct Context {
    pub embedder: Arc<dyn Embedder>,
    pub store: Box<dyn MetadataStore>,
    pub index: Box<dyn VectorIndex>,
    /// Where the index is, for messages: a directory or a server URL.
    pub index_location: String,
}

impl Context {
    /// Opens everything, the store first so that a wrong database fails
    /// before the model is fetched or loaded.
    pub async fn open(global: &GlobalArgs) -> anyhow::Result<Self> {
        let store = open_metadata_store(global).await?;
        let (index, index_location) = open_index(global).await?;
        let embedder = load_embedder(global).await?;
        Ok(Self {
            embedder,
            store,
            index,
            index_location,
        })
    }

    /// Warns when the collection's index holds fewer points than the store
    /// has committed chunks: search then misses them, typically because this
    /// is not the data directory the shared store was filled with.
    async fn warn_if_index_incomplete(&self, collection: &str) {
        let shortfall = index_shortfall(self.store.as_ref(), self.index.as_ref(), collection).await;
        if let Ok(Some(Shortfall { points, chunks })) = shortfall {
            warn!(
                "the vector index at {} holds {points} points of collection {collection:?} but \
                 the store {} records {chunks} chunks, so search misses some; run `grounded \
                 ingest` with this index to write the missing ones",
                self.index_location,
                self.store.location(),
            );
        }
    }

    /// Searches, and explains a collection that the store knows but this data
    /// directory's index lacks entirely.
    pub async fn search(&self, request: &SearchRequest) -> anyhow::Result<Vec<Hit>> {
        let retriever = Retriever::new(
            self.embedder.as_ref(),
            self.index.as_ref(),
            self.store.as_ref(),
        );
        let error = match retriever.search(request).await {
            Ok(hits) => {
                self.warn_if_index_incomplete(&request.collection).await;
                return Ok(hits);
            }
            Err(error) => error,
        };
        let missing = matches!(error, QueryError::Index(IndexError::CollectionNotFound(_)));
        let chunks = match self.store.collection_counts(&request.collection).await {
            Ok(counts) if missing => counts.chunks,
            _ => 0,
        };
        if chunks == 0 {
            return Err(error.into());
        }
        anyhow::bail!(
            "collection {:?} has {chunks} chunks in the store {} but no vector index in {}: run \
             `grounded ingest` with this index to build it (from the embedding cache)",
            request.collection,
            self.store.location(),
            self.index_location
        )
    }

    /// Flushes and closes the store.
    pub async fn close(self) {
        self.store.close().await;
    }
}

/// The metadata store that `--database-url` names, or the SQLite file of the
/// data directory (created if missing).
pub async fn open_metadata_store(global: &GlobalArgs) -> anyhow::Result<Box<dyn MetadataStore>> {
    // An empty URL, as an env file may leave it, means the default.
    let url = global.database_url.as_deref();
    if url.is_some_and(|url| url.trim().is_empty()) {
        warn!("the database URL is empty: using the SQLite store of the data directory");
    }
    let url = url.filter(|url| !url.trim().is_empty());
    let store: Box<dyn MetadataStore> = match url {
        Some(url) => open_store(url).await?,
        None => {
            let data_dir = create_data_dir(global)?;
            Box::new(SqliteStore::open(&data_dir.database()).await?)
        }
    };
    info!(
        database = store.location(),
        schema_version = store.schema_version(),
        "store opened"
    );
    Ok(store)
}

/// The Qdrant server that `--qdrant-url` names, or else the Qdrant Edge
/// index of the data directory (created if missing); with where it is.
pub async fn open_index(global: &GlobalArgs) -> anyhow::Result<(Box<dyn VectorIndex>, String)> {
    let url = global.qdrant_url.as_deref().map(str::trim);
    if let Some(url) = url.filter(|url| !url.is_empty()) {
        let options = ServerOptions {
            url: url.to_owned(),
            api_key: global.qdrant_api_key.clone().filter(|key| !key.is_empty()),
            upsert_batch: global.upsert_batch as usize,
            upsert_parallelism: global.upsert_parallelism as usize,
            ..ServerOptions::default()
        };
        let index = ServerIndex::connect(options)?;
        info!(qdrant = url, "vector index opened");
        return Ok((Box::new(index), url.to_owned()));
    }

    let data_dir = create_data_dir(global)?;
    let index = EdgeIndex::open(&data_dir.index())?;
    let location = index.root().display().to_string();
    Ok((Box::new(index), location))
}

/// The data directory, created if missing.
fn create_data_dir(global: &GlobalArgs) -> anyhow::Result<DataDir> {
    let data_dir = DataDir::new(&global.data_dir);
    if data_dir.root().exists() && !data_dir.root().is_dir() {
        anyhow::bail!(
            "data directory {} is not a directory",
            data_dir.root().display()
        );
    }
    std::fs::create_dir_all(data_dir.root()).with_context(|| {
        format!(
            "failed to create data directory {}",
            data_dir.root().display()
        )
    })?;
    Ok(data_dir)
}

/// Checks a collection name from the command line.
pub fn collection_name(name: &str) -> anyhow::Result<&str> {
    validate_collection_name(name).map_err(anyhow::Error::msg)?;
    Ok(name)
}

/// The embedder `--embedder` names.
async fn load_embedder(global: &GlobalArgs) -> anyhow::Result<Arc<dyn Embedder>> {
    let embedder: Arc<dyn Embedder> = match global.embedder {
        EmbedderKind::Local => Arc::new(load_local_embedder(global)?),
        EmbedderKind::Openai => Arc::new(connect_openai_embedder().await?),
    };
    Ok(embedder)
}

fn load_local_embedder(global: &GlobalArgs) -> anyhow::Result<MiniLm> {
    let cache_dir = global.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let (files, source) = resolve_model_files(global.model_dir.as_deref(), &cache_dir)?;

    let started = Instant::now();
    let embedder = MiniLm::load(&files)?;
    info!(source = ?source, elapsed_ms = started.elapsed().as_millis() as u64, "model loaded");
    Ok(embedder)
}

/// The OpenAI-compatible embedder of the `OPENAI_…` variables; without
/// OPENAI_EMBEDDING_DIMENSIONS, a model whose size is not known is asked
/// for one vector to learn it.
async fn connect_openai_embedder() -> anyhow::Result<OpenAiEmbedder> {
    let config = OpenAiConfig::from_env()?;
    let base_url = config.base_url.clone();
    let embedder = OpenAiEmbedder::connect(config, OpenAiBatching::default())
        .await
        .with_context(|| format!("cannot use the embedding API at {base_url}"))?;
    info!(
        model = embedder.model_id(),
        dimension = embedder.dimension(),
        "embeddings by an OpenAI-compatible API"
    );
    Ok(embedder)
}
