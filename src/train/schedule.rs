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

/// As [`warmup_cosine`], for a run that may also be cut short by a time budget: after warm-up
/// the cosine follows `progress` (0 to 1), whichever of steps and time is further along.
pub fn warmup_cosine_progress(
    step: usize,
    total: usize,
    warmup: usize,
    progress: f64,
    peak: f64,
) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let warmed = warmup as f64 / total.max(1) as f64;
    let after = ((progress - warmed) / (1.0 - warmed).max(1e-9)).clamp(0.0, 1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * after).cos())
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
    fn progress_form_matches_the_step_form_and_follows_time_when_ahead() {
        let (total, warmup, peak) = (110, 10, 0.1);
        for step in [0, 5, 10, 40, 60, 109] {
            let by_steps = step as f64 / total as f64;
            let a = warmup_cosine(step, total, warmup, peak);
            let b = warmup_cosine_progress(step, total, warmup, by_steps, peak);
            assert!((a - b).abs() < 1e-3, "step {step}: {a} vs {b}");
        }
        // Time further along than steps: the rate is already lower, and zero at the end.
        assert!(
            warmup_cosine_progress(20, total, warmup, 0.6, peak)
                < warmup_cosine(20, total, warmup, peak)
        );
        assert_eq!(warmup_cosine_progress(20, total, warmup, 1.0, peak), 0.0);
    }

    #[test]
    fn no_warmup_starts_at_peak() {
        assert_eq!(warmup_cosine(0, 10, 0, 0.5), 0.5);
    }
}
