//! PCA for features before clustering: the covariance as a matrix product, its eigenvectors by
//! nalgebra's symmetric eigensolver, and an optional whitening.

use nalgebra::DMatrix;
use rayon::prelude::*;

/// A fitted projection onto the top `components` principal axes.
#[derive(Clone, Debug)]
pub struct Pca {
    pub dim: usize,
    pub components: usize,
    pub mean: Vec<f32>,
    /// Row-major `components × dim`, highest variance first.
    pub axes: Vec<f32>,
    /// Variance along each axis.
    pub variances: Vec<f64>,
    pub whiten: bool,
}

impl Pca {
    /// Fits on `n` row-major rows of `dim` values.
    pub fn fit(
        values: &[f32],
        n: usize,
        dim: usize,
        components: usize,
        whiten: bool,
    ) -> Result<Pca, String> {
        if components == 0 || components > dim {
            return Err(format!(
                "PCA components must be in 1..={dim}, not {components}"
            ));
        }
        if n < 2 {
            return Err("PCA needs at least 2 rows".into());
        }
        let mut mean = vec![0f64; dim];
        for row in values.chunks(dim) {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let centred: Vec<f32> = values
            .par_chunks(dim)
            .flat_map_iter(|row| row.iter().zip(&mean).map(|(v, m)| v - m))
            .collect();
        // Covariance Xᵀ X / (n − 1), in f32 with the GEMM then symmetrised in f64.
        let mut cov = vec![0f32; dim * dim];
        // SAFETY: `centred` is n × dim and `cov` dim × dim, matching the strides below.
        unsafe {
            gemm::gemm(
                dim,
                dim,
                n,
                cov.as_mut_ptr(),
                1,
                dim as isize,
                false,
                centred.as_ptr(),
                dim as isize,
                1,
                centred.as_ptr(),
                1,
                dim as isize,
                0.0,
                1.0 / (n - 1) as f32,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(rayon::current_num_threads()),
            );
        }
        let sym = DMatrix::from_fn(dim, dim, |i, j| {
            (cov[i * dim + j] as f64 + cov[j * dim + i] as f64) / 2.0
        });
        let eig = sym.symmetric_eigen();
        let mut order: Vec<usize> = (0..dim).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let mut axes = Vec::with_capacity(components * dim);
        let mut variances = Vec::with_capacity(components);
        for &c in order.iter().take(components) {
            axes.extend(eig.eigenvectors.column(c).iter().map(|&v| v as f32));
            variances.push(eig.eigenvalues[c].max(0.0));
        }
        Ok(Pca {
            dim,
            components,
            mean,
            axes,
            variances,
            whiten,
        })
    }

    /// Projects row-major rows of `dim` values to rows of `components` values.
    pub fn transform(&self, values: &[f32]) -> Vec<f32> {
        let scale: Vec<f32> = self
            .variances
            .iter()
            .map(|&v| {
                if self.whiten {
                    1.0 / (v.sqrt() as f32 + 1e-6)
                } else {
                    1.0
                }
            })
            .collect();
        values
            .par_chunks(self.dim)
            .flat_map_iter(|row| {
                let centred: Vec<f32> = row.iter().zip(&self.mean).map(|(v, m)| v - m).collect();
                self.axes
                    .chunks(self.dim)
                    .zip(&scale)
                    .map(move |(axis, s)| {
                        s * axis.iter().zip(&centred).map(|(a, c)| a * c).sum::<f32>()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Scales each row to unit length (rows of zeros stay zero).
pub fn l2_normalise(values: &mut [f32], dim: usize) {
    values.par_chunks_mut(dim).for_each(|row| {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn recovers_the_dominant_axis_and_its_variance() {
        // Points along (3, 4)/5 with variance 25 plus small isotropic noise.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let n = 4000;
        let mut values = Vec::with_capacity(n * 3);
        for _ in 0..n {
            let t: f32 = (rng.random::<f32>() - 0.5) * (12.0 * 25.0f32).sqrt();
            let e = |r: &mut rand_chacha::ChaCha8Rng| (r.random::<f32>() - 0.5) * 0.1;
            values.extend([
                0.6 * t + e(&mut rng) + 1.0,
                0.8 * t + e(&mut rng) - 2.0,
                e(&mut rng),
            ]);
        }
        let pca = Pca::fit(&values, n, 3, 2, false).unwrap();
        let axis = &pca.axes[..3];
        let along = (axis[0] * 0.6 + axis[1] * 0.8).abs();
        assert!(along > 0.999, "{axis:?}");
        assert!((pca.variances[0] - 25.0).abs() < 1.5, "{:?}", pca.variances);
        assert!(pca.variances[1] < 0.01);
        let projected = pca.transform(&values);
        assert_eq!(projected.len(), n * 2);
        let mean0: f32 = projected.chunks(2).map(|r| r[0]).sum::<f32>() / n as f32;
        assert!(mean0.abs() < 1e-3);
        let white = Pca::fit(&values, n, 3, 1, true).unwrap().transform(&values);
        let var: f32 = white.iter().map(|v| v * v).sum::<f32>() / (n - 1) as f32;
        assert!((var - 1.0).abs() < 1e-2, "{var}");
    }

    #[test]
    fn l2_rows_have_unit_length() {
        let mut v = vec![3.0, 4.0, 0.0, 0.0];
        l2_normalise(&mut v, 2);
        assert_eq!(v, [0.6, 0.8, 0.0, 0.0]);
    }
}
