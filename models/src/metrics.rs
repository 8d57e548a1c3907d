//! Ranking metrics for labelled evaluation: ROC-AUC and average precision.
//!
//! Both take scores (higher = more anomalous) and labels (true = anomaly) and handle ties the
//! way scikit-learn does: ROC-AUC is the Mann–Whitney statistic with average ranks, and
//! average precision steps once per distinct score. Both are `None` when a class is absent.

/// ROC-AUC.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|l| **l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum += avg;
            }
        }
        i = j + 1;
    }
    let p = pos as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * neg as f64))
}

/// Average precision: Σ (Rₙ − Rₙ₋₁) Pₙ over the distinct score thresholds, highest first.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|l| **l).count();
    if pos == 0 || pos == labels.len() {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            if labels[k] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
        }
        let recall = tp / pos as f64;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_ap_match_hand_computed_values() {
        // scikit-learn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75,
        // average_precision_score(...) = 0.8333…
        let s = [0.1, 0.4, 0.35, 0.8];
        let l = [false, false, true, true];
        assert!((roc_auc(&s, &l).unwrap() - 0.75).abs() < 1e-12);
        assert!((average_precision(&s, &l).unwrap() - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(roc_auc(&s, &[false; 4]), None);
        // Ties: all equal scores give AUC 0.5 and AP = prevalence.
        let t = [1.0; 4];
        assert!((roc_auc(&t, &l).unwrap() - 0.5).abs() < 1e-12);
        assert!((average_precision(&t, &l).unwrap() - 0.5).abs() < 1e-12);
    }
}
