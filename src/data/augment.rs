//! Image transforms as plain functions over one normalised image, channel-major (`[c][h][w]`).

use rand::Rng;

/// Shape of one image: channels, height, width.
pub type Shape = [usize; 3];

/// A random crop of the image padded by `pad` zeros on every side, back to the original size.
/// Zero is the channel mean after normalisation, so the padding adds no colour cue.
pub fn random_crop_padded(
    img: &[f32],
    [c, h, w]: Shape,
    pad: usize,
    rng: &mut impl Rng,
) -> Vec<f32> {
    if pad == 0 {
        return img.to_vec();
    }
    let dy = rng.random_range(0..=2 * pad) as isize - pad as isize;
    let dx = rng.random_range(0..=2 * pad) as isize - pad as isize;
    let mut out = vec![0.0; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            let sy = y as isize + dy;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            for x in 0..w {
                let sx = x as isize + dx;
                if sx >= 0 && sx < w as isize {
                    out[(ch * h + y) * w + x] = img[(ch * h + sy as usize) * w + sx as usize];
                }
            }
        }
    }
    out
}

/// Mirror left to right, in place.
pub fn hflip(img: &mut [f32], [c, h, w]: Shape) {
    for row in img.chunks_exact_mut(w).take(c * h) {
        row.reverse();
    }
}

/// Rotate a square image by `quarter_turns` × 90° counter-clockwise.
pub fn rotate90(img: &[f32], [c, h, w]: Shape, quarter_turns: usize) -> Vec<f32> {
    assert_eq!(h, w, "rotate90 needs a square image");
    let n = h;
    let mut out = vec![0.0; c * n * n];
    for ch in 0..c {
        let src = &img[ch * n * n..(ch + 1) * n * n];
        let dst = &mut out[ch * n * n..(ch + 1) * n * n];
        for y in 0..n {
            for x in 0..n {
                let (sy, sx) = match quarter_turns % 4 {
                    0 => (y, x),
                    1 => (x, n - 1 - y),
                    2 => (n - 1 - y, n - 1 - x),
                    _ => (n - 1 - x, y),
                };
                dst[y * n + x] = src[sy * n + sx];
            }
        }
    }
    out
}

/// The centred square of side `min(h, w)`.
pub fn center_square(img: &[f32], [c, h, w]: Shape) -> (Vec<f32>, Shape) {
    let s = h.min(w);
    if h == w {
        return (img.to_vec(), [c, h, w]);
    }
    let (oy, ox) = ((h - s) / 2, (w - s) / 2);
    let mut out = Vec::with_capacity(c * s * s);
    for ch in 0..c {
        for y in 0..s {
            let start = (ch * h + oy + y) * w + ox;
            out.extend_from_slice(&img[start..start + s]);
        }
    }
    (out, [c, s, s])
}

/// Bilinear resize to `out_h` x `out_w` (pixel centres aligned, as PyTorch's
/// `align_corners=False`).
pub fn resize_bilinear(img: &[f32], [c, h, w]: Shape, out_h: usize, out_w: usize) -> Vec<f32> {
    if (h, w) == (out_h, out_w) {
        return img.to_vec();
    }
    let axis = |out: usize, len: usize| -> Vec<(usize, usize, f32)> {
        let scale = len as f32 / out as f32;
        (0..out)
            .map(|o| {
                let src = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
                let lo = src.floor() as usize;
                (lo, (lo + 1).min(len - 1), src - lo as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(out_h, h), axis(out_w, w));
    let mut out = Vec::with_capacity(c * out_h * out_w);
    for ch in 0..c {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                let top = plane[y0 * w + x0] * (1.0 - fx) + plane[y0 * w + x1] * fx;
                let bottom = plane[y1 * w + x0] * (1.0 - fx) + plane[y1 * w + x1] * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    out
}

/// The `size` x `size` window whose top-left corner is (`y`, `x`).
pub fn crop(img: &[f32], [c, h, w]: Shape, y: usize, x: usize, size: usize) -> Vec<f32> {
    assert!(y + size <= h && x + size <= w, "crop outside the image");
    let mut out = Vec::with_capacity(c * size * size);
    for ch in 0..c {
        for row in y..y + size {
            let start = (ch * h + row) * w + x;
            out.extend_from_slice(&img[start..start + size]);
        }
    }
    out
}

/// Each channel shifted to mean 0 and scaled to standard deviation 1 (left flat if constant),
/// so that a tile's brightness and contrast say nothing about where it came from.
pub fn standardise_channels(img: &mut [f32], [c, h, w]: Shape) {
    let n = h * w;
    for plane in img.chunks_mut(n).take(c) {
        let mean = plane.iter().sum::<f32>() / n as f32;
        let var = plane.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n as f32;
        let inv = if var > 1e-12 { 1.0 / var.sqrt() } else { 1.0 };
        plane.iter_mut().for_each(|v| *v = (*v - mean) * inv);
    }
}

/// Every channel replaced by the mean of the channels.
pub fn grayscale(img: &mut [f32], [c, h, w]: Shape) {
    let n = h * w;
    for i in 0..n {
        let mean = (0..c).map(|ch| img[ch * n + i]).sum::<f32>() / c as f32;
        (0..c).for_each(|ch| img[ch * n + i] = mean);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn resize_keeps_constant_images_and_crop_takes_the_window() {
        let shape = [2, 4, 4];
        let img: Vec<f32> = (0..32).map(|i| if i < 16 { 3.0 } else { -1.0 }).collect();
        let big = resize_bilinear(&img, shape, 7, 9);
        assert_eq!(big.len(), 2 * 7 * 9);
        assert!(big[..63].iter().all(|&v| (v - 3.0).abs() < 1e-6));
        assert!(big[63..].iter().all(|&v| (v + 1.0).abs() < 1e-6));
        let ramp: Vec<f32> = (0..16).map(|i| i as f32).collect();
        assert_eq!(crop(&ramp, [1, 4, 4], 1, 2, 2), [6.0, 7.0, 10.0, 11.0]);
        // Doubling a horizontal ramp keeps it monotone and inside its range.
        let up = resize_bilinear(&ramp, [1, 4, 4], 8, 8);
        assert!(up[..8].windows(2).all(|p| p[0] <= p[1]));
        assert!(up.iter().all(|&v| (0.0..=15.0).contains(&v)));
    }

    #[test]
    fn standardise_and_grayscale() {
        let mut img = vec![1.0, 3.0, 5.0, 7.0, 2.0, 2.0, 2.0, 2.0];
        standardise_channels(&mut img, [2, 2, 2]);
        let mean: f32 = img[..4].iter().sum::<f32>() / 4.0;
        let var: f32 = img[..4].iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
        assert_eq!(&img[4..], &[0.0; 4]);
        let mut rgb = vec![0.0, 3.0, 6.0, 0.0, 3.0, 0.0];
        grayscale(&mut rgb, [3, 1, 2]);
        assert_eq!(rgb, [3.0, 1.0, 3.0, 1.0, 3.0, 1.0]);
    }
    use super::*;
    use rand::SeedableRng;

    fn ramp(shape: Shape) -> Vec<f32> {
        (0..shape.iter().product::<usize>())
            .map(|i| i as f32)
            .collect()
    }

    #[test]
    fn four_quarter_turns_are_the_identity_and_one_turn_is_not() {
        let shape = [2, 5, 5];
        let img = ramp(shape);
        let mut r = img.clone();
        for _ in 0..4 {
            r = rotate90(&r, shape, 1);
        }
        assert_eq!(r, img);
        assert_ne!(rotate90(&img, shape, 1), img);
        assert_eq!(
            rotate90(&rotate90(&img, shape, 1), shape, 1),
            rotate90(&img, shape, 2)
        );
    }

    #[test]
    fn quarter_turn_is_counter_clockwise() {
        // 2x2: [a b; c d] turned counter-clockwise is [b d; a c].
        let r = rotate90(&[1.0, 2.0, 3.0, 4.0], [1, 2, 2], 1);
        assert_eq!(r, vec![2.0, 4.0, 1.0, 3.0]);
    }

    #[test]
    fn flip_twice_is_identity() {
        let shape = [3, 4, 6];
        let img = ramp(shape);
        let mut f = img.clone();
        hflip(&mut f, shape);
        assert_eq!(f[0], 5.0);
        hflip(&mut f, shape);
        assert_eq!(f, img);
    }

    #[test]
    fn padded_crop_keeps_size_and_shifts_content() {
        let shape = [1, 8, 8];
        let img = vec![1.0; 64];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut saw_zero = false;
        for _ in 0..20 {
            let out = random_crop_padded(&img, shape, 2, &mut rng);
            assert_eq!(out.len(), 64);
            saw_zero |= out.contains(&0.0);
        }
        assert!(saw_zero, "some crops must reach into the padding");
    }

    #[test]
    fn center_square_of_wide_image() {
        let (sq, shape) = center_square(&ramp([1, 2, 4]), [1, 2, 4]);
        assert_eq!(shape, [1, 2, 2]);
        assert_eq!(sq, vec![1.0, 2.0, 5.0, 6.0]);
    }
}
