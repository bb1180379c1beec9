//! Summaries of a cell's seeds: mean, sample standard deviation and a 95 % confidence interval
//! of the mean (Student's t).

/// Mean, sample standard deviation and 95 % confidence half-width of `values`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub half_width: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let half_width = if n > 1 {
            t_975(n - 1) * std / (n as f64).sqrt()
        } else {
            0.0
        };
        Summary {
            n,
            mean,
            std,
            half_width,
        }
    }
    pub fn low(&self) -> f64 {
        self.mean - self.half_width
    }
    pub fn high(&self) -> f64 {
        self.mean + self.half_width
    }
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        _ => 1.96,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_seeds_use_t_with_two_degrees_of_freedom() {
        let s = Summary::of(&[0.5, 0.7, 0.6]);
        assert!((s.mean - 0.6).abs() < 1e-12);
        assert!((s.std - 0.1).abs() < 1e-12);
        assert!((s.half_width - 4.303 * 0.1 / 3f64.sqrt()).abs() < 1e-12);
        assert!(s.low() < s.mean && s.mean < s.high());
        let one = Summary::of(&[0.4]);
        assert_eq!((one.std, one.half_width), (0.0, 0.0));
        assert_eq!(t_975(100), 1.96);
    }
}
