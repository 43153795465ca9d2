//! Retrieval quality measures over judged queries, as trec_eval (and so
//! pytrec_eval and BEIR) defines them: nDCG@k with graded gains and a log2
//! discount, recall@k, reciprocal rank and average precision cut at k; their
//! means over a benchmark; latency percentiles; and query vectors computed
//! beforehand, so that a search can be timed without its query's embedding.
//!
//! Reading a benchmark and running its queries is the CLI's `eval`, not this
//! module's. A document counts as relevant when its grade is above 0.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use grounded_embed::{EmbedError, Embedder, Embedding, TokenCounter};
use serde::Serialize;

/// The judged relevance of documents to one query: document id to grade (> 0).
pub type Judgments = HashMap<String, u32>;

/// The measures of one query's ranking, or their means over many queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Scores {
    pub ndcg_at_10: f64,
    pub recall_at_10: f64,
    pub recall_at_100: f64,
    pub mrr_at_10: f64,
    pub map_at_100: f64,
}

impl Scores {
    /// The measures of `ranked`, best first, against `judged`.
    pub fn of(ranked: &[String], judged: &Judgments) -> Self {
        Self {
            ndcg_at_10: ndcg_at(10, ranked, judged),
            recall_at_10: recall_at(10, ranked, judged),
            recall_at_100: recall_at(100, ranked, judged),
            mrr_at_10: reciprocal_rank_at(10, ranked, judged),
            map_at_100: average_precision_at(100, ranked, judged),
        }
    }

    /// The mean of each measure over `all`, as trec_eval averages over
    /// queries; zero for none.
    pub fn mean(all: &[Scores]) -> Self {
        if all.is_empty() {
            return Self::default();
        }
        let count = all.len() as f64;
        let mean = |measure: fn(&Scores) -> f64| all.iter().map(measure).sum::<f64>() / count;
        Self {
            ndcg_at_10: mean(|s| s.ndcg_at_10),
            recall_at_10: mean(|s| s.recall_at_10),
            recall_at_100: mean(|s| s.recall_at_100),
            mrr_at_10: mean(|s| s.mrr_at_10),
            map_at_100: mean(|s| s.map_at_100),
        }
    }
}

/// Normalised discounted cumulative gain of the first `k` of `ranked`.
///
/// The gain of a document at rank r (1-based) is its grade / log2(r + 1);
/// the ideal ranking orders the judged documents by grade. A document listed
/// twice counts once, at its first rank. 0 when nothing is judged relevant.
pub fn ndcg_at(k: usize, ranked: &[String], judged: &Judgments) -> f64 {
    let ideal = ideal_dcg(k, judged);
    if ideal == 0.0 {
        return 0.0;
    }
    let dcg: f64 = first_ranks(k, ranked)
        .enumerate()
        .map(|(rank, id)| gain(judged.get(id).copied().unwrap_or(0), rank))
        .sum();
    dcg / ideal
}

/// The share of the relevant documents found among the first `k` of
/// `ranked`; 0 when nothing is judged relevant.
pub fn recall_at(k: usize, ranked: &[String], judged: &Judgments) -> f64 {
    let relevant = relevant_count(judged);
    if relevant == 0 {
        return 0.0;
    }
    let found = first_ranks(k, ranked)
        .filter(|id| is_relevant(id, judged))
        .count();
    found as f64 / relevant as f64
}

/// 1 / the rank of the first relevant document among the first `k` of
/// `ranked`; 0 when none of them is relevant.
pub fn reciprocal_rank_at(k: usize, ranked: &[String], judged: &Judgments) -> f64 {
    first_ranks(k, ranked)
        .position(|id| is_relevant(id, judged))
        .map_or(0.0, |rank| 1.0 / (rank as f64 + 1.0))
}

/// Average precision cut at `k`: the sum, over the relevant documents among
/// the first `k` of `ranked`, of the precision at each one's rank, divided
/// by the number of relevant documents judged (found or not); 0 when
/// nothing is judged relevant.
pub fn average_precision_at(k: usize, ranked: &[String], judged: &Judgments) -> f64 {
    let relevant = relevant_count(judged);
    if relevant == 0 {
        return 0.0;
    }
    let mut found = 0;
    let mut precisions = 0.0;
    for (rank, id) in first_ranks(k, ranked).enumerate() {
        if is_relevant(id, judged) {
            found += 1;
            precisions += f64::from(found) / (rank as f64 + 1.0);
        }
    }
    precisions / relevant as f64
}

/// The first `k` distinct ids of `ranked`, each at its first rank.
fn first_ranks(k: usize, ranked: &[String]) -> impl Iterator<Item = &str> {
    let mut seen = HashSet::new();
    ranked
        .iter()
        .map(String::as_str)
        .filter(move |id| seen.insert(*id))
        .take(k)
}

fn is_relevant(id: &str, judged: &Judgments) -> bool {
    judged.get(id).is_some_and(|&grade| grade > 0)
}

fn relevant_count(judged: &Judgments) -> usize {
    judged.values().filter(|&&grade| grade > 0).count()
}

fn ideal_dcg(k: usize, judged: &Judgments) -> f64 {
    let mut grades: Vec<u32> = judged
        .values()
        .copied()
        .filter(|&grade| grade > 0)
        .collect();
    grades.sort_unstable_by(|a, b| b.cmp(a));
    grades
        .into_iter()
        .take(k)
        .enumerate()
        .map(|(rank, grade)| gain(grade, rank))
        .sum()
}

/// The discounted gain of a grade at a 0-based rank.
fn gain(grade: u32, rank: usize) -> f64 {
    f64::from(grade) / (rank as f64 + 2.0).log2()
}

/// The durations of repeated runs of one thing, for percentiles.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    millis: Vec<f64>,
}

impl Latencies {
    pub fn push(&mut self, elapsed: Duration) {
        self.millis.push(elapsed.as_secs_f64() * 1000.0);
    }

    /// The `p`th percentile in milliseconds by the nearest-rank method: the
    /// smallest duration that at least `p` % of the runs do not exceed; 0
    /// with no runs.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.millis.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
        sorted
            .get(rank.clamp(1, sorted.len().max(1)) - 1)
            .copied()
            .unwrap_or(0.0)
    }
}

/// An embedder that answers with query vectors computed beforehand by the
/// model it wraps, so that a [`crate::Retriever`] given it searches without
/// embedding: the time of that search excludes the query's embedding.
///
/// A text given no vector beforehand is embedded by the model, so a search
/// never fails for it; it is then timed with its embedding.
pub struct PrecomputedQueries<'a> {
    model: &'a dyn Embedder,
    vectors: HashMap<String, Embedding>,
}

impl<'a> PrecomputedQueries<'a> {
    pub fn new(model: &'a dyn Embedder) -> Self {
        Self {
            model,
            vectors: HashMap::new(),
        }
    }

    /// Embeds `query` with the model, trimmed as the retriever trims it, and
    /// keeps the vector; returns how long the embedding took.
    ///
    /// # Errors
    /// The model's error.
    pub async fn embed_query(&mut self, query: &str) -> Result<Duration, EmbedError> {
        let query = query.trim().to_owned();
        let started = Instant::now();
        let mut vectors = self.model.embed(std::slice::from_ref(&query)).await?;
        let elapsed = started.elapsed();
        self.vectors
            .insert(query, vectors.pop().unwrap_or_default());
        Ok(elapsed)
    }
}

#[async_trait]
impl Embedder for PrecomputedQueries<'_> {
    fn model_id(&self) -> &str {
        self.model.model_id()
    }

    fn dimension(&self) -> usize {
        self.model.dimension()
    }

    fn max_input_tokens(&self) -> usize {
        self.model.max_input_tokens()
    }

    fn token_counter(&self) -> TokenCounter<'_> {
        self.model.token_counter()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbedError> {
        let known: Option<Vec<Embedding>> = texts
            .iter()
            .map(|text| self.vectors.get(text).cloned())
            .collect();
        match known {
            Some(vectors) => Ok(vectors),
            None => self.model.embed(texts).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|id| (*id).to_owned()).collect()
    }

    fn judged(pairs: &[(&str, u32)]) -> Judgments {
        pairs
            .iter()
            .map(|(id, grade)| ((*id).to_owned(), *grade))
            .collect()
    }

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() < 1e-9
    }

    #[test]
    fn a_perfect_ranking_scores_one_and_a_miss_zero() {
        let judged = judged(&[("a", 1), ("b", 1)]);
        let perfect = Scores::of(&ids(&["a", "b", "x"]), &judged);
        for measure in [
            perfect.ndcg_at_10,
            perfect.recall_at_10,
            perfect.recall_at_100,
            perfect.mrr_at_10,
            perfect.map_at_100,
        ] {
            assert!(close(measure, 1.0), "{perfect:?}");
        }
        assert_eq!(Scores::of(&ids(&["x", "y"]), &judged), Scores::default());
        assert_eq!(recall_at(100, &ids(&["x", "a"]), &judged), 0.5);
    }

    /// Judged a = 2, b = 1, c = 1 (three relevant); ranked x a y b z, so a is
    /// at rank 2, b at rank 4 and c not retrieved.
    /// - DCG@10 = 2/log2(3) + 1/log2(5) = 1.2618595 + 0.4306766 = 1.6925361;
    ///   ideal = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.6309298 + 0.5 =
    ///   3.1309298; nDCG@10 = 1.6925361 / 3.1309298 = 0.5405858.
    /// - Recall@10 = 2/3; Recall@2 = 1/3 (only a).
    /// - MRR@10 = 1/2 (a at rank 2); MRR@1 = 0 (x is not relevant).
    /// - AP@100 = (P@2 + P@4) / 3 = (1/2 + 2/4) / 3 = 1/3; AP@3 = (1/2) / 3
    ///   = 1/6, the denominator staying the three judged relevant.
    ///
    /// pytrec_eval gives the same for this run (ndcg_cut_10, recall_10,
    /// recall_100, recip_rank, map_cut_100, map_cut_3).
    #[test]
    fn a_ranking_worked_out_by_hand() {
        let judged = judged(&[("a", 2), ("b", 1), ("c", 1)]);
        let ranked = ids(&["x", "a", "y", "b", "z"]);
        let scores = Scores::of(&ranked, &judged);

        assert!(
            close(scores.ndcg_at_10, 0.540_585_767_945_010_2),
            "{scores:?}"
        );
        assert!(close(scores.recall_at_10, 2.0 / 3.0), "{scores:?}");
        assert!(close(scores.recall_at_100, 2.0 / 3.0), "{scores:?}");
        assert!(close(scores.mrr_at_10, 0.5), "{scores:?}");
        assert!(close(scores.map_at_100, 1.0 / 3.0), "{scores:?}");

        assert!(close(recall_at(2, &ranked, &judged), 1.0 / 3.0));
        assert_eq!(reciprocal_rank_at(1, &ranked, &judged), 0.0);
        assert!(close(average_precision_at(3, &ranked, &judged), 1.0 / 6.0));
    }

    /// Ranked a a b with b the one relevant document: the repeat of a counts
    /// once, so b is at rank 2. MRR = 1/2; AP = P@2 / 1 = 1/2; recall@2 = 1;
    /// nDCG = (1/log2(3)) / (1/log2(2)) = 0.6309298.
    #[test]
    fn a_repeated_document_counts_once_at_its_first_rank() {
        let judged = judged(&[("b", 1)]);
        let ranked = ids(&["a", "a", "b"]);
        assert_eq!(reciprocal_rank_at(10, &ranked, &judged), 0.5);
        assert_eq!(average_precision_at(100, &ranked, &judged), 0.5);
        assert_eq!(recall_at(2, &ranked, &judged), 1.0);
        assert!(close(ndcg_at(10, &ranked, &judged), 1.0 / 3f64.log2()));
    }

    /// Relevant documents beyond the cut count in no measure: b at rank 3 is
    /// out of the top 2, so nDCG@2 = 0, MRR@2 = 0 and AP@2 = 0.
    #[test]
    fn ranks_beyond_k_do_not_count() {
        let judged = judged(&[("b", 1)]);
        let ranked = ids(&["x", "y", "b"]);
        assert_eq!(ndcg_at(2, &ranked, &judged), 0.0);
        assert_eq!(reciprocal_rank_at(2, &ranked, &judged), 0.0);
        assert_eq!(average_precision_at(2, &ranked, &judged), 0.0);
        assert!(close(average_precision_at(3, &ranked, &judged), 1.0 / 3.0));
    }

    /// Judged a = 2, b = 1. Ranked b a: DCG = 1/log2(2) + 2/log2(3) = 1 +
    /// 1.2618595 = 2.2618595; ideal = 2 + 1/log2(3) = 2.6309298; nDCG =
    /// 0.8597187. The binary measures ignore grades: recall, MRR and AP are 1.
    #[test]
    fn grades_weigh_in_ndcg_only() {
        let judged = judged(&[("a", 2), ("b", 1)]);
        let swapped = Scores::of(&ids(&["b", "a"]), &judged);
        assert!(
            close(swapped.ndcg_at_10, 0.859_718_699_852_197_2),
            "{swapped:?}"
        );
        assert_eq!(swapped.recall_at_10, 1.0);
        assert_eq!(swapped.mrr_at_10, 1.0);
        assert_eq!(swapped.map_at_100, 1.0);
    }

    #[test]
    fn no_relevant_judgment_scores_zero_not_nan() {
        let judged = judged(&[("a", 0)]);
        assert_eq!(Scores::of(&ids(&["a"]), &judged), Scores::default());
    }

    #[test]
    fn means_average_each_measure_over_queries() {
        let one = Scores {
            ndcg_at_10: 1.0,
            recall_at_10: 1.0,
            recall_at_100: 1.0,
            mrr_at_10: 1.0,
            map_at_100: 1.0,
        };
        let mean = Scores::mean(&[one, Scores::default()]);
        assert_eq!(mean.ndcg_at_10, 0.5);
        assert_eq!(mean.map_at_100, 0.5);
        assert_eq!(Scores::mean(&[]), Scores::default());
    }

    /// Nearest rank: of 1..=5 ms, p50 is the 3rd (ceil(2.5)) and p95 the 5th
    /// (ceil(4.75)); of 1..=20 ms, p95 is the 19th (ceil(19.0)).
    #[test]
    fn percentiles_are_nearest_ranks() {
        let mut five = Latencies::default();
        for ms in [5, 1, 4, 2, 3] {
            five.push(Duration::from_millis(ms));
        }
        assert_eq!(five.percentile_ms(50.0), 3.0);
        assert_eq!(five.percentile_ms(95.0), 5.0);

        let mut twenty = Latencies::default();
        for ms in 1..=20 {
            twenty.push(Duration::from_millis(ms));
        }
        assert_eq!(twenty.percentile_ms(95.0), 19.0);
        assert_eq!(twenty.percentile_ms(50.0), 10.0);
        assert_eq!(Latencies::default().percentile_ms(50.0), 0.0);
    }
}
