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

#[cfg(test)]
mod tests {
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
