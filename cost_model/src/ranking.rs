//! How well a model ranks candidates: the quality measures reported on held-out trials.
//!
//! A search only needs the model to *order* candidates, so both measures ignore scale:
//! - **pairwise ranking accuracy**: over all pairs of held-out trials with different measured
//!   speeds, the share the model orders the same way (0.5 is a coin toss);
//! - **top-k recall**: of the k truly fastest held-out trials, the share among the model's k
//!   highest-scored ones.

/// Share of pairs `(i, j)` with `actual[i] != actual[j]` that `predicted` orders the same way;
/// predicted ties count one half. `None` with fewer than one such pair.
pub fn pairwise_ranking_accuracy(predicted: &[f64], actual: &[f64]) -> Option<f64> {
    let n = predicted.len().min(actual.len());
    let (mut agree, mut pairs) = (0.0, 0u64);
    for i in 0..n {
        for j in (i + 1)..n {
            if actual[i] == actual[j] {
                continue;
            }
            pairs += 1;
            let truth = actual[i] > actual[j];
            if predicted[i] == predicted[j] {
                agree += 0.5;
            } else if (predicted[i] > predicted[j]) == truth {
                agree += 1.0;
            }
        }
    }
    (pairs > 0).then(|| agree / pairs as f64)
}

/// Share of the `k` highest `actual` values whose items are also among the `k` highest
/// `predicted` ones. `None` when `k` is 0 or there are fewer than `k` items.
pub fn top_k_recall(predicted: &[f64], actual: &[f64], k: usize) -> Option<f64> {
    let n = predicted.len().min(actual.len());
    if k == 0 || n < k {
        return None;
    }
    let top = |values: &[f64]| -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        order.truncate(k);
        order
    };
    let truly_best = top(actual);
    let predicted_best = top(predicted);
    let hits = truly_best.iter().filter(|i| predicted_best.contains(i)).count();
    Some(hits as f64 / k as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_reversed_and_tied_rankings() {
        let actual = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(pairwise_ranking_accuracy(&[10.0, 20.0, 30.0, 40.0], &actual), Some(1.0));
        assert_eq!(pairwise_ranking_accuracy(&[4.0, 3.0, 2.0, 1.0], &actual), Some(0.0));
        assert_eq!(pairwise_ranking_accuracy(&[0.0; 4], &actual), Some(0.5));
        assert_eq!(pairwise_ranking_accuracy(&[1.0, 2.0], &[5.0, 5.0]), None);
    }

    #[test]
    fn top_k_recall_counts_overlap() {
        let actual = [5.0, 4.0, 3.0, 2.0, 1.0];
        assert_eq!(top_k_recall(&[5.0, 4.0, 0.0, 0.0, 0.0], &actual, 2), Some(1.0));
        assert_eq!(top_k_recall(&[5.0, 0.0, 4.0, 0.0, 0.0], &actual, 2), Some(0.5));
        assert_eq!(top_k_recall(&[1.0; 5], &actual, 0), None);
        assert_eq!(top_k_recall(&[1.0; 5], &actual, 6), None);
    }
}
