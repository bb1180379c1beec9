//! Photometric transforms over one image of pixel values in [0, 1], channel-major, as
//! torchvision defines them (results clamped to [0, 1]). One-channel images have no hue or
//! saturation, so those two leave them unchanged.

use rand::Rng;
use rand::seq::SliceRandom;

use super::augment::Shape;

/// ITU-R 601 luma weights, as torchvision's `rgb_to_grayscale`.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

fn luma(img: &[f32], [c, h, w]: Shape) -> Vec<f32> {
    let n = h * w;
    if c != 3 {
        return img[..n].to_vec();
    }
    (0..n)
        .map(|i| LUMA[0] * img[i] + LUMA[1] * img[n + i] + LUMA[2] * img[2 * n + i])
        .collect()
}

/// Multiply every pixel by `factor`.
pub fn adjust_brightness(img: &mut [f32], factor: f32) {
    img.iter_mut()
        .for_each(|v| *v = (*v * factor).clamp(0.0, 1.0));
}

/// Blend with the image's mean gray level: `factor` 0 gives a flat gray image, 1 the original.
pub fn adjust_contrast(img: &mut [f32], shape: Shape, factor: f32) {
    let gray = luma(img, shape);
    let mean = gray.iter().sum::<f32>() / gray.len() as f32;
    img.iter_mut()
        .for_each(|v| *v = (factor * *v + (1.0 - factor) * mean).clamp(0.0, 1.0));
}

/// Blend each pixel with its own gray level: 0 gives grayscale, 1 the original.
pub fn adjust_saturation(img: &mut [f32], shape: Shape, factor: f32) {
    if shape[0] != 3 {
        return;
    }
    let gray = luma(img, shape);
    for plane in img.chunks_exact_mut(gray.len()) {
        for (v, g) in plane.iter_mut().zip(&gray) {
            *v = (factor * *v + (1.0 - factor) * g).clamp(0.0, 1.0);
        }
    }
}

/// Rotate every pixel's hue by `shift` turns (in [-0.5, 0.5]) in HSV space.
pub fn adjust_hue(img: &mut [f32], [c, h, w]: Shape, shift: f32) {
    if c != 3 {
        return;
    }
    let n = h * w;
    for i in 0..n {
        let (r, g, b) = (img[i], img[n + i], img[2 * n + i]);
        let (hue, s, v) = rgb_to_hsv(r, g, b);
        let (r, g, b) = hsv_to_rgb((hue + shift).rem_euclid(1.0), s, v);
        img[i] = r;
        img[n + i] = g;
        img[2 * n + i] = b;
    }
}

fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    if delta <= 0.0 {
        return (0.0, s, max);
    }
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    };
    (h / 6.0, s, max)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let sector = (h6.floor() as i32).rem_euclid(6);
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match sector {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// Replace a colour image by its gray level in every channel.
pub fn to_grayscale(img: &mut [f32], shape: Shape) {
    if shape[0] != 3 {
        return;
    }
    let gray = luma(img, shape);
    for plane in img.chunks_exact_mut(gray.len()) {
        plane.copy_from_slice(&gray);
    }
}

/// Invert every pixel at or above `threshold`.
pub fn solarise(img: &mut [f32], threshold: f32) {
    img.iter_mut()
        .filter(|v| **v >= threshold)
        .for_each(|v| *v = 1.0 - *v);
}

/// Separable Gaussian blur with standard deviation `sigma` and an odd `kernel` size, reflecting
/// at the borders (torchvision's `gaussian_blur`).
pub fn gaussian_blur(img: &mut [f32], [c, h, w]: Shape, kernel: usize, sigma: f32) {
    let radius = (kernel / 2) as isize;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|x| (-((x * x) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|x| x / total).collect();
    let reflect = |i: isize, len: usize| -> usize {
        let len = len as isize;
        if len == 1 {
            return 0;
        }
        let period = 2 * (len - 1);
        let m = i.rem_euclid(period);
        (if m < len { m } else { period - m }) as usize
    };
    let mut tmp = vec![0.0f32; h * w];
    for plane in img.chunks_exact_mut(h * w).take(c) {
        for y in 0..h {
            for x in 0..w {
                tmp[y * w + x] = weights
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| wt * plane[y * w + reflect(x as isize + k as isize - radius, w)])
                    .sum();
            }
        }
        for y in 0..h {
            for x in 0..w {
                plane[y * w + x] = weights
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| wt * tmp[reflect(y as isize + k as isize - radius, h) * w + x])
                    .sum();
            }
        }
    }
}

/// Strengths of torchvision's `ColorJitter`: brightness, contrast and saturation factors are
/// drawn from [max(0, 1 - s), 1 + s], the hue shift from [-hue, hue].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JitterStrength {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

/// Colour jitter: the four adjustments, each with its own random factor, in a random order.
pub fn colour_jitter(img: &mut [f32], shape: Shape, s: JitterStrength, rng: &mut impl Rng) {
    let factor = |strength: f32, rng: &mut dyn rand::RngCore| -> f32 {
        if strength <= 0.0 {
            1.0
        } else {
            rng.random_range((1.0 - strength).max(0.0)..=1.0 + strength)
        }
    };
    let mut order = [0usize, 1, 2, 3];
    order.shuffle(rng);
    for op in order {
        match op {
            0 if s.brightness > 0.0 => adjust_brightness(img, factor(s.brightness, rng)),
            1 if s.contrast > 0.0 => adjust_contrast(img, shape, factor(s.contrast, rng)),
            2 if s.saturation > 0.0 => adjust_saturation(img, shape, factor(s.saturation, rng)),
            3 if s.hue > 0.0 => adjust_hue(img, shape, rng.random_range(-s.hue..=s.hue)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const SHAPE: Shape = [3, 2, 2];
    // Pixels: red, green, blue, a mid gray.
    fn rgbg() -> Vec<f32> {
        vec![1.0, 0.0, 0.0, 0.5, 0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 1.0, 0.5]
    }

    #[test]
    fn brightness_scales_and_clamps() {
        let mut img = vec![0.2, 0.6];
        adjust_brightness(&mut img, 2.0);
        assert_eq!(img, vec![0.4, 1.0]);
    }

    #[test]
    fn zero_contrast_is_the_mean_gray_and_zero_saturation_is_grayscale() {
        let mut img = rgbg();
        adjust_contrast(&mut img, SHAPE, 0.0);
        let mean = (0.299 + 0.587 + 0.114 + 0.5) / 4.0;
        assert!(img.iter().all(|v| (v - mean).abs() < 1e-6), "{img:?}");

        let mut sat = rgbg();
        adjust_saturation(&mut sat, SHAPE, 0.0);
        let mut gray = rgbg();
        to_grayscale(&mut gray, SHAPE);
        assert_eq!(sat, gray);
        assert!((gray[0] - 0.299).abs() < 1e-6 && (gray[4] - 0.299).abs() < 1e-6);
    }

    #[test]
    fn hue_turns_red_into_green_and_round_trips() {
        let mut img = rgbg();
        adjust_hue(&mut img, SHAPE, 1.0 / 3.0);
        // Red (pixel 0) becomes green, green becomes blue; gray stays gray.
        assert!((img[0] - 0.0).abs() < 1e-5 && (img[4] - 1.0).abs() < 1e-5);
        assert!((img[5] - 0.0).abs() < 1e-5 && (img[9] - 1.0).abs() < 1e-5);
        assert!((img[3] - 0.5).abs() < 1e-6);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let orig: Vec<f32> = (0..12).map(|_| rng.random::<f32>()).collect();
        let mut img = orig.clone();
        adjust_hue(&mut img, SHAPE, 0.2);
        adjust_hue(&mut img, SHAPE, -0.2);
        for (a, b) in img.iter().zip(&orig) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn solarise_inverts_bright_pixels_only() {
        let mut img = vec![0.1, 0.5, 0.9];
        solarise(&mut img, 0.5);
        // 0.5 is at the threshold, so it flips to 1 - 0.5; 0.9 becomes 0.1.
        let want = [0.1, 0.5, 0.1];
        assert!(
            img.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{img:?}"
        );
    }

    #[test]
    fn blur_keeps_constants_and_the_mass_of_an_impulse() {
        let mut flat = vec![0.3f32; 25];
        gaussian_blur(&mut flat, [1, 5, 5], 3, 1.0);
        assert!(flat.iter().all(|v| (v - 0.3).abs() < 1e-6));
        let mut impulse = vec![0.0f32; 49];
        impulse[24] = 1.0;
        gaussian_blur(&mut impulse, [1, 7, 7], 5, 1.0);
        let total: f32 = impulse.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert!(impulse[24] < 0.5 && impulse[24] > impulse[23] && impulse[23] > impulse[22]);
        assert!(
            (impulse[23] - impulse[25]).abs() < 1e-7 && (impulse[17] - impulse[23]).abs() < 1e-7
        );
    }

    #[test]
    fn jitter_with_zero_strength_is_the_identity_and_stays_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut img = rgbg();
        let none = JitterStrength {
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
        };
        colour_jitter(&mut img, SHAPE, none, &mut rng);
        assert_eq!(img, rgbg());
        let strong = JitterStrength {
            brightness: 0.8,
            contrast: 0.8,
            saturation: 0.8,
            hue: 0.2,
        };
        let mut changed = 0;
        for _ in 0..20 {
            let mut img = rgbg();
            colour_jitter(&mut img, SHAPE, strong, &mut rng);
            assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
            changed += (img != rgbg()) as usize;
        }
        assert_eq!(changed, 20);
    }
}
