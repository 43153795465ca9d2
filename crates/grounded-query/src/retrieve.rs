//! Retrieval: the query's embedding and terms against the vector index,
//! filtered by what the metadata store says is visible, without repeats.

use std::collections::HashSet;
use std::time::Instant;

use grounded_core::Hit;
use grounded_embed::Embedder;
use grounded_index::{
    DEFAULT_RRF_K, PointFilter, Query, ScoredPoint, SearchMode, SparseVector, VectorIndex,
    english_bm25,
};
use grounded_store::MetadataStore;
use tracing::debug;

use crate::QueryError;

/// How many candidates to fetch per wanted hit: some are dropped as invisible,
/// as repeats of a better hit's text, or as overlapping a better hit.
const OVERFETCH: usize = 3;

/// One search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub collection: String,
    pub query: String,
    pub limit: usize,
    pub mode: SearchMode,
    pub filter: PointFilter,
    /// Hits scoring below this are dropped (the mode's own score; see [`Query`]).
    pub min_score: Option<f32>,
    pub rrf_k: usize,
}

impl SearchRequest {
    /// A hybrid search with no filter and no threshold.
    pub fn new(collection: impl Into<String>, query: impl Into<String>, limit: usize) -> Self {
        Self {
            collection: collection.into(),
            query: query.into(),
            limit,
            mode: SearchMode::Hybrid,
            filter: PointFilter::default(),
            min_score: None,
            rrf_k: DEFAULT_RRF_K,
        }
    }
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
    /// ingest) is never returned; of several hits with the same text only the
    /// best is kept, and so is only the best of a document's chunks whose
    /// lines overlap (neighbouring chunks share their overlap tokens).
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
        let dense = match request.mode {
            SearchMode::Sparse => Vec::new(),
            SearchMode::Dense | SearchMode::Hybrid => self.embed_query(query).await?,
        };
        let embed_ms = started.elapsed().as_secs_f64() * 1000.0;

        let index_query = Query {
            mode: request.mode,
            dense,
            sparse: match request.mode {
                SearchMode::Dense => SparseVector::default(),
                SearchMode::Sparse | SearchMode::Hybrid => english_bm25().query(query),
            },
            filter: request.filter.clone(),
            limit: request.limit * OVERFETCH + 4,
            min_score: request.min_score,
            rrf_k: request.rrf_k,
        };
        let points = self.index.search(&request.collection, &index_query).await?;
        let hits = self.visible_hits(points, request.limit).await?;

        debug!(
            hits = hits.len(),
            mode = request.mode.as_str(),
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
        mut points: Vec<ScoredPoint>,
        limit: usize,
    ) -> Result<Vec<Hit>, QueryError> {
        // Equal scores (common in hybrid mode, where rank r of one list ties
        // with rank r of the other) come back in no fixed order; ordering
        // them by chunk id makes a repeated search repeat its hits.
        points.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.0.cmp(&b.id.0)));

        let ids: Vec<_> = points.iter().map(|point| point.id).collect();
        let visible = self.store.visible_chunks(&ids).await?;

        let mut texts_seen = HashSet::new();
        let mut hits: Vec<Hit> = Vec::with_capacity(limit);
        for point in points {
            if hits.len() == limit {
                break;
            }
            if !visible.contains(&point.id) || !texts_seen.insert(point.payload.text.clone()) {
                continue;
            }
            let hit = hit_from_point(point);
            if !hits.iter().any(|better| overlaps(better, &hit)) {
                hits.push(hit);
            }
        }
        Ok(hits)
    }
}

/// Whether two hits are chunks of one document that share lines.
fn overlaps(a: &Hit, b: &Hit) -> bool {
    a.document_id == b.document_id
        && a.location.line_start <= b.location.line_end
        && b.location.line_start <= a.location.line_end
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

#[cfg(test)]
mod tests {
    use grounded_core::{ChunkId, ChunkLocation, DocumentId, DocumentKind};

    use super::*;

    fn hit(document: DocumentId, ordinal: u32, lines: (u32, u32)) -> Hit {
        let text = format!("chunk {ordinal}");
        Hit {
            chunk_id: ChunkId::new(document, ordinal, &text),
            document_id: document,
            score: 1.0,
            source_path: "a.md".to_owned(),
            kind: DocumentKind::Markdown,
            title: None,
            location: ChunkLocation {
                line_start: lines.0,
                line_end: lines.1,
                section: Vec::new(),
                anchor: None,
            },
            text,
        }
    }

    #[test]
    fn chunks_sharing_lines_overlap_only_within_one_document() {
        let a = DocumentId::new("c", "a.md");
        let b = DocumentId::new("c", "b.md");
        assert!(overlaps(&hit(a, 0, (1, 10)), &hit(a, 1, (10, 20))));
        assert!(overlaps(&hit(a, 0, (5, 6)), &hit(a, 1, (1, 30))));
        assert!(!overlaps(&hit(a, 0, (1, 9)), &hit(a, 1, (10, 20))));
        assert!(!overlaps(&hit(a, 0, (1, 10)), &hit(b, 1, (1, 10))));
    }
}
