//! The fixed permutation set of the jigsaw tasks, chosen greedily for maximal Hamming distance
//! (Noroozi & Favaro 2016, Algorithm 1): start from a random permutation of the 9 tiles, then
//! repeatedly add the permutation whose smallest distance to those already chosen is largest.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub const TILES: usize = 9;

/// A permutation: `p[i]` is the grid cell whose tile is shown in slot `i`.
pub type Permutation = [u8; TILES];

/// The chosen permutations and their pairwise Hamming distances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PermutationSet {
    pub permutations: Vec<Permutation>,
    pub seed: u64,
    pub min_hamming: usize,
    pub mean_hamming: f64,
}

pub fn hamming(a: &Permutation, b: &Permutation) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// All 9! permutations in lexicographic order.
fn all_permutations() -> Vec<Permutation> {
    let mut out = Vec::with_capacity(362_880);
    let mut p: Permutation = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    loop {
        out.push(p);
        // Next lexicographic permutation.
        let Some(i) = (0..TILES - 1).rev().find(|&i| p[i] < p[i + 1]) else {
            return out;
        };
        let j = (i + 1..TILES)
            .rev()
            .find(|&j| p[j] > p[i])
            .expect("a larger element");
        p.swap(i, j);
        p[i + 1..].reverse();
    }
}

impl PermutationSet {
    /// `count` permutations, deterministic by `seed`. Ties between equally distant candidates go
    /// to the first in lexicographic order.
    pub fn generate(count: usize, seed: u64) -> Result<PermutationSet, String> {
        if !(2..=1000).contains(&count) {
            return Err(format!(
                "the permutation set size must be 2 to 1000, not {count}"
            ));
        }
        let all = all_permutations();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let first = rng.random_range(0..all.len());
        let mut chosen = vec![all[first]];
        // Smallest distance from every candidate to the chosen set; chosen ones drop to 0.
        let mut nearest: Vec<u8> = all.iter().map(|p| hamming(p, &all[first]) as u8).collect();
        while chosen.len() < count {
            let (best, _) = nearest
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
                .expect("candidates remain");
            let p = all[best];
            chosen.push(p);
            for (d, q) in nearest.iter_mut().zip(&all) {
                *d = (*d).min(hamming(q, &p) as u8);
            }
        }
        Ok(Self::from_permutations(chosen, seed))
    }

    fn from_permutations(permutations: Vec<Permutation>, seed: u64) -> PermutationSet {
        let mut min = usize::MAX;
        let mut sum = 0usize;
        let mut pairs = 0usize;
        for (i, a) in permutations.iter().enumerate() {
            for b in &permutations[i + 1..] {
                let d = hamming(a, b);
                min = min.min(d);
                sum += d;
                pairs += 1;
            }
        }
        PermutationSet {
            permutations,
            seed,
            min_hamming: min,
            mean_hamming: sum as f64 / pairs.max(1) as f64,
        }
    }

    pub fn len(&self) -> usize {
        self.permutations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.permutations.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumerates_every_permutation_once() {
        let all = all_permutations();
        assert_eq!(all.len(), 362_880);
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
    }

    #[test]
    fn set_has_no_duplicates_and_reports_true_distances() {
        let set = PermutationSet::generate(100, 3).unwrap();
        assert_eq!(set.len(), 100);
        let mut sorted = set.permutations.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 100, "duplicates in the set");
        for p in &set.permutations {
            let mut cells = *p;
            cells.sort();
            assert_eq!(
                cells,
                [0, 1, 2, 3, 4, 5, 6, 7, 8],
                "{p:?} is not a permutation"
            );
        }
        // Recomputed by brute force over all pairs.
        let mut min = usize::MAX;
        let mut sum = 0;
        for i in 0..100 {
            for j in i + 1..100 {
                let d = hamming(&set.permutations[i], &set.permutations[j]);
                min = min.min(d);
                sum += d;
            }
        }
        assert_eq!(set.min_hamming, min);
        assert!((set.mean_hamming - sum as f64 / 4950.0).abs() < 1e-12);
        // Greedy maximal-distance selection keeps 100 permutations far apart (random ones would
        // include pairs at distance 2 or 3).
        assert!(set.min_hamming >= 6, "min Hamming {}", set.min_hamming);
    }

    #[test]
    fn deterministic_by_seed() {
        let a = PermutationSet::generate(20, 1).unwrap();
        assert_eq!(a, PermutationSet::generate(20, 1).unwrap());
        assert_ne!(
            a.permutations,
            PermutationSet::generate(20, 2).unwrap().permutations
        );
        assert!(PermutationSet::generate(1, 0).is_err());
    }
}
