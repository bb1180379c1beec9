//! Learning-rate schedule: linear warm-up to the peak, then cosine decay to zero.

/// The learning rate for optimiser step `step` (0-based) of `total` steps.
pub fn warmup_cosine(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_linearly_then_decays_to_zero() {
        let (total, warmup, peak) = (110, 10, 0.1);
        assert!((warmup_cosine(0, total, warmup, peak) - 0.01).abs() < 1e-12);
        assert!((warmup_cosine(9, total, warmup, peak) - 0.1).abs() < 1e-12);
        assert!((warmup_cosine(10, total, warmup, peak) - 0.1).abs() < 1e-12);
        assert!((warmup_cosine(60, total, warmup, peak) - 0.05).abs() < 1e-12);
        assert!(warmup_cosine(109, total, warmup, peak) < 1e-3);
        let lrs: Vec<f64> = (10..110)
            .map(|s| warmup_cosine(s, total, warmup, peak))
            .collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn no_warmup_starts_at_peak() {
        assert_eq!(warmup_cosine(0, 10, 0, 0.5), 0.5);
    }
}
