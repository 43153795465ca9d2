//! Retrieval quality measures over judged queries, as BEIR and TREC define
//! them: nDCG@k with graded gains and a log2 discount, and recall@k.

use std::collections::HashMap;

/// The judged relevance of documents to one query: document id to grade (> 0).
pub type Judgments = HashMap<String, u32>;

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

    let mut seen = std::collections::HashSet::new();
    let dcg: f64 = ranked
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .take(k)
        .enumerate()
        .map(|(rank, id)| gain(judged.get(id).copied().unwrap_or(0), rank))
        .sum();
    dcg / ideal
}

/// The share of the judged documents found among the first `k` of `ranked`.
pub fn recall_at(k: usize, ranked: &[String], judged: &Judgments) -> f64 {
    let relevant = judged.values().filter(|&&grade| grade > 0).count();
    if relevant == 0 {
        return 0.0;
    }

    let mut seen = std::collections::HashSet::new();
    let found = ranked
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .take(k)
        .filter(|id| judged.get(*id).is_some_and(|&grade| grade > 0))
        .count();
    found as f64 / relevant as f64
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

    #[test]
    fn a_perfect_ranking_scores_one_and_a_miss_zero() {
        let judged = judged(&[("a", 1), ("b", 1)]);
        assert!((ndcg_at(10, &ids(&["a", "b", "x"]), &judged) - 1.0).abs() < 1e-12);
        assert_eq!(ndcg_at(10, &ids(&["x", "y"]), &judged), 0.0);
        assert_eq!(recall_at(100, &ids(&["x", "a"]), &judged), 0.5);
    }

    #[test]
    fn a_relevant_document_at_rank_two_is_discounted_by_log2_of_three() {
        let judged = judged(&[("a", 1)]);
        let ndcg = ndcg_at(10, &ids(&["x", "a"]), &judged);
        assert!((ndcg - 1.0 / 3f64.log2()).abs() < 1e-12, "{ndcg}");
    }

    #[test]
    fn ranks_beyond_k_and_repeats_do_not_count() {
        let judged = judged(&[("a", 1)]);
        assert_eq!(ndcg_at(1, &ids(&["x", "a"]), &judged), 0.0);
        assert_eq!(recall_at(2, &ids(&["x", "x", "a"]), &judged), 1.0);
        assert_eq!(recall_at(1, &ids(&["x", "a"]), &judged), 0.0);
    }

    #[test]
    fn graded_judgments_prefer_the_higher_grade_first() {
        let judged = judged(&[("a", 2), ("b", 1)]);
        let best = ndcg_at(10, &ids(&["a", "b"]), &judged);
        let swapped = ndcg_at(10, &ids(&["b", "a"]), &judged);
        assert!((best - 1.0).abs() < 1e-12);
        assert!(swapped < best);
    }
}
