//! Retrieval: the query's embedding against the vector index, filtered by
//! what the metadata store says is visible.

use std::collections::HashSet;
use std::time::Instant;

use grounded_core::Hit;
use grounded_embed::Embedder;
use grounded_index::{ScoredPoint, VectorIndex};
use grounded_store::MetadataStore;
use tracing::debug;

use crate::QueryError;

/// How many candidates to fetch per wanted hit: some are dropped as invisible
/// or as duplicates of a better hit.
const OVERFETCH: usize = 3;

/// One search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub collection: String,
    pub query: String,
    pub limit: usize,
}

/// Finds hits for queries.
pub struct Retriever<'a> {
    embedder: &'a dyn Embedder,
    index: &'a dyn VectorIndex,
    store: &'a dyn MetadataStore,
}

impl<'a> Retriever<'a> {
    pub fn new(
        embedder: &'a dyn Embedder,
        index: &'a dyn VectorIndex,
        store: &'a dyn MetadataStore,
    ) -> Self {
        Self {
            embedder,
            index,
            store,
        }
    }

    /// The best `request.limit` hits, best first.
    ///
    /// A point whose chunk the store has not committed (left by an interrupted
    /// ingest) is never returned, and of several hits with the same text only
    /// the best is kept.
    ///
    /// # Errors
    /// [`QueryError::EmptyQuery`] for a blank query; otherwise the embedder's,
    /// the index's or the store's error.
    pub async fn search(&self, request: &SearchRequest) -> Result<Vec<Hit>, QueryError> {
        let query = request.query.trim();
        if query.is_empty() {
            return Err(QueryError::EmptyQuery);
        }
        if request.limit == 0 {
            return Ok(Vec::new());
        }

        let started = Instant::now();
        let vector = self.embed_query(query).await?;
        let embed_ms = started.elapsed().as_secs_f64() * 1000.0;

        let candidates = request.limit * OVERFETCH + 4;
        let points = self
            .index
            .search(&request.collection, &vector, candidates)
            .await?;
        let hits = self.visible_hits(points, request.limit).await?;

        debug!(
            hits = hits.len(),
            embed_ms,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "query.retrieve"
        );
        Ok(hits)
    }

    async fn embed_query(&self, query: &str) -> Result<Vec<f32>, QueryError> {
        let mut vectors = self.embedder.embed(&[query.to_string()]).await?;
        Ok(vectors.pop().unwrap_or_default())
    }

    async fn visible_hits(
        &self,
        points: Vec<ScoredPoint>,
        limit: usize,
    ) -> Result<Vec<Hit>, QueryError> {
        let ids: Vec<_> = points.iter().map(|point| point.id).collect();
        let visible = self.store.visible_chunks(&ids).await?;

        let mut texts_seen = HashSet::new();
        let hits = points
            .into_iter()
            .filter(|point| visible.contains(&point.id))
            .filter(|point| texts_seen.insert(point.payload.text.clone()))
            .take(limit)
            .map(hit_from_point)
            .collect();
        Ok(hits)
    }
}

fn hit_from_point(point: ScoredPoint) -> Hit {
    let payload = point.payload;
    Hit {
        chunk_id: point.id,
        document_id: payload.document_id,
        score: point.score,
        source_path: payload.source_path,
        kind: payload.kind,
        title: payload.title,
        location: payload.location,
        text: payload.text,
    }
}
