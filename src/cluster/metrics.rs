//! Agreement between a clustering and true labels: NMI, ARI and purity. Each is invariant to how
//! the clusters are numbered.

use std::collections::BTreeMap;

/// Contingency counts `n[cluster][class]` and the marginals.
struct Table {
    cells: BTreeMap<(u32, u32), u64>,
    rows: BTreeMap<u32, u64>,
    cols: BTreeMap<u32, u64>,
    n: u64,
}

fn table(clusters: &[u32], classes: &[u32]) -> Table {
    assert_eq!(
        clusters.len(),
        classes.len(),
        "one cluster per labelled point"
    );
    let mut t = Table {
        cells: BTreeMap::new(),
        rows: BTreeMap::new(),
        cols: BTreeMap::new(),
        n: clusters.len() as u64,
    };
    for (&a, &b) in clusters.iter().zip(classes) {
        *t.cells.entry((a, b)).or_default() += 1;
        *t.rows.entry(a).or_default() += 1;
        *t.cols.entry(b).or_default() += 1;
    }
    t
}

fn entropy(counts: &BTreeMap<u32, u64>, n: f64) -> f64 {
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// Normalised mutual information with the arithmetic-mean normalisation (scikit-learn's
/// default): I(U;V) / ((H(U) + H(V)) / 2). 1 when both partitions are a single block.
pub fn nmi(clusters: &[u32], classes: &[u32]) -> f64 {
    let t = table(clusters, classes);
    let n = t.n as f64;
    let (hu, hv) = (entropy(&t.rows, n), entropy(&t.cols, n));
    if hu == 0.0 && hv == 0.0 {
        return 1.0;
    }
    let mi: f64 = t
        .cells
        .iter()
        .map(|(&(a, b), &c)| {
            let c = c as f64;
            c / n * (c * n / (t.rows[&a] as f64 * t.cols[&b] as f64)).ln()
        })
        .sum();
    (mi / ((hu + hv) / 2.0)).clamp(0.0, 1.0)
}

/// Adjusted Rand index (Hubert & Arabie 1985): pair agreement corrected for chance; 1 for equal
/// partitions, about 0 for random ones.
pub fn ari(clusters: &[u32], classes: &[u32]) -> f64 {
    let t = table(clusters, classes);
    let pairs = |c: u64| (c * c.saturating_sub(1) / 2) as f64;
    let index: f64 = t.cells.values().map(|&c| pairs(c)).sum();
    let a: f64 = t.rows.values().map(|&c| pairs(c)).sum();
    let b: f64 = t.cols.values().map(|&c| pairs(c)).sum();
    let expected = a * b / pairs(t.n).max(1.0);
    let max = (a + b) / 2.0;
    if max == expected {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

/// The share of points whose cluster's most common class is their own.
pub fn purity(clusters: &[u32], classes: &[u32]) -> f64 {
    let t = table(clusters, classes);
    let mut best: BTreeMap<u32, u64> = BTreeMap::new();
    for (&(a, _), &c) in &t.cells {
        let e = best.entry(a).or_default();
        *e = (*e).max(c);
    }
    best.values().sum::<u64>() as f64 / t.n.max(1) as f64
}

/// All three, as stored in `results.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterQuality {
    pub nmi: f64,
    pub ari: f64,
    pub purity: f64,
}

pub fn quality(clusters: &[u32], classes: &[u32]) -> ClusterQuality {
    ClusterQuality {
        nmi: nmi(clusters, classes),
        ari: ari(clusters, classes),
        purity: purity(clusters, classes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_scikit_learn() {
        // sklearn: normalized_mutual_info_score = 0.8, adjusted_rand_score = 0.5714285714285715.
        let (truth, pred) = ([0, 0, 1, 1], [0, 0, 1, 2]);
        assert!((nmi(&pred, &truth) - 0.8).abs() < 1e-12);
        assert!((ari(&pred, &truth) - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(purity(&pred, &truth), 1.0);
        // sklearn: nmi = 0.5158037429793889, ari = 0.24242424242424243.
        let (truth, pred) = ([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]);
        assert!((nmi(&pred, &truth) - 0.5158037429793889).abs() < 1e-12);
        assert!((ari(&pred, &truth) - 0.24242424242424243).abs() < 1e-12);
        assert!((purity(&pred, &truth) - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn renumbering_clusters_changes_nothing_and_identity_scores_one() {
        let truth = [0, 1, 2, 2, 1, 0, 0];
        let renumbered = [5, 9, 7, 7, 9, 5, 5];
        assert!((nmi(&renumbered, &truth) - 1.0).abs() < 1e-12);
        assert!((ari(&renumbered, &truth) - 1.0).abs() < 1e-12);
        assert_eq!(purity(&renumbered, &truth), 1.0);
    }

    #[test]
    fn independent_partitions_score_near_zero() {
        // Clusters by parity, classes by halves: independent by construction.
        let truth: Vec<u32> = (0..1000).map(|i| (i >= 500) as u32).collect();
        let pred: Vec<u32> = (0..1000).map(|i| (i % 2) as u32).collect();
        assert!(nmi(&pred, &truth).abs() < 1e-9);
        assert!(ari(&pred, &truth).abs() < 2e-3);
        assert!((purity(&pred, &truth) - 0.5).abs() < 1e-12);
    }
}
