//! BM25 term weights as sparse vectors, computed in process.
//!
//! Text is split into words, lowercased, stripped of English stop words and
//! stemmed (Snowball) by Qdrant's own tokenizer pipeline, the one the Qdrant
//! server applies to its full-text indexes and BM25 inference, so both
//! backends see the same terms. A term's index is a hash of its stem.
//!
//! A document's value for a term is BM25's term-frequency part,
//! `tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))`; the inverse
//! document frequency is left to the index, which knows the collection
//! (Qdrant's IDF modifier on [`crate::SPARSE_VECTOR`]). A query's value for
//! each of its terms is 1, so a hit's score is the BM25 sum over the terms
//! query and chunk share.

use std::sync::LazyLock;

use ordered_float::NotNan;
use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};

use crate::IndexError;

/// BM25's term-frequency saturation.
const K1: f64 = 1.2;

/// BM25's length normalisation: 0 ignores a chunk's length, 1 divides by it.
const B: f64 = 0.75;

/// The length, in terms left after stop words, that a chunk is normalised
/// against: about what a full chunk of the default 254 word-pieces keeps.
const AVERAGE_TERMS: f64 = 128.0;

/// Terms of a text with their weights, indices ascending and unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// The English model, built once per process.
///
/// # Panics
/// Never in a correct build: [`Bm25::english`] fails only for invalid
/// constant settings, which the unit tests below would catch.
pub fn english_bm25() -> &'static Bm25 {
    static MODEL: LazyLock<Bm25> =
        LazyLock::new(|| Bm25::english().expect("the fixed BM25 settings are valid"));
    &MODEL
}

/// Computes the sparse vectors of chunks and queries; build one and share it.
#[derive(Debug)]
pub struct Bm25 {
    model: EdgeBm25,
}

impl Bm25 {
    /// The English model: lowercasing, English stop words, Snowball stemming.
    ///
    /// # Errors
    /// [`IndexError::InvalidInput`] if the tokenizer cannot be built, which
    /// with these fixed settings means a broken build.
    pub fn english() -> Result<Self, IndexError> {
        let config = EdgeBm25Config {
            k: parameter(K1)?,
            b: parameter(B)?,
            avg_len: parameter(AVERAGE_TERMS)?,
            language: Some("english".to_owned()),
            lowercase: Some(true),
            ..EdgeBm25Config::default()
        };
        let model = EdgeBm25::new(config).map_err(unbuildable)?;
        Ok(Self { model })
    }

    /// The term weights of a chunk's text.
    pub fn document(&self, text: &str) -> SparseVector {
        sorted(self.model.embed_document(text))
    }

    /// The terms of a query, each weighted 1.
    pub fn query(&self, text: &str) -> SparseVector {
        sorted(self.model.embed_query(text))
    }
}

fn parameter(value: f64) -> Result<NotNan<f64>, IndexError> {
    NotNan::new(value).map_err(unbuildable)
}

fn unbuildable(err: impl std::fmt::Display) -> IndexError {
    IndexError::InvalidInput {
        collection: String::new(),
        message: format!("the BM25 model could not be built: {err}"),
    }
}

/// Qdrant's sparse vector as ours, sorted by index (Qdrant's wire format
/// does not require it, but equal texts then give equal vectors).
fn sorted(vector: qdrant_edge::SparseVector) -> SparseVector {
    let mut pairs: Vec<(u32, f32)> = vector.indices.into_iter().zip(vector.values).collect();
    pairs.sort_unstable_by_key(|(index, _)| *index);
    pairs.dedup_by_key(|(index, _)| *index);
    let (indices, values) = pairs.into_iter().unzip();
    SparseVector { indices, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_case_and_inflection_do_not_change_the_terms() {
        let bm25 = Bm25::english().expect("model");
        let plain = bm25.query("borrow checker rules");
        let noisy = bm25.query("The BORROWING of the Checkers, and its rule");
        assert_eq!(plain.indices, noisy.indices);
        assert!(plain.values.iter().all(|&value| value == 1.0));
    }

    #[test]
    fn repeated_terms_weigh_more_and_only_stop_words_give_nothing() {
        let bm25 = Bm25::english().expect("model");
        let once = bm25.document("ownership moves values");
        let twice = bm25.document("ownership moves values; ownership again");
        let weight = |vector: &SparseVector, term: u32| {
            let at = vector.indices.iter().position(|&index| index == term);
            at.map(|at| vector.values[at]).unwrap_or(0.0)
        };
        let ownership = bm25.query("ownership").indices[0];
        assert!(weight(&twice, ownership) > weight(&once, ownership));
        assert!(bm25.query("the of and it").is_empty());
    }
}
