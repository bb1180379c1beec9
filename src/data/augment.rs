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
pub fn crop(img: &[f32], shape: Shape, y: usize, x: usize, size: usize) -> Vec<f32> {
    crop_rect(img, shape, y, x, size, size)
}

/// The `height` x `width` window whose top-left corner is (`y`, `x`).
pub fn crop_rect(
    img: &[f32],
    [c, h, w]: Shape,
    y: usize,
    x: usize,
    height: usize,
    width: usize,
) -> Vec<f32> {
    assert!(y + height <= h && x + width <= w, "crop outside the image");
    let mut out = Vec::with_capacity(c * height * width);
    for ch in 0..c {
        for row in y..y + height {
            let start = (ch * h + row) * w + x;
            out.extend_from_slice(&img[start..start + width]);
        }
    }
    out
}

/// A window drawn as torchvision's `RandomResizedCrop`: an area share from `scale` and a
/// log-uniform aspect ratio from `ratio`, ten tries, then the centred crop with the ratio
/// clamped. Returns (top, left, height, width).
pub fn resized_crop_window(
    [_, h, w]: Shape,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut impl Rng,
) -> (usize, usize, usize, usize) {
    let area = (h * w) as f32;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale.0..=scale.1);
        let aspect = rng.random_range(log_lo..=log_hi).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let top = rng.random_range(0..=h - ch);
            let left = rng.random_range(0..=w - cw);
            return (top, left, ch, cw);
        }
    }
    let in_ratio = w as f32 / h as f32;
    let (ch, cw) = if in_ratio < ratio.0 {
        (((w as f32 / ratio.0).round() as usize).clamp(1, h), w)
    } else if in_ratio > ratio.1 {
        (h, ((h as f32 * ratio.1).round() as usize).clamp(1, w))
    } else {
        (h, w)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// Random resized crop: a window from [`resized_crop_window`] resized (bilinear) to
/// `out_h` x `out_w`.
pub fn random_resized_crop(
    img: &[f32],
    shape: Shape,
    scale: (f32, f32),
    ratio: (f32, f32),
    (out_h, out_w): (usize, usize),
    rng: &mut impl Rng,
) -> Vec<f32> {
    let (top, left, ch, cw) = resized_crop_window(shape, scale, ratio, rng);
    let window = crop_rect(img, shape, top, left, ch, cw);
    resize_bilinear(&window, [shape[0], ch, cw], out_h, out_w)
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
    use rand_chacha::ChaCha8Rng;

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
    fn resized_crop_windows_respect_scale_and_ratio() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let shape = [3, 32, 32];
        let mut areas = Vec::new();
        for _ in 0..500 {
            let (top, left, h, w) =
                resized_crop_window(shape, (0.2, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(top + h <= 32 && left + w <= 32 && h > 0 && w > 0);
            let share = (h * w) as f32 / 1024.0;
            // Rounding to whole pixels moves the area and ratio a little.
            assert!((0.17..=1.0).contains(&share), "{share}");
            let r = w as f32 / h as f32;
            assert!((0.7..=1.43).contains(&r), "ratio {r}");
            areas.push(share);
        }
        let mean = areas.iter().sum::<f32>() / areas.len() as f32;
        assert!((mean - 0.6).abs() < 0.05, "mean area share {mean}");
        // Impossible ratios fall back to the centred crop with the ratio clamped.
        assert_eq!(
            resized_crop_window([1, 10, 40], (1.0, 1.0), (1.0, 1.0), &mut rng),
            (0, 15, 10, 10)
        );
        let out = random_resized_crop(
            &ramp(shape),
            shape,
            (0.2, 1.0),
            (0.75, 1.33),
            (16, 16),
            &mut rng,
        );
        assert_eq!(out.len(), 3 * 16 * 16);
    }

    #[test]
    fn center_square_of_wide_image() {
        let (sq, shape) = center_square(&ramp([1, 2, 4]), [1, 2, 4]);
        assert_eq!(shape, [1, 2, 2]);
        assert_eq!(sq, vec![1.0, 2.0, 5.0, 6.0]);
    }
}
