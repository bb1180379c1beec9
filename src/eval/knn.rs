//! Weighted k-nearest-neighbour classification on cosine similarity (Wu et al. 2018's
//! evaluation): each of the k most similar labelled samples votes for its class with weight
//! exp(similarity / T).

use rayon::prelude::*;

use super::features::Features;

fn l2_normalised(f: &Features) -> Vec<f32> {
    let mut out = f.values.clone();
    for row in out.chunks_exact_mut(f.dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// Predicted class of every query row.
pub fn predict(
    memory: &Features,
    memory_labels: &[u32],
    queries: &Features,
    classes: usize,
    k: usize,
    temperature: f64,
) -> Vec<u32> {
    let mem = l2_normalised(memory);
    let qs = l2_normalised(queries);
    let d = memory.dim;
    let k = k.min(memory.rows).max(1);
    qs.par_chunks_exact(d)
        .map(|q| {
            let mut sims: Vec<(f32, u32)> = mem
                .chunks_exact(d)
                .zip(memory_labels)
                .map(|(m, &l)| (m.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), l))
                .collect();
            sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            let mut votes = vec![0f64; classes];
            for &(s, l) in &sims[..k] {
                votes[l as usize] += (s as f64 / temperature).exp();
            }
            votes
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(c, _)| c as u32)
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_direction_wins() {
        let memory = Features {
            rows: 4,
            dim: 2,
            values: vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9],
        };
        let labels = [0, 0, 1, 1];
        let queries = Features {
            rows: 2,
            dim: 2,
            values: vec![5.0, 0.2, 0.3, 4.0],
        };
        assert_eq!(predict(&memory, &labels, &queries, 2, 2, 0.07), vec![0, 1]);
    }

    #[test]
    fn close_neighbours_outweigh_many_far_ones() {
        // One very similar sample of class 1 against three weakly similar of class 0.
        let memory = Features {
            rows: 4,
            dim: 2,
            values: vec![1.0, 0.0, 0.2, 1.0, 0.2, 1.0, 0.2, 1.0],
        };
        let labels = [1, 0, 0, 0];
        let queries = Features {
            rows: 1,
            dim: 2,
            values: vec![1.0, 0.0],
        };
        assert_eq!(predict(&memory, &labels, &queries, 2, 4, 0.07), vec![1]);
    }
}
