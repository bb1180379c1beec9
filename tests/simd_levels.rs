//! pretext's own kernels give the same results at every instruction-set level this CPU has
//! (baseline, AVX2, AVX-512), as `PRETEXT_SIMD` selects them. Its own process, because the
//! level is process-wide.
//!
//! Tolerance: the AVX2 and AVX-512 paths add in the same sixteen lanes in the same order and
//! must agree to the bit. The baseline path has no fused multiply-add, so the one kernel
//! written with FMA intrinsics (BatchNorm's gradient sums) rounds differently there: within
//! 1e-5 relative to the largest value.

use pretext::kernels::attention::{self, AttentionMasking, AttentionShape};
use pretext::kernels::batchnorm::{self, NormShape};
use pretext::kernels::conv::{ConvGeometry, conv2d_backward, conv2d_forward};
use pretext::kernels::dropout::{self, DropMask};
use pretext::kernels::pool::{self, PoolShape};
use pretext::kernels::simd::{SimdLevel, set_level};
use pretext::kernels::{activation, layernorm, residual};

/// Reproducible values in [-2, 2), with exact zeros now and then (ReLU edges).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let h = (i ^ seed)
                .wrapping_mul(0x9E37_79B9)
                .rotate_left(13)
                .wrapping_mul(0x85EB_CA6B);
            if h.is_multiple_of(97) {
                0.0
            } else {
                (h >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            }
        })
        .collect()
}

/// Every kernel's outputs on odd sizes (so that lane remainders are exercised).
fn run_all() -> Vec<(&'static str, Vec<f32>)> {
    let mut out = Vec::new();
    let x = values(4_099, 1);
    let dy = values(4_099, 2);
    out.push(("gelu", activation::gelu(&x)));
    out.push(("gelu backward", activation::gelu_backward(&x, &dy)));
    out.push(("add relu", residual::add_relu(&x, &dy)));
    out.push(("dropout", dropout::apply(DropMask::new(0.9, 7), &x)));

    let width = 67;
    let (rows_x, rows_dy) = (&x[..width * 61], &dy[..width * 61]);
    let (gamma, beta) = (values(width, 3), values(width, 4));
    let (y, stats) = layernorm::forward(rows_x, &gamma, &beta, 1e-5);
    let (dx, dg, db) = layernorm::backward(rows_x, &gamma, (&stats.0, &stats.1), rows_dy);
    out.extend([
        ("layer norm", y),
        ("layer norm dx", dx),
        ("dgamma", dg),
        ("dbeta", db),
    ]);

    let s = NormShape {
        batch: 3,
        channels: 5,
        plane: 273,
    };
    let (nx, ndy) = (
        &x[..s.batch * s.channels * s.plane],
        &dy[..s.batch * s.channels * s.plane],
    );
    let (g, b) = (values(5, 5), values(5, 6));
    let (mean, var) = batchnorm::channel_stats(s, nx);
    let y = batchnorm::forward(s, nx, (&g, &b), (&mean, &var), 1e-5, true);
    let (dx, dg, db) = batchnorm::backward(s, nx, (&g, &b), (&mean, &var), 1e-5, true, ndy);
    out.extend([("bn mean", mean), ("bn var", var), ("bn", y), ("bn dx", dx)]);
    out.extend([("bn dgamma", dg), ("bn dbeta", db)]);

    let a = AttentionShape {
        batch: 2,
        len: 13,
        heads: 3,
        head_dim: 7,
    };
    let n = a.batch * a.len * a.heads * a.head_dim;
    let (q, k, v) = (values(n, 8), values(n, 9), values(n, 10));
    let pad: Vec<bool> = (0..a.batch * a.len).map(|i| i % 13 == 12).collect();
    let masking = AttentionMasking {
        masked_score: -1e4,
        dropout: Some(DropMask::new(0.9, 3)),
    };
    let (context, weights) = attention::forward(a, (&q, &k, &v), &pad, masking);
    let [dq, dk, dv] =
        attention::backward(a, (&q, &k, &v), &weights, &pad, masking, &values(n, 11));
    out.extend([("attention", context), ("attention weights", weights)]);
    out.extend([("dq", dq), ("dk", dk), ("dv", dv)]);

    let c = ConvGeometry {
        batch: 2,
        ci: 3,
        h: 11,
        w: 9,
        co: 4,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
    };
    let cx = values(c.batch * c.ci * c.h * c.w, 12);
    let w = values(c.co * c.ci * 9, 13);
    let y = conv2d_forward(&c, &cx, &w);
    let (dx, dw) = conv2d_backward(&c, &cx, &w, &values(y.len(), 14), true, true);
    out.extend([
        ("conv", y),
        ("conv dx", dx.unwrap()),
        ("conv dw", dw.unwrap()),
    ]);

    let p = PoolShape {
        planes: 6,
        h: 9,
        w: 7,
    };
    let px = &x[..6 * 9 * 7];
    let py = pool::forward(p, px);
    let (pyw, winners) = pool::forward_with_winners(p, px);
    let pdx = pool::backward(p, &winners, &values(py.len(), 15));
    out.extend([("pool", py), ("pool (training)", pyw), ("pool dx", pdx)]);
    out
}

/// One test: the level is process-wide, and tests run on parallel threads.
#[test]
fn every_level_gives_the_same_results() {
    let levels = SimdLevel::available();
    println!("levels on this CPU: {levels:?}");
    let top = *levels.last().expect("the baseline is always there");
    assert_eq!(
        set_level(SimdLevel::Avx512),
        top,
        "a level above the CPU's is capped"
    );
    assert_eq!(SimdLevel::parse("avx2"), Some(SimdLevel::Avx2));
    assert_eq!(SimdLevel::parse("sse9"), None);
    let reference = run_all();
    for &level in &levels[..levels.len() - 1] {
        assert_eq!(set_level(level), level);
        for ((name, got), (_, want)) in run_all().iter().zip(&reference) {
            if level > SimdLevel::Baseline {
                assert!(
                    got.iter()
                        .zip(want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name}: {level} differs from {top} in some bit"
                );
                continue;
            }
            let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(want)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-5 * scale,
                "{name}: {level} is {worst} from {top}"
            );
        }
    }
}
