//! The embedding cache seam and an embedder that consults it first.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::{EmbedError, Embedder, Embedding};

/// Durable storage of embeddings keyed by (model id, hash of the text).
#[async_trait]
pub trait EmbeddingCache: Send + Sync {
    /// Returns the cached vectors among `text_hashes`, keyed by hash.
    async fn get_embeddings(
        &self,
        model_id: &str,
        text_hashes: &[String],
    ) -> Result<HashMap<String, Embedding>, EmbedError>;

    /// Stores vectors; an entry already present is left as it is. Returns
    /// how many entries were new.
    async fn put_embeddings(
        &self,
        model_id: &str,
        entries: &[(String, Embedding)],
    ) -> Result<usize, EmbedError>;

    /// Stores vectors, replacing entries already present: for entries found
    /// wrong.
    async fn replace_embeddings(
        &self,
        model_id: &str,
        entries: &[(String, Embedding)],
    ) -> Result<(), EmbedError>;
}

/// How many vectors a call computed and how many inputs were served from the
/// cache (a text repeated within one call is computed once and counted as
/// cached after that), so that the two add up to the number of inputs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Vectors the embedder computed in this call.
    pub computed: usize,
    /// Vectors found in the cache.
    pub cached: usize,
}

/// Embeds through a cache: looks every text up in one call, embeds only the
/// misses, and stores them before returning.
pub struct CachedEmbedder<'a> {
    embedder: &'a dyn Embedder,
    cache: &'a dyn EmbeddingCache,
}

impl<'a> CachedEmbedder<'a> {
    /// Embeds with `embedder`, consulting and filling `cache`.
    pub fn new(embedder: &'a dyn Embedder, cache: &'a dyn EmbeddingCache) -> Self {
        Self { embedder, cache }
    }

    /// Embeds `texts`, whose hashes are `text_hashes` (same order and length).
    ///
    /// # Errors
    /// Fails when the cache or the embedder fails.
    pub async fn embed(
        &self,
        texts: &[String],
        text_hashes: &[String],
    ) -> Result<(Vec<Embedding>, CacheStats), EmbedError> {
        let model_id = self.embedder.model_id();
        let mut found = self.cache.get_embeddings(model_id, text_hashes).await?;
        let wrong = drop_wrong_dimensions(&mut found, model_id, self.embedder.dimension());

        let missing = missing_texts(texts, text_hashes, &found);
        let (miss_texts, miss_hashes): (Vec<String>, Vec<String>) = missing.into_iter().unzip();
        let computed = if miss_texts.is_empty() {
            Vec::new()
        } else {
            self.embedder.embed(&miss_texts).await?
        };

        let entries: Vec<(String, Embedding)> = miss_hashes.into_iter().zip(computed).collect();
        let (replacing, new): (Vec<_>, Vec<_>) = entries
            .iter()
            .cloned()
            .partition(|(hash, _)| wrong.contains(hash));
        self.cache.put_embeddings(model_id, &new).await?;
        if !replacing.is_empty() {
            self.cache.replace_embeddings(model_id, &replacing).await?;
        }
        let stats = CacheStats {
            computed: entries.len(),
            cached: text_hashes.len() - entries.len(),
        };
        found.extend(entries);

        let vectors = text_hashes.iter().map(|hash| found[hash].clone()).collect();
        Ok((vectors, stats))
    }
}

/// Takes out of `found` the cached vectors that the model could not have
/// produced (a wrong length: the cache was filled by something else, such
/// as an import), so that they are computed again and replaced; returns
/// their hashes.
fn drop_wrong_dimensions(
    found: &mut HashMap<String, Embedding>,
    model_id: &str,
    dimension: usize,
) -> std::collections::HashSet<String> {
    let wrong: std::collections::HashSet<String> = found
        .iter()
        .filter(|(_, vector)| vector.len() != dimension)
        .map(|(hash, _)| hash.clone())
        .collect();
    if !wrong.is_empty() {
        tracing::warn!(
            model_id,
            count = wrong.len(),
            dimension,
            "cached vectors of the wrong dimension; computing and replacing them"
        );
    }
    found.retain(|hash, _| !wrong.contains(hash));
    wrong
}

/// The texts not in `found`, each once even when it repeats.
fn missing_texts(
    texts: &[String],
    text_hashes: &[String],
    found: &HashMap<String, Embedding>,
) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    texts
        .iter()
        .zip(text_hashes)
        .filter(|(_, hash)| !found.contains_key(*hash) && seen.insert(hash.as_str()))
        .map(|(text, hash)| (text.clone(), hash.clone()))
        .collect()
}
