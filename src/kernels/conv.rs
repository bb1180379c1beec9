//! 2-D convolution on NCHW f32 slices: im2col per image and one matrix product per image
//! (Caffe's layout), for the forward pass and both backward passes.
//!
//! burn-flex computes the weight gradient as a convolution over batch-swapped tensors and the
//! input gradient as a transposed convolution; the swaps make contiguous copies that took
//! about a sixth of the ConvNet-4 training step. Here every pass reads and writes NCHW as it
//! is: the forward and input-gradient products are `[co, k] x [k, n]` and `[k, co] x [co, n]`
//! with `k = ci·kh·kw` and `n = ho·wo`, the weight gradient `[co, n] x [n, k]` summed over
//! images, and transposes are strides handed to `gemm`.

use rayon::prelude::*;

use super::matmul::matmul;

/// Shapes of one convolution: input `[batch, ci, h, w]`, weight `[co, ci, kh, kw]`, square
/// stride and symmetric zero padding, no dilation, no groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }
    /// Output positions per image.
    fn n(&self) -> usize {
        self.out_h() * self.out_w()
    }
    fn image_in(&self) -> usize {
        self.ci * self.h * self.w
    }
    fn image_out(&self) -> usize {
        self.co * self.n()
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.image_out()
    }

    /// The output positions `ow` whose input column `ow·stride + j - pad` lies inside the image.
    fn valid_columns(&self, j: usize) -> std::ops::Range<usize> {
        let (s, p, wo) = (self.stride, self.pad, self.out_w());
        let lo = p.saturating_sub(j).div_ceil(s);
        // ow·s + j - p <= w - 1  <=>  ow <= (w - 1 + p - j) / s
        let hi = if self.w + p > j {
            ((self.w - 1 + p - j) / s + 1).min(wo)
        } else {
            0
        };
        lo..hi.max(lo)
    }

    /// Stride 1 and an output the size of the input: each column row is the input plane
    /// shifted, so it moves as one block instead of row by row.
    fn is_same(&self) -> bool {
        self.stride == 1 && self.out_h() == self.h && self.out_w() == self.w
    }
}

/// Kernel position (i, j) of a "same" convolution: output rows `first..end` read input rows
/// shifted by `i - pad`, and every output reads the input column shifted by `j - pad`.
struct SameShift {
    first: usize,
    end: usize,
    /// Offset in the input plane of the span's first element (negative at the top-left).
    start: isize,
    dj: isize,
    h: usize,
    w: usize,
}

impl SameShift {
    fn new(g: &ConvGeometry, i: usize, j: usize) -> Self {
        let di = i as isize - g.pad as isize;
        let dj = j as isize - g.pad as isize;
        let h = g.h as isize;
        let first = (-di).clamp(0, h) as usize;
        let end = (h - di).clamp(first as isize, h) as usize;
        Self {
            first,
            end,
            start: (first as isize + di) * g.w as isize + dj,
            dj,
            h: g.h,
            w: g.w,
        }
    }

    /// The span positions whose shifted input lies inside the plane, and those input
    /// positions. The span positions left out wrap around a row edge.
    fn overlap(&self) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let len = ((self.end - self.first) * self.w) as isize;
        let lo = (-self.start).clamp(0, len);
        let hi = (self.h as isize * self.w as isize - self.start).clamp(lo, len);
        if lo == hi {
            // Nothing overlaps (a plane narrower than the kernel's reach).
            return (0..0, 0..0);
        }
        (
            lo as usize..hi as usize,
            (self.start + lo) as usize..(self.start + hi) as usize,
        )
    }

    /// Zero the span's columns whose input column lies beyond the left or right edge.
    fn zero_wrapped(&self, span: &mut [f32]) {
        let cut = self.dj.unsigned_abs().min(self.w);
        if cut == 0 {
            return;
        }
        if cut == 1 {
            // Every 3x3 kernel's case, as one store per image row: `fill` calls memset, whose
            // call costs more than the store on ResNet-18's 4x4 and 8x8 planes.
            let at = if self.dj < 0 { 0 } else { self.w - 1 };
            for row in span.chunks_exact_mut(self.w) {
                row[at] = 0.0;
            }
            return;
        }
        for row in span.chunks_exact_mut(self.w) {
            if self.dj < 0 {
                row[..cut].fill(0.0);
            } else {
                row[self.w - cut..].fill(0.0);
            }
        }
    }
}

crate::simd_fn! {
    /// `col[(c·kh + i)·kw + j][oh·wo + ow] = x[c][oh·s + i - p][ow·s + j - p]`, zero outside;
    /// `col`'s rows are `ld` apart, so that the images of a group sit side by side.
    fn im2col(g: &ConvGeometry, x: &[f32], col: &mut [f32], ld: usize) -> () {
        let (ho, wo, n) = (g.out_h(), g.out_w(), g.n());
        if g.is_same() {
            for c in 0..g.ci {
                let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
                for i in 0..g.kh {
                    for j in 0..g.kw {
                        let row = &mut col[((c * g.kh + i) * g.kw + j) * ld..][..n];
                        let shift = SameShift::new(g, i, j);
                        row[..shift.first * g.w].fill(0.0);
                        row[shift.end * g.w..].fill(0.0);
                        let (dst, src) = shift.overlap();
                        let span = &mut row[shift.first * g.w..shift.end * g.w];
                        span[..dst.start].fill(0.0);
                        span[dst.end..].fill(0.0);
                        span[dst].copy_from_slice(&plane[src]);
                        shift.zero_wrapped(span);
                    }
                }
            }
            return;
        }
        for c in 0..g.ci {
            let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
            for i in 0..g.kh {
                for j in 0..g.kw {
                    let row = &mut col[((c * g.kh + i) * g.kw + j) * ld..][..n];
                    let cols = g.valid_columns(j);
                    for oh in 0..ho {
                        let out = &mut row[oh * wo..(oh + 1) * wo];
                        let ih = (oh * g.stride + i) as isize - g.pad as isize;
                        if ih < 0 || ih >= g.h as isize {
                            out.fill(0.0);
                            continue;
                        }
                        out[..cols.start].fill(0.0);
                        out[cols.end..].fill(0.0);
                        if cols.is_empty() {
                            continue;
                        }
                        let src = &plane[ih as usize * g.w..][..g.w];
                        let first = cols.start * g.stride + j - g.pad;
                        if g.stride == 1 {
                            out[cols.clone()].copy_from_slice(&src[first..first + cols.len()]);
                        } else {
                            for (k, o) in out[cols.clone()].iter_mut().enumerate() {
                                *o = src[first + k * g.stride];
                            }
                        }
                    }
                }
            }
        }
    }
}

crate::simd_fn! {
    /// The adjoint of [`im2col`]: adds every column entry back onto the input position it was
    /// read from. `dx` must start at zero.
    /// `col` is scratch: the "same" path zeroes its entries that fall outside the image.
    fn col2im(g: &ConvGeometry, col: &mut [f32], ld: usize, dx: &mut [f32]) -> () {
        let (ho, wo, n) = (g.out_h(), g.out_w(), g.n());
        if g.is_same() {
            for c in 0..g.ci {
                let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
                for i in 0..g.kh {
                    for j in 0..g.kw {
                        let row = &mut col[((c * g.kh + i) * g.kw + j) * ld..][..n];
                        let shift = SameShift::new(g, i, j);
                        let span = &mut row[shift.first * g.w..shift.end * g.w];
                        shift.zero_wrapped(span);
                        let (dst, src) = shift.overlap();
                        for (d, s) in plane[src].iter_mut().zip(&span[dst]) {
                            *d += s;
                        }
                    }
                }
            }
            return;
        }
        for c in 0..g.ci {
            let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
            for i in 0..g.kh {
                for j in 0..g.kw {
                    let row = &col[((c * g.kh + i) * g.kw + j) * ld..][..n];
                    let cols = g.valid_columns(j);
                    if cols.is_empty() {
                        continue;
                    }
                    for oh in 0..ho {
                        let ih = (oh * g.stride + i) as isize - g.pad as isize;
                        if ih < 0 || ih >= g.h as isize {
                            continue;
                        }
                        let dst = &mut plane[ih as usize * g.w..][..g.w];
                        let src = &row[oh * wo..(oh + 1) * wo][cols.clone()];
                        let first = cols.start * g.stride + j - g.pad;
                        if g.stride == 1 {
                            for (d, s) in dst[first..first + src.len()].iter_mut().zip(src) {
                                *d += s;
                            }
                        } else {
                            for (k, s) in src.iter().enumerate() {
                                dst[first + k * g.stride] += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Output positions a matrix product should see at least: below this, `gemm`'s packing and
/// edge handling dominate (ConvNet-4's last stage has 16 positions per image).
const MIN_COLUMNS: usize = 512;

/// Images per matrix product: enough that the group has [`MIN_COLUMNS`] output positions,
/// in a power-of-two number of groups, so that the groups share out evenly over 2, 4, 8
/// threads (a 224-pixel ResNet's last stage, 49 positions, made 11 + 11 + 10 images of a
/// batch of 32: one thread idle for a third of the stage). The split does not depend on the
/// thread count, so neither do the results.
fn group_size(g: &ConvGeometry) -> usize {
    let batch = g.batch.max(1);
    let least = MIN_COLUMNS.div_ceil(g.n().max(1)).clamp(1, batch);
    let most_groups = batch / least;
    let groups = if most_groups.is_power_of_two() {
        most_groups
    } else {
        most_groups.next_power_of_two() / 2
    };
    batch.div_ceil(groups.max(1))
}

/// `[co, m·n]` (the images of a group side by side) to `[m, co, n]` (NCHW), or back.
fn interleave(co: usize, n: usize, m: usize, from: &[f32], to: &mut [f32], to_nchw: bool) {
    for o in 0..co {
        for i in 0..m {
            let (wide, nchw) = (o * m * n + i * n, (i * co + o) * n);
            if to_nchw {
                to[nchw..nchw + n].copy_from_slice(&from[wide..wide + n]);
            } else {
                to[wide..wide + n].copy_from_slice(&from[nchw..nchw + n]);
            }
        }
    }
}

/// The convolution `x [batch, ci, h, w] ⋆ weight [co, ci, kh, kw]`: `[batch, co, ho, wo]`.
/// Each group of images is one product `[co, k] x [k, m·n]`.
pub fn conv2d_forward(g: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.batch * g.image_in(), "input length");
    assert_eq!(weight.len(), g.co * g.k(), "weight length");
    let (k, n, co, group) = (g.k(), g.n(), g.co, group_size(g));
    let mut out = super::zeros(g.output_len());
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(group * g.image_out())
        .zip(x.par_chunks(group * g.image_in()))
        .for_each_init(
            || (vec![0.0f32; k * group * n], vec![0.0f32; co * group * n]),
            |(col, wide), (out, x)| {
                let m = x.len() / g.image_in();
                let ld = m * n;
                for (i, x) in x.chunks(g.image_in()).enumerate() {
                    im2col(g, x, &mut col[i * n..], ld);
                }
                matmul(
                    (co, ld, k),
                    wide,
                    ld,
                    false,
                    (weight, k, 1),
                    (col, ld, 1),
                    1.0,
                );
                interleave(co, n, m, wide, out, true);
            },
        );
    out
}

/// Gradients of [`conv2d_forward`] from the output gradient `dout [batch, co, ho, wo]`:
/// `(dx, dweight)`, each only when asked for. The weight gradient is summed over a fixed
/// split of the batch in a fixed order, so that it does not depend on the thread count or
/// on work stealing (resumed runs must end bit for bit where uninterrupted ones do).
pub fn conv2d_backward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    dout: &[f32],
    want_dx: bool,
    want_dweight: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    assert_eq!(x.len(), g.batch * g.image_in(), "input length");
    assert_eq!(weight.len(), g.co * g.k(), "weight length");
    assert_eq!(dout.len(), g.output_len(), "output-gradient length");
    let (k, n, co, group) = (g.k(), g.n(), g.co, group_size(g));
    let mut dx = want_dx.then(|| super::zeros(x.len()));
    if g.output_len() == 0 {
        return (dx, want_dweight.then(|| vec![0.0f32; co * k]));
    }
    // At most 8 partial weight gradients, each over whole groups.
    let groups = g.batch.div_ceil(group);
    let part = groups.div_ceil(8) * group;
    let parts: Vec<(&[f32], &[f32])> = x
        .chunks(part * g.image_in())
        .zip(dout.chunks(part * g.image_out()))
        .collect();
    // Each part's slice of dx (or None), beside its inputs.
    let dx_parts: Vec<Option<&mut [f32]>> = match dx.as_mut() {
        Some(dx) => dx.chunks_mut(part * g.image_in()).map(Some).collect(),
        None => parts.iter().map(|_| None).collect(),
    };
    let work: Vec<_> = parts.into_iter().zip(dx_parts).collect();
    let partials: Vec<Vec<f32>> = work
        .into_par_iter()
        .map(|((x, dout), mut dx)| {
            let mut dw = vec![0.0f32; if want_dweight { co * k } else { 0 }];
            let mut col = vec![0.0f32; k * group * n];
            let mut wide = vec![0.0f32; co * group * n];
            let images = x.len() / g.image_in();
            for start in (0..images).step_by(group) {
                let m = group.min(images - start);
                let ld = m * n;
                let xs = &x[start * g.image_in()..(start + m) * g.image_in()];
                let ds = &dout[start * g.image_out()..(start + m) * g.image_out()];
                interleave(co, n, m, ds, &mut wide, false);
                if want_dweight {
                    for (i, x) in xs.chunks(g.image_in()).enumerate() {
                        im2col(g, x, &mut col[i * n..], ld);
                    }
                    // dW[co×k] += dout[co×mn] · colᵀ[mn×k]
                    matmul(
                        (co, k, ld),
                        &mut dw,
                        k,
                        true,
                        (&wide, ld, 1),
                        (&col, 1, ld),
                        1.0,
                    );
                }
                if let Some(dx) = dx.as_deref_mut() {
                    // dcol[k×mn] = Wᵀ[k×co] · dout[co×mn]
                    matmul(
                        (k, ld, co),
                        &mut col,
                        ld,
                        false,
                        (weight, 1, k),
                        (&wide, ld, 1),
                        1.0,
                    );
                    let dx = &mut dx[start * g.image_in()..(start + m) * g.image_in()];
                    for (i, dx) in dx.chunks_mut(g.image_in()).enumerate() {
                        col2im(g, &mut col[i * n..], ld, dx);
                    }
                }
            }
            dw
        })
        .collect();
    // Each value adds its partials in the same order, on whichever thread: a 512-channel
    // 3x3 layer's eight partials are 19 M additions, too many for one thread alone.
    let dweight = want_dweight.then(|| {
        let mut sum = vec![0.0f32; co * k];
        sum.par_chunks_mut(super::ELEMENTWISE_CHUNK)
            .enumerate()
            .for_each(|(c, sum)| {
                let start = c * super::ELEMENTWISE_CHUNK;
                for p in &partials {
                    for (s, v) in sum.iter_mut().zip(&p[start..]) {
                        *s += v;
                    }
                }
            });
        sum
    });
    (dx, dweight)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution by its definition, in f64.
    fn reference(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f64> {
        let (ho, wo) = (g.out_h(), g.out_w());
        let mut out = vec![0.0f64; g.output_len()];
        for b in 0..g.batch {
            for o in 0..g.co {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut s = 0.0f64;
                        for c in 0..g.ci {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let ih = (oh * g.stride + i) as isize - g.pad as isize;
                                    let iw = (ow * g.stride + j) as isize - g.pad as isize;
                                    if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((b * g.ci + c) * g.h + ih as usize) * g.w + iw as usize];
                                    let wv = w[((o * g.ci + c) * g.kh + i) * g.kw + j];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out[((b * g.co + o) * ho + oh) * wo + ow] = s;
                    }
                }
            }
        }
        out
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn geometries() -> Vec<ConvGeometry> {
        let g = |batch, ci, h, w, co, kh, kw, stride, pad| ConvGeometry {
            batch,
            ci,
            h,
            w,
            co,
            kh,
            kw,
            stride,
            pad,
        };
        vec![
            g(2, 3, 7, 5, 4, 3, 3, 1, 1),
            g(3, 2, 8, 8, 5, 3, 3, 2, 1),
            g(1, 4, 6, 9, 3, 1, 1, 2, 0),
            g(2, 2, 5, 5, 3, 3, 3, 1, 0),
            g(1, 1, 2, 3, 2, 3, 3, 1, 2),
            // "Same" convolutions other than 3x3: 1x1, and 5x5 with padding 2 on a narrow plane.
            g(2, 3, 6, 5, 2, 1, 1, 1, 0),
            g(2, 2, 7, 3, 3, 5, 5, 1, 2),
            // Planes smaller than the kernel's reach: 1x1 and 1x2 under a 3x3 kernel.
            g(2, 2, 1, 1, 3, 3, 3, 1, 1),
            g(2, 2, 1, 2, 3, 3, 3, 1, 1),
            // 256 positions per image: groups of two images, the last one alone.
            g(5, 2, 16, 16, 3, 3, 3, 1, 1),
            // Enough groups for several partial weight gradients.
            g(40, 1, 16, 16, 2, 3, 3, 1, 1),
        ]
    }

    #[test]
    fn groups_come_in_powers_of_two_with_enough_columns() {
        let at = |batch, side| ConvGeometry {
            batch,
            ci: 8,
            h: side,
            w: side,
            co: 8,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
        };
        // (batch, side) -> images per group: the 224-pixel ResNets' last two stages, CIFAR's.
        for ((batch, side), want) in [((32, 7), 16), ((32, 14), 4), ((32, 28), 1), ((64, 4), 32)] {
            let g = at(batch, side);
            let size = group_size(&g);
            assert_eq!(size, want, "batch {batch}, {side}x{side}");
            assert!(size * g.n() >= MIN_COLUMNS.min(batch * g.n()));
            assert!(batch.div_ceil(size).is_power_of_two());
        }
        assert_eq!(
            group_size(&at(3, 7)),
            3,
            "fewer images than one group needs"
        );
    }

    #[test]
    fn forward_matches_the_definition() {
        for (t, g) in geometries().into_iter().enumerate() {
            let x = values(g.batch * g.image_in(), t as u64);
            let w = values(g.co * g.k(), 100 + t as u64);
            let got = conv2d_forward(&g, &x, &w);
            let want = reference(&g, &x, &w);
            for (a, b) in got.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-4, "{g:?}: {a} vs {b}");
            }
        }
    }

    /// The backward pass is the adjoint of the forward one: for random `dout`,
    /// `<dout, conv(x, w)>` is linear in x and in w, so its gradients are exact dot products
    /// `<dx, x'>` = `<dout, conv(x', w)>` and `<dw, w'>` = `<dout, conv(x, w')>`.
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for (t, g) in geometries().into_iter().enumerate() {
            let x = values(g.batch * g.image_in(), t as u64);
            let w = values(g.co * g.k(), 100 + t as u64);
            let dout = values(g.output_len(), 200 + t as u64);
            let (dx, dw) = conv2d_backward(&g, &x, &w, &dout, true, true);
            let (dx, dw) = (dx.unwrap(), dw.unwrap());
            let dot =
                |a: &[f32], b: &[f64]| a.iter().zip(b).map(|(a, b)| *a as f64 * b).sum::<f64>();
            let x2 = values(x.len(), 300 + t as u64);
            let w2 = values(w.len(), 400 + t as u64);
            let lhs_x: f64 = dx.iter().zip(&x2).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs_x = dot(&dout, &reference(&g, &x2, &w));
            assert!(
                (lhs_x - rhs_x).abs() < 1e-3 * (1.0 + rhs_x.abs()),
                "{g:?} dx: {lhs_x} vs {rhs_x}"
            );
            let lhs_w: f64 = dw.iter().zip(&w2).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs_w = dot(&dout, &reference(&g, &x, &w2));
            assert!(
                (lhs_w - rhs_w).abs() < 1e-3 * (1.0 + rhs_w.abs()),
                "{g:?} dw: {lhs_w} vs {rhs_w}"
            );
            // Asking for one gradient gives the same numbers as asking for both.
            let (only_dx, none) = conv2d_backward(&g, &x, &w, &dout, true, false);
            assert!(none.is_none());
            assert_eq!(only_dx.unwrap(), dx);
            let (none, only_dw) = conv2d_backward(&g, &x, &w, &dout, false, true);
            assert!(none.is_none());
            let only_dw = only_dw.unwrap();
            for (a, b) in only_dw.iter().zip(&dw) {
                assert!((a - b).abs() < 1e-4);
            }
        }
    }
}
