//! The built-in synthetic data set: ten classes of upright object silhouettes
//! (house, tree, arrow, ...) drawn on varied backgrounds.
//!
//! It exists so the rotation-prediction demo runs without any download, and it is
//! built so that the pretext task is only solvable from the object's shape: every
//! class has a clear "up", while backgrounds, colours, positions, noise and
//! distractors carry no orientation (gradients and stripes point in uniformly
//! random directions, objects tilt by a few degrees at most). Class is not given
//! away by colour or size either: colours are drawn independently of the class and
//! the shapes have similar extent and ink.
//!
//! Every image has its own random stream keyed by `(seed, split, index)`, so the
//! data are byte-identical for a seed whatever the number of threads.

use std::f32::consts::{PI, TAU};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Dataset, Format, ImageSet, SYNTHETIC, record_origin};

const CHANNELS: usize = 3;
/// Samples per pixel side for anti-aliasing.
const SUPERSAMPLE: usize = 3;
/// Largest tilt of an object away from upright. Small enough that the four
/// rotations of the pretext task stay far apart.
const MAX_TILT: f32 = 12.0 * PI / 180.0;
/// Object height as a fraction of the image side.
const SCALE_RANGE: (f32, f32) = (0.40, 0.85);
/// How far an object's bounding box may stick out of the image, as a fraction of
/// its height, so objects touch the border sometimes without losing their shape.
const OVERHANG: f32 = 0.08;

/// How big the synthetic data set is and which draw of it to make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyntheticConfig {
    /// Images in the training split.
    pub train: usize,
    /// Images in the test split; 0 makes a data set without one.
    pub test: usize,
    /// Side of the square images in pixels.
    pub size: usize,
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            train: 10_000,
            test: 2_000,
            size: 32,
            seed: 0,
        }
    }
}

/// Names of the classes, indexed by label.
pub fn class_names() -> Vec<String> {
    Class::ALL.iter().map(|c| c.name().to_string()).collect()
}

/// Generates the data set: colour images, channel-major, labels balanced across
/// the classes in shuffled order. Train and test are independent draws.
pub fn generate(cfg: &SyntheticConfig) -> Dataset {
    Dataset {
        format: Format::Synthetic,
        source: "synthetic".to_string(),
        train: generate_split(cfg, Split::Train, cfg.train),
        test: (cfg.test > 0).then(|| generate_split(cfg, Split::Test, cfg.test)),
        skipped: 0,
    }
}

#[derive(Clone, Copy)]
enum Split {
    Train = 0,
    Test = 1,
}

/// Stream index reserved for the label shuffle, above any image index.
const SHUFFLE_STREAM: u64 = (1 << 48) - 1;

/// The random stream of one image (or of a split's label shuffle). ChaCha streams
/// with the same key are independent, so distinct `(split, index)` pairs never
/// share randomness, unlike seeds made by hashing.
fn stream_rng(seed: u64, split: Split, index: u64) -> ChaCha8Rng {
    debug_assert!(index <= SHUFFLE_STREAM);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((split as u64) << 48) | index);
    rng
}

fn generate_split(cfg: &SyntheticConfig, split: Split, len: usize) -> ImageSet {
    let mut labels: Vec<u32> = (0..len).map(|i| (i % Class::ALL.len()) as u32).collect();
    labels.shuffle(&mut stream_rng(cfg.seed, split, SHUFFLE_STREAM));

    let image_len = CHANNELS * cfg.size * cfg.size;
    let mut pixels = vec![0u8; len * image_len];
    if image_len > 0 {
        pixels
            .par_chunks_mut(image_len)
            .zip(labels.par_iter())
            .enumerate()
            .for_each(|(i, (out, &label))| {
                let mut rng = stream_rng(cfg.seed, split, i as u64);
                render(out, cfg.size, Class::ALL[label as usize], &mut rng);
            });
    }

    ImageSet {
        pixels,
        labels: Some(labels),
        len,
        channels: CHANNELS,
        height: cfg.size,
        width: cfg.size,
        class_names: class_names(),
        origins: Some((0..len).map(|i| record_origin(SYNTHETIC, i)).collect()),
    }
}

// ---------------------------------------------------------------------------
// Classes

/// The object classes. None is symmetric under a quarter or half turn, and no
/// class turned upside down looks like another upright one (which is why there is
/// a table but no cup: a cup turned over is a table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    House,
    Tree,
    Arrow,
    LetterT,
    LetterL,
    Mushroom,
    Person,
    LetterF,
    Table,
    Boat,
}

impl Class {
    const ALL: [Class; 10] = [
        Class::House,
        Class::Tree,
        Class::Arrow,
        Class::LetterT,
        Class::LetterL,
        Class::Mushroom,
        Class::Person,
        Class::LetterF,
        Class::Table,
        Class::Boat,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::House => "house",
            Class::Tree => "tree",
            Class::Arrow => "arrow",
            Class::LetterT => "letter-t",
            Class::LetterL => "letter-l",
            Class::Mushroom => "mushroom",
            Class::Person => "person",
            Class::LetterF => "letter-f",
            Class::Table => "table",
            Class::Boat => "boat",
        }
    }

    /// A random instance of the class in object coordinates: y points up and the
    /// object spans y in [-0.5, 0.5] and at most x in [-0.5, 0.5]. Proportions are
    /// jittered so instances differ, but never so far that the class is lost.
    fn shape(self, rng: &mut impl Rng) -> Shape {
        let mut parts = Vec::with_capacity(6);
        let mut holes = Vec::new();
        match self {
            Class::House => {
                let body = about(rng, 0.28, 0.12);
                let roof = about(rng, 0.46, 0.06).min(0.5);
                let eave = rng.random_range(-0.02..0.1);
                parts.push(Prim::rect(-body, -0.5, body, eave));
                parts.push(Prim::tri([-roof, eave], [roof, eave], [0.0, 0.5]));
                // A door makes the bottom read as the ground side.
                let door = about(rng, 0.085, 0.2);
                let door_top = -0.5 + about(rng, 0.34, 0.2);
                let door_x = rng.random_range(-1.0..=1.0) * (body - door - 0.05).max(0.0);
                holes.push(Prim::rect(door_x - door, -0.6, door_x + door, door_top));
            }
            Class::Tree => {
                let trunk = about(rng, 0.08, 0.2);
                let base = about(rng, -0.26, 0.15);
                let lower = about(rng, 0.46, 0.06).min(0.5);
                let upper = lower * about(rng, 0.72, 0.1);
                let mid = base + about(rng, 0.34, 0.15);
                parts.push(Prim::rect(-trunk, -0.5, trunk, base + 0.02));
                parts.push(Prim::tri([-lower, base], [lower, base], [0.0, mid + 0.25]));
                parts.push(Prim::tri([-upper, mid], [upper, mid], [0.0, 0.5]));
            }
            Class::Arrow => {
                let head_base = rng.random_range(0.0..0.12);
                let head = about(rng, 0.46, 0.08).min(0.5);
                let shaft = about(rng, 0.15, 0.2);
                parts.push(Prim::tri([-head, head_base], [head, head_base], [0.0, 0.5]));
                parts.push(Prim::rect(-shaft, -0.5, shaft, head_base + 0.01));
            }
            Class::LetterT => {
                let stroke = about(rng, 0.22, 0.15);
                let bar = about(rng, 0.44, 0.1).min(0.5);
                let stem = stroke * about(rng, 0.55, 0.15);
                parts.push(Prim::rect(-bar, 0.5 - stroke, bar, 0.5));
                parts.push(Prim::rect(-stem, -0.5, stem, 0.5 - stroke + 0.01));
            }
            Class::LetterL => {
                let stroke = about(rng, 0.26, 0.15);
                let half = about(rng, 0.34, 0.1);
                parts.push(Prim::rect(-half, -0.5, -half + stroke, 0.5));
                parts.push(Prim::rect(-half, -0.5, half, -0.5 + stroke));
            }
            Class::Mushroom => {
                let rim = rng.random_range(0.04..0.14);
                let cap = about(rng, 0.45, 0.08).min(0.5);
                let stem = about(rng, 0.12, 0.2);
                parts.push(Prim::Dome {
                    cx: 0.0,
                    cy: rim,
                    rx: cap,
                    ry: 0.5 - rim,
                });
                parts.push(Prim::rect(-stem, -0.5, stem, rim + 0.01));
            }
            Class::Person => {
                let head = about(rng, 0.13, 0.1);
                let shoulder = 0.5 - 2.0 * head - 0.03;
                let torso = about(rng, 0.16, 0.12);
                let hip = about(rng, -0.1, 0.3);
                let arm = about(rng, 0.085, 0.15);
                let reach = about(rng, 0.4, 0.1).min(0.48);
                let hand = hip - rng.random_range(0.0..0.1);
                let leg = about(rng, 0.085, 0.15);
                let gap = rng.random_range(0.0..0.06);
                parts.push(Prim::Ellipse {
                    cx: 0.0,
                    cy: 0.5 - head,
                    rx: head,
                    ry: head,
                });
                parts.push(Prim::rect(-torso, hip, torso, shoulder));
                for side in [-1.0f32, 1.0] {
                    let from = [side * (torso - 0.02), shoulder];
                    parts.push(Prim::segment(from, [side * reach, hand], arm));
                    let (a, b) = (side * gap, side * (gap + 2.0 * leg));
                    parts.push(Prim::rect(a.min(b), -0.5, a.max(b), hip + 0.01));
                }
            }
            Class::LetterF => {
                let stroke = about(rng, 0.22, 0.15);
                let half = about(rng, 0.32, 0.1);
                let mid = rng.random_range(-0.02..0.06);
                let arm = -half + 2.0 * half * about(rng, 0.78, 0.1);
                parts.push(Prim::rect(-half, -0.5, -half + stroke, 0.5));
                parts.push(Prim::rect(-half, 0.5 - stroke, half, 0.5));
                parts.push(Prim::rect(
                    -half,
                    mid - stroke / 2.0,
                    arm,
                    mid + stroke / 2.0,
                ));
            }
            Class::Table => {
                let top = about(rng, 0.2, 0.15);
                let half = about(rng, 0.47, 0.06).min(0.5);
                let leg = about(rng, 0.07, 0.2);
                let inset = rng.random_range(0.0..0.1);
                parts.push(Prim::rect(-half, 0.5 - top, half, 0.5));
                for side in [-1.0f32, 1.0] {
                    let x = side * (half - inset - leg);
                    parts.push(Prim::rect(x - leg, -0.5, x + leg, 0.5 - top + 0.01));
                }
            }
            Class::Boat => {
                // The sail may face either way: a mirrored boat is still upright.
                let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                let deck = about(rng, -0.18, 0.3);
                let hull = about(rng, 0.47, 0.06).min(0.5);
                let keel = hull * about(rng, 0.62, 0.12);
                let mast = about(rng, 0.04, 0.2);
                let mast_x = -side * rng.random_range(0.0..0.12);
                let boom = deck + 0.07;
                let sail = about(rng, 0.38, 0.12);
                parts.push(Prim::quad(
                    [-hull, deck],
                    [hull, deck],
                    [keel, -0.5],
                    [-keel, -0.5],
                ));
                parts.push(Prim::rect(mast_x - mast, deck - 0.01, mast_x + mast, 0.5));
                parts.push(Prim::tri(
                    [mast_x, 0.5],
                    [mast_x, boom],
                    [mast_x + side * sail, boom],
                ));
                if rng.random_bool(0.5) {
                    let jib = about(rng, 0.26, 0.15);
                    parts.push(Prim::tri(
                        [mast_x, 0.38],
                        [mast_x, boom],
                        [mast_x - side * jib, boom],
                    ));
                }
            }
        }
        Shape { parts, holes }
    }
}

/// `v` scaled by a random factor within `1 ± rel`.
fn about(rng: &mut impl Rng, v: f32, rel: f32) -> f32 {
    v * rng.random_range(1.0 - rel..=1.0 + rel)
}

// ---------------------------------------------------------------------------
// Geometry

type Point = [f32; 2];
type Rgb = [f32; 3];

/// A primitive region in object coordinates.
#[derive(Clone, Copy, Debug)]
enum Prim {
    Rect {
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
    },
    Ellipse {
        cx: f32,
        cy: f32,
        rx: f32,
        ry: f32,
    },
    /// The upper half of an ellipse (its flat side faces down).
    Dome {
        cx: f32,
        cy: f32,
        rx: f32,
        ry: f32,
    },
    /// A convex polygon of up to four sides as outward unit normals `(nx, ny)` and
    /// offsets `c`, inside where every `nx * x + ny * y <= c`. Triangles repeat a side.
    Convex {
        sides: [[f32; 3]; 4],
        bounds: [f32; 4],
    },
}

impl Prim {
    fn rect(x0: f32, y0: f32, x1: f32, y1: f32) -> Prim {
        Prim::Rect { x0, y0, x1, y1 }
    }

    fn tri(a: Point, b: Point, c: Point) -> Prim {
        Prim::convex([a, b, c, c])
    }

    /// A convex quadrilateral given in order round its edge.
    fn quad(a: Point, b: Point, c: Point, d: Point) -> Prim {
        Prim::convex([a, b, c, d])
    }

    /// Corners in order round the edge, either way round; a repeated corner makes
    /// a triangle.
    fn convex(corners: [Point; 4]) -> Prim {
        let twice_area: f32 = (0..4)
            .map(|i| {
                let (p, q) = (corners[i], corners[(i + 1) % 4]);
                p[0] * q[1] - q[0] * p[1]
            })
            .sum();
        let outward = twice_area.signum();
        let mut sides = [[0.0; 3]; 4];
        for i in 0..4 {
            let (p, mut q) = (corners[i], corners[(i + 1) % 4]);
            if p == q {
                // The side of a repeated corner: use the next real side instead.
                q = corners[(i + 2) % 4];
            }
            let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
            let len = (dx * dx + dy * dy).sqrt().max(1e-9);
            let (nx, ny) = (outward * dy / len, -outward * dx / len);
            sides[i] = [nx, ny, nx * p[0] + ny * p[1]];
        }
        let bounds = corners
            .iter()
            .fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |b, p| {
                [
                    b[0].min(p[0]),
                    b[1].min(p[1]),
                    b[2].max(p[0]),
                    b[3].max(p[1]),
                ]
            });
        Prim::Convex { sides, bounds }
    }

    /// A straight stroke of the given width from `a` to `b`.
    fn segment(a: Point, b: Point, width: f32) -> Prim {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt().max(1e-6);
        let (nx, ny) = (-dy / len * width / 2.0, dx / len * width / 2.0);
        Prim::quad(
            [a[0] + nx, a[1] + ny],
            [b[0] + nx, b[1] + ny],
            [b[0] - nx, b[1] - ny],
            [a[0] - nx, a[1] - ny],
        )
    }

    fn contains(&self, [x, y]: Point) -> bool {
        match *self {
            Prim::Rect { x0, y0, x1, y1 } => x >= x0 && x <= x1 && y >= y0 && y <= y1,
            Prim::Ellipse { cx, cy, rx, ry } => {
                let (u, v) = ((x - cx) / rx, (y - cy) / ry);
                u * u + v * v <= 1.0
            }
            Prim::Dome { cx, cy, rx, ry } => {
                let (u, v) = ((x - cx) / rx, (y - cy) / ry);
                v >= 0.0 && u * u + v * v <= 1.0
            }
            Prim::Convex { sides, .. } => sides.iter().all(|[nx, ny, c]| nx * x + ny * y <= *c),
        }
    }

    /// Signed distance to the edge, negative inside, or something nearer zero:
    /// only used to tell pixels wholly inside or outside from edge pixels, for
    /// which a bound is enough.
    fn distance(&self, [x, y]: Point) -> f32 {
        match *self {
            Prim::Rect { x0, y0, x1, y1 } => (x0 - x).max(x - x1).max(y0 - y).max(y - y1),
            Prim::Ellipse { cx, cy, rx, ry } => ellipse_distance(x - cx, y - cy, rx, ry),
            Prim::Dome { cx, cy, rx, ry } => ellipse_distance(x - cx, y - cy, rx, ry).max(cy - y),
            Prim::Convex { sides, .. } => sides
                .iter()
                .map(|[nx, ny, c]| nx * x + ny * y - c)
                .fold(f32::MIN, f32::max),
        }
    }

    /// Axis-aligned bounds as `[x0, y0, x1, y1]`.
    fn bounds(&self) -> [f32; 4] {
        match *self {
            Prim::Rect { x0, y0, x1, y1 } => [x0, y0, x1, y1],
            Prim::Ellipse { cx, cy, rx, ry } => [cx - rx, cy - ry, cx + rx, cy + ry],
            Prim::Dome { cx, cy, rx, ry } => [cx - rx, cy, cx + rx, cy + ry],
            Prim::Convex { bounds, .. } => bounds,
        }
    }
}

/// A lower bound on the distance to an ellipse's edge: the edges of the ellipse
/// and of its copy scaled by `rho` through the point are at least
/// `|rho - 1| * min(rx, ry)` apart.
fn ellipse_distance(dx: f32, dy: f32, rx: f32, ry: f32) -> f32 {
    let (u, v) = (dx / rx, dy / ry);
    ((u * u + v * v).sqrt() - 1.0) * rx.min(ry)
}

/// A union of primitives less a union of holes.
#[derive(Clone, Debug)]
struct Shape {
    parts: Vec<Prim>,
    holes: Vec<Prim>,
}

impl Shape {
    fn single(prim: Prim) -> Shape {
        Shape {
            parts: vec![prim],
            holes: Vec::new(),
        }
    }

    fn contains(&self, p: Point) -> bool {
        self.parts.iter().any(|q| q.contains(p)) && !self.holes.iter().any(|q| q.contains(p))
    }

    /// Bound on the signed distance to the edge, as [`Prim::distance`]. The
    /// nearest part bounds a union and the larger bound an intersection.
    fn distance(&self, p: Point) -> f32 {
        let union = self
            .parts
            .iter()
            .map(|q| q.distance(p))
            .fold(f32::MAX, f32::min);
        self.holes.iter().fold(union, |d, h| d.max(-h.distance(p)))
    }

    fn bounds(&self) -> [f32; 4] {
        self.parts.iter().map(Prim::bounds).fold(
            [f32::MAX, f32::MAX, f32::MIN, f32::MIN],
            |a, b| {
                [
                    a[0].min(b[0]),
                    a[1].min(b[1]),
                    a[2].max(b[2]),
                    a[3].max(b[3]),
                ]
            },
        )
    }
}

/// Where a shape lands in the image: object point `o` maps to pixel
/// `centre + R(angle) * scale * (o.x, -o.y)` (pixel y points down).
#[derive(Clone, Copy, Debug)]
struct Placement {
    centre: Point,
    scale: f32,
    angle: f32,
}

impl Placement {
    fn pixel_of(&self, [x, y]: Point) -> Point {
        let (s, c) = self.angle.sin_cos();
        let (u, v) = (x * self.scale, -y * self.scale);
        [
            self.centre[0] + c * u - s * v,
            self.centre[1] + s * u + c * v,
        ]
    }

    /// The inverse map as a matrix: object = m * (pixel - centre).
    fn inverse(&self) -> [[f32; 2]; 2] {
        let (s, c) = self.angle.sin_cos();
        let k = 1.0 / self.scale;
        [[c * k, s * k], [s * k, -c * k]]
    }

    /// Pixel-space bounds `[x0, y0, x1, y1]` of object-space bounds.
    fn pixel_bounds(&self, [x0, y0, x1, y1]: [f32; 4]) -> [f32; 4] {
        [[x0, y0], [x1, y0], [x0, y1], [x1, y1]]
            .iter()
            .map(|&p| self.pixel_of(p))
            .fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |a, p| {
                [
                    a[0].min(p[0]),
                    a[1].min(p[1]),
                    a[2].max(p[0]),
                    a[3].max(p[1]),
                ]
            })
    }
}

// ---------------------------------------------------------------------------
// Drawing

/// A float image in [0, 1], channel-major like [`ImageSet`].
struct Canvas {
    size: usize,
    px: Vec<f32>,
}

impl Canvas {
    fn new(size: usize) -> Canvas {
        Canvas {
            size,
            px: vec![0.0; CHANNELS * size * size],
        }
    }

    fn set(&mut self, x: usize, y: usize, c: Rgb) {
        let plane = self.size * self.size;
        let i = y * self.size + x;
        for (ch, v) in c.into_iter().enumerate() {
            self.px[ch * plane + i] = v;
        }
    }

    fn blend(&mut self, x: usize, y: usize, c: Rgb, alpha: f32) {
        let plane = self.size * self.size;
        let i = y * self.size + x;
        for (ch, v) in c.into_iter().enumerate() {
            let p = &mut self.px[ch * plane + i];
            *p += (v - *p) * alpha;
        }
    }

    /// Mean colour inside pixel bounds (clipped to the image).
    fn mean(&self, bounds: [f32; 4]) -> Rgb {
        let (x0, y0, x1, y1) = self.clip(bounds);
        let plane = self.size * self.size;
        let mut sum = [0.0; 3];
        let mut n = 0usize;
        for y in y0..y1 {
            for x in x0..x1 {
                for (ch, s) in sum.iter_mut().enumerate() {
                    *s += self.px[ch * plane + y * self.size + x];
                }
                n += 1;
            }
        }
        sum.map(|s| s / n.max(1) as f32)
    }

    /// Whole-pixel range covering `bounds`, clipped to the image.
    fn clip(&self, [x0, y0, x1, y1]: [f32; 4]) -> (usize, usize, usize, usize) {
        let lo = |v: f32| (v.floor().max(0.0) as usize).min(self.size);
        let hi = |v: f32| (v.ceil().max(0.0) as usize).min(self.size);
        (lo(x0), lo(y0), hi(x1), hi(y1))
    }

    /// Composites a shape with anti-aliased edges; `colour` gets object
    /// coordinates so shading moves with the object.
    fn paint(&mut self, shape: &Shape, place: &Placement, colour: impl Fn(Point) -> Rgb) {
        let (x0, y0, x1, y1) = self.clip(place.pixel_bounds(shape.bounds()));
        let m = place.inverse();
        let to_object = |px: f32, py: f32| {
            let (dx, dy) = (px - place.centre[0], py - place.centre[1]);
            [m[0][0] * dx + m[0][1] * dy, m[1][0] * dx + m[1][1] * dy]
        };
        // Half a pixel diagonal (with a little margin) in object units: a pixel
        // whose centre is farther than this from the edge is wholly in or out, so
        // only edge pixels pay for supersampling.
        let reach = 0.72 / place.scale;
        let step = 1.0 / SUPERSAMPLE as f32;
        for y in y0..y1 {
            for x in x0..x1 {
                let centre = to_object(x as f32 + 0.5, y as f32 + 0.5);
                let d = shape.distance(centre);
                let alpha = if d >= reach {
                    continue;
                } else if d <= -reach {
                    1.0
                } else {
                    let mut hits = 0;
                    for sy in 0..SUPERSAMPLE {
                        for sx in 0..SUPERSAMPLE {
                            let px = x as f32 + (sx as f32 + 0.5) * step;
                            let py = y as f32 + (sy as f32 + 0.5) * step;
                            hits += shape.contains(to_object(px, py)) as usize;
                        }
                    }
                    if hits == 0 {
                        continue;
                    }
                    hits as f32 / (SUPERSAMPLE * SUPERSAMPLE) as f32
                };
                self.blend(x, y, colour(centre), alpha);
            }
        }
    }
}

/// Renders one image of `class` into `out` (channel-major bytes).
fn render(out: &mut [u8], size: usize, class: Class, rng: &mut impl Rng) {
    let mut canvas = Canvas::new(size);
    let n = size as f32;
    fill_background(&mut canvas, rng);

    let shape = class.shape(rng);
    let place = place_object(&shape, n, rng);
    let object_box = place.pixel_bounds(shape.bounds());

    // Distractors go behind or in front of the object, so neither layer order is
    // a cue; they are small and round or straight so they read as clutter.
    let distractor = rng
        .random_bool(0.35)
        .then(|| (rng.random_bool(0.5), Distractor::new(n, rng)));
    if let Some((false, d)) = &distractor {
        d.draw(&mut canvas);
    }

    let colour = object_colour(canvas.mean(object_box), rng);
    let shade_angle = rng.random_range(0.0..TAU);
    let shade = rng.random_range(0.0..0.25f32);
    let (sy, sx) = shade_angle.sin_cos();
    canvas.paint(&shape, &place, |[x, y]| {
        let t = shade * (sx * x + sy * y);
        colour.map(|c| c + t)
    });

    if let Some((true, d)) = &distractor {
        d.draw(&mut canvas);
    }

    let sigma = rng.random_range(0.0..12.0f32);
    // Adding a half and truncating rounds, without a libm call per pixel.
    let quantize = |v: f32, z: f32| ((v * 255.0 + sigma * z).clamp(0.0, 255.0) + 0.5) as u8;
    let mut pairs = out.chunks_exact_mut(2);
    for (bytes, values) in pairs.by_ref().zip(canvas.px.chunks_exact(2)) {
        let [z0, z1] = noise_pair(rng);
        bytes[0] = quantize(values[0], z0);
        bytes[1] = quantize(values[1], z1);
    }
    // An odd number of values (odd image side) leaves one.
    if let ([byte], Some(&v)) = (pairs.into_remainder(), canvas.px.last()) {
        *byte = quantize(v, noise_pair(rng)[0]);
    }
}

/// Picks scale, tilt and position so the object is mostly inside the image.
fn place_object(shape: &Shape, n: f32, rng: &mut impl Rng) -> Placement {
    let scale = n * rng.random_range(SCALE_RANGE.0..=SCALE_RANGE.1);
    let angle = rng.random_range(-MAX_TILT..=MAX_TILT);
    let at_origin = Placement {
        centre: [0.0, 0.0],
        scale,
        angle,
    };
    let [x0, y0, x1, y1] = at_origin.pixel_bounds(shape.bounds());
    let slack = OVERHANG * scale;
    let mut axis = |lo: f32, hi: f32| {
        let (min, max) = (slack - lo, n - hi - slack);
        if min < max {
            rng.random_range(min..=max)
        } else {
            (min + max) / 2.0
        }
    };
    let cx = axis(x0, x1);
    let cy = axis(y0, y1);
    Placement {
        centre: [cx, cy],
        scale,
        angle,
    }
}

/// A small clutter item: a blob or a short line.
struct Distractor {
    shape: Shape,
    place: Placement,
    colour: Rgb,
}

impl Distractor {
    fn new(n: f32, rng: &mut impl Rng) -> Distractor {
        let centre = [rng.random_range(0.0..n), rng.random_range(0.0..n)];
        let angle = rng.random_range(0.0..TAU);
        let (shape, scale) = if rng.random_bool(0.5) {
            let aspect = rng.random_range(0.5..=1.0);
            let blob = Prim::Ellipse {
                cx: 0.0,
                cy: 0.0,
                rx: 0.5,
                ry: 0.5 * aspect,
            };
            (Shape::single(blob), n * rng.random_range(0.08..0.2))
        } else {
            let len = n * rng.random_range(0.2..0.4);
            let half_width = rng.random_range(0.4..1.0) / len;
            (
                Shape::single(Prim::rect(-0.5, -half_width, 0.5, half_width)),
                len,
            )
        };
        Distractor {
            shape,
            place: Placement {
                centre,
                scale,
                angle,
            },
            colour: random_colour(rng),
        }
    }

    fn draw(&self, canvas: &mut Canvas) {
        canvas.paint(&self.shape, &self.place, |_| self.colour);
    }
}

// ---------------------------------------------------------------------------
// Colours and backgrounds

fn random_colour(rng: &mut impl Rng) -> Rgb {
    hsv(rng.random(), rng.random(), rng.random_range(0.08..=1.0))
}

fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h6 = (h.fract() * 6.0).min(5.999);
    let f = h6.fract();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match h6 as u32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

fn distance(a: Rgb, b: Rgb) -> f32 {
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

fn lerp(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// An object colour that differs from the local background, usually clearly but
/// sometimes only faintly, so contrast alone never makes the task easy.
fn object_colour(background: Rgb, rng: &mut impl Rng) -> Rgb {
    let min_distance = if rng.random_bool(0.2) { 0.15 } else { 0.4 };
    let mut best = random_colour(rng);
    for _ in 0..24 {
        if distance(best, background) >= min_distance {
            break;
        }
        let c = random_colour(rng);
        if distance(c, background) > distance(best, background) {
            best = c;
        }
    }
    best
}

/// A second texture colour: somewhere between a copy of `a` and an unrelated
/// colour, so texture contrast varies from faint to strong.
fn partner_colour(a: Rgb, rng: &mut impl Rng) -> Rgb {
    let t = rng.random_range(0.2..=1.0);
    lerp(a, random_colour(rng), t)
}

fn unit_vector(rng: &mut impl Rng) -> Point {
    let (s, c) = rng.random_range(0.0..TAU).sin_cos();
    [c, s]
}

/// Fills the canvas with one of several textures. Anything directional
/// (gradients, stripes, checker axes) points in a uniformly random direction so
/// the background says nothing about which way is up.
fn fill_background(canvas: &mut Canvas, rng: &mut impl Rng) {
    let size = canvas.size;
    let n = size as f32;
    let a = random_colour(rng);
    let b = partner_colour(a, rng);
    // Pixel centres relative to the image centre.
    let points = (0..size).flat_map(|y| (0..size).map(move |x| (x, y)));
    let centred = move |x: usize, y: usize| [x as f32 + 0.5 - n / 2.0, y as f32 + 0.5 - n / 2.0];
    // A triangle wave of period 1 in [-1, 1]: as good as a sine for textures and
    // much cheaper per pixel.
    let wave = |t: f32| 4.0 * (t - t.floor() - 0.5).abs() - 1.0;
    // Soft square wave: sharpness 1 keeps the triangle wave, large values give
    // hard edges that are still roughly anti-aliased.
    let square = |s: f32, sharpness: f32| 0.5 + 0.5 * (s * sharpness).clamp(-1.0, 1.0);

    match rng.random_range(0..6) {
        0 => {
            for (x, y) in points {
                canvas.set(x, y, a);
            }
        }
        1 => {
            let d = unit_vector(rng);
            let span = n * rng.random_range(0.6..2.0);
            let offset = rng.random_range(-0.3..0.3);
            for (x, y) in points {
                let p = centred(x, y);
                let t = (0.5 + offset + (d[0] * p[0] + d[1] * p[1]) / span).clamp(0.0, 1.0);
                canvas.set(x, y, lerp(a, b, t));
            }
        }
        2 => {
            let d = unit_vector(rng);
            let period = rng.random_range(2.5..12.0f32);
            let phase = rng.random::<f32>();
            let sharpness = rng.random_range(1.0..6.0);
            for (x, y) in points {
                let p = centred(x, y);
                let s = wave((d[0] * p[0] + d[1] * p[1]) / period + phase);
                canvas.set(x, y, lerp(a, b, square(s, sharpness)));
            }
        }
        3 => {
            let d = unit_vector(rng);
            let cell = rng.random_range(2.0..8.0f32);
            let phase = [rng.random::<f32>(), rng.random::<f32>()];
            let sharpness = rng.random_range(2.0..8.0);
            for (x, y) in points {
                let p = centred(x, y);
                let u = wave((d[0] * p[0] + d[1] * p[1]) / (2.0 * cell) + phase[0]);
                let v = wave((-d[1] * p[0] + d[0] * p[1]) / (2.0 * cell) + phase[1]);
                canvas.set(x, y, lerp(a, b, square(u * v, sharpness)));
            }
        }
        4 => {
            // Value noise: random colours on a coarse lattice, smoothly interpolated.
            let cells = rng.random_range(2..=5usize);
            let side = cells + 1;
            let c = random_colour(rng);
            let lattice: Vec<Rgb> = (0..side * side)
                .map(|_| {
                    let t = rng.random::<f32>();
                    if t < 0.5 {
                        lerp(a, b, 2.0 * t)
                    } else {
                        lerp(b, c, 2.0 * t - 1.0)
                    }
                })
                .collect();
            let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
            for (x, y) in points {
                let gx = (x as f32 + 0.5) / n * cells as f32;
                let gy = (y as f32 + 0.5) / n * cells as f32;
                let (ix, iy) = ((gx as usize).min(cells - 1), (gy as usize).min(cells - 1));
                let (fx, fy) = (smooth(gx - ix as f32), smooth(gy - iy as f32));
                let at = |i: usize, j: usize| lattice[j * side + i];
                let top = lerp(at(ix, iy), at(ix + 1, iy), fx);
                let bottom = lerp(at(ix, iy + 1), at(ix + 1, iy + 1), fx);
                canvas.set(x, y, lerp(top, bottom, fy));
            }
        }
        _ => {
            for (x, y) in points {
                canvas.set(x, y, a);
            }
            for _ in 0..rng.random_range(3..=8) {
                let blob = Prim::Ellipse {
                    cx: 0.0,
                    cy: 0.0,
                    rx: 0.5,
                    ry: 0.5 * rng.random_range(0.4..=1.0),
                };
                let place = Placement {
                    centre: [rng.random_range(0.0..n), rng.random_range(0.0..n)],
                    scale: n * rng.random_range(0.15..0.5),
                    angle: rng.random_range(0.0..TAU),
                };
                let colour = partner_colour(a, rng);
                canvas.paint(&Shape::single(blob), &place, |_| colour);
            }
        }
    }
}

/// Two roughly standard normal samples from one 64-bit draw, each the centred sum
/// of four 8-bit uniforms (Irwin-Hall). Pixel noise needs neither exact tails nor
/// fine resolution, and this is several times cheaper than Box-Muller.
fn noise_pair(rng: &mut impl Rng) -> [f32; 2] {
    let bits: u64 = rng.random();
    // Add bytes in pairs, then pairs of pairs, within each 32-bit half.
    let pairs = (bits & 0x00ff_00ff_00ff_00ff) + ((bits >> 8) & 0x00ff_00ff_00ff_00ff);
    let quads = (pairs & 0x0000_ffff_0000_ffff) + ((pairs >> 16) & 0x0000_ffff_0000_ffff);
    // Four uniforms on {0, ..., 255} / 256 have mean 510 / 256 and variance about 1/3.
    let z = |sum: u64| (sum as f32 - 510.0) * (3.0f32.sqrt() / 256.0);
    [z(quads & 0xffff_ffff), z(quads >> 32)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> SyntheticConfig {
        SyntheticConfig {
            train: 200,
            test: 50,
            size: 32,
            seed,
        }
    }

    #[test]
    fn same_seed_same_bytes_and_different_seed_differs() {
        let a = generate(&small(7));
        let b = generate(&small(7));
        let c = generate(&small(8));
        assert_eq!(a.train.pixels, b.train.pixels);
        assert_eq!(a.train.labels, b.train.labels);
        assert_eq!(
            a.test.as_ref().unwrap().pixels,
            b.test.as_ref().unwrap().pixels
        );
        assert_ne!(a.train.pixels, c.train.pixels);
    }

    #[test]
    fn independent_of_thread_count() {
        let cfg = small(3);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let a = one.install(|| generate(&cfg));
        let b = three.install(|| generate(&cfg));
        assert_eq!(a.train.pixels, b.train.pixels);
    }

    #[test]
    fn splits_are_independent_draws() {
        let d = generate(&SyntheticConfig {
            train: 50,
            test: 50,
            size: 16,
            seed: 1,
        });
        let test = d.test.unwrap();
        assert_ne!(d.train.image(0), test.image(0));
        assert_ne!(d.train.pixels, test.pixels);
    }

    #[test]
    fn shape_of_the_data_set() {
        let d = generate(&SyntheticConfig {
            train: 103,
            test: 20,
            size: 24,
            seed: 0,
        });
        assert_eq!(d.format, Format::Synthetic);
        assert_eq!(d.source, "synthetic");
        let t = &d.train;
        assert_eq!((t.len, t.channels, t.height, t.width), (103, 3, 24, 24));
        assert_eq!(t.pixels.len(), 103 * 3 * 24 * 24);
        assert_eq!(t.class_names, class_names());
        assert_eq!(t.num_classes(), 10);
        assert_eq!(d.test.as_ref().unwrap().len, 20);
        let origins = t.origins.as_ref().unwrap();
        assert_eq!((origins.len(), &*origins[7]), (103, "synthetic#7"));
        assert!(
            generate(&SyntheticConfig {
                test: 0,
                ..small(0)
            })
            .test
            .is_none()
        );
    }

    #[test]
    fn classes_are_balanced_and_shuffled() {
        let d = generate(&SyntheticConfig {
            train: 1005,
            test: 0,
            size: 8,
            seed: 0,
        });
        let counts = d.train.class_counts();
        assert!(counts.iter().all(|&c| c == 100 || c == 101), "{counts:?}");
        let labels = d.train.labels.unwrap();
        let in_order = labels
            .iter()
            .enumerate()
            .filter(|(i, l)| **l as usize == i % 10)
            .count();
        assert!(in_order < 300, "labels look unshuffled");
    }

    #[test]
    fn pixel_values_span_the_range() {
        let d = generate(&small(0));
        let mut hist = [0usize; 4];
        for &p in &d.train.pixels {
            hist[p as usize / 64] += 1;
        }
        let total = d.train.pixels.len() as f32;
        assert!(hist.iter().all(|&h| h as f32 > 0.05 * total), "{hist:?}");
        assert!(*d.train.pixels.iter().min().unwrap() <= 5);
        assert!(*d.train.pixels.iter().max().unwrap() >= 250);
    }

    #[test]
    fn noise_is_roughly_standard_normal() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let z: Vec<f32> = (0..50_000).flat_map(|_| noise_pair(&mut rng)).collect();
        let mean = z.iter().sum::<f32>() / z.len() as f32;
        let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / z.len() as f32;
        let beyond_2 = z.iter().filter(|v| v.abs() > 2.0).count() as f32 / z.len() as f32;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.03,
            "mean {mean}, variance {var}"
        );
        // A normal has 4.6 % beyond two sigma; a uniform would have none.
        assert!((0.035..0.055).contains(&beyond_2), "{beyond_2}");
    }

    /// Coverage mask of one random instance, centred, upright and noiseless.
    fn mask(class: Class, size: usize, rng: &mut impl Rng) -> Vec<f32> {
        let shape = class.shape(rng);
        let [x0, y0, x1, y1] = shape.bounds();
        let n = size as f32;
        let scale = 0.8 * n;
        // Centre the bounding box rather than the object origin.
        let centre = [
            n / 2.0 - scale * (x0 + x1) / 2.0,
            n / 2.0 + scale * (y0 + y1) / 2.0,
        ];
        let mut canvas = Canvas::new(size);
        canvas.paint(
            &shape,
            &Placement {
                centre,
                scale,
                angle: 0.0,
            },
            |_| [1.0; 3],
        );
        canvas.px.truncate(size * size);
        canvas.px
    }

    fn rotate_quarter(m: &[f32], size: usize) -> Vec<f32> {
        let mut out = vec![0.0; m.len()];
        for y in 0..size {
            for x in 0..size {
                out[x * size + (size - 1 - y)] = m[y * size + x];
            }
        }
        out
    }

    /// The pretext task is rotation prediction, so no class may look (nearly) the
    /// same after a quarter, half or three-quarter turn. Measured on centred masks,
    /// where position and background cannot make images differ.
    #[test]
    fn no_class_is_rotation_symmetric() {
        let size = 32;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for class in Class::ALL {
            let mut diff = [0.0f32; 3];
            let mut ink = 0.0;
            for _ in 0..20 {
                let m = mask(class, size, &mut rng);
                ink += m.iter().sum::<f32>();
                let mut r = m.clone();
                for d in diff.iter_mut() {
                    r = rotate_quarter(&r, size);
                    *d += m.iter().zip(&r).map(|(a, b)| (a - b).abs()).sum::<f32>();
                }
            }
            for (k, d) in diff.iter().enumerate() {
                // Twice the fraction of the object's ink that lands on background
                // after the turn: 0 for a symmetric shape. Above 0.3, at least 15 %
                // of the object (a trunk, a head, a crossbar) has moved. The tree,
                // nearly a triangle, is the closest at about 0.4.
                let moved = d / ink;
                assert!(
                    moved > 0.3,
                    "{} rotated by {} degrees differs by only {moved:.2}",
                    class.name(),
                    90 * (k + 1)
                );
            }
        }
    }

    /// Directional textures must not prefer "up": the mean brightness difference
    /// between the top and bottom halves of backgrounds averages out to zero.
    #[test]
    fn backgrounds_have_no_up() {
        let size = 16;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (mut vertical, mut horizontal) = (0.0f64, 0.0f64);
        let trials = 3000;
        for _ in 0..trials {
            let mut canvas = Canvas::new(size);
            fill_background(&mut canvas, &mut rng);
            let half = size / 2;
            let (mut top, mut left) = (0.0f64, 0.0f64);
            for y in 0..size {
                for x in 0..size {
                    let v: f32 = (0..3)
                        .map(|c| canvas.px[c * size * size + y * size + x])
                        .sum();
                    top += if y < half { v as f64 } else { -v as f64 };
                    left += if x < half { v as f64 } else { -v as f64 };
                }
            }
            vertical += top / (3 * size * size) as f64;
            horizontal += left / (3 * size * size) as f64;
        }
        let (v, h) = (vertical / trials as f64, horizontal / trials as f64);
        assert!(
            v.abs() < 0.01 && h.abs() < 0.01,
            "top-bottom {v:.4}, left-right {h:.4}"
        );
    }

    #[test]
    fn shapes_have_similar_ink() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let ink: Vec<f32> = Class::ALL
            .iter()
            .map(|&c| {
                (0..30)
                    .map(|_| mask(c, 48, &mut rng).iter().sum::<f32>())
                    .sum::<f32>()
                    / 30.0
            })
            .collect();
        let (lo, hi) = ink
            .iter()
            .fold((f32::MAX, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
        eprintln!(
            "ink per class: {:?}",
            Class::ALL
                .iter()
                .zip(&ink)
                .map(|(c, v)| format!("{} {:.0}", c.name(), v))
                .collect::<Vec<_>>()
        );
        assert!(hi / lo < 1.35, "ink ranges from {lo} to {hi}");
    }

    /// Writes a contact sheet (a row per class) to /tmp/synthetic_grid.png for a
    /// person to look at: `cargo test --release write_contact_sheet -- --ignored`.
    /// `SYNTHETIC_GRID_SIZE` and `SYNTHETIC_GRID_SEED` pick another image side or draw.
    #[test]
    #[ignore]
    fn write_contact_sheet() {
        let env =
            |name: &str, default: u64| std::env::var(name).map_or(default, |v| v.parse().unwrap());
        let size = env("SYNTHETIC_GRID_SIZE", 32) as usize;
        let seed = env("SYNTHETIC_GRID_SEED", 0);
        // Every image is shown about 96 pixels wide whatever its size.
        let (cols, zoom, gap) = (12, (96 / size).max(1), 2);
        let d = generate(&SyntheticConfig {
            train: 400,
            test: 0,
            size,
            seed,
        });
        let t = &d.train;
        let labels = t.labels.as_ref().unwrap();
        let cell = t.width * zoom + gap;
        let mut sheet = image::RgbImage::from_pixel(
            (cols * cell) as u32,
            (10 * cell) as u32,
            image::Rgb([255; 3]),
        );
        for class in 0..10u32 {
            let picks = (0..t.len).filter(|&i| labels[i] == class).take(cols);
            for (col, i) in picks.enumerate() {
                let img = t.image(i);
                let plane = t.width * t.height;
                for y in 0..t.height * zoom {
                    for x in 0..t.width * zoom {
                        let p = (y / zoom) * t.width + x / zoom;
                        let rgb = image::Rgb([img[p], img[plane + p], img[2 * plane + p]]);
                        sheet.put_pixel(
                            (col * cell + x) as u32,
                            (class as usize * cell + y) as u32,
                            rgb,
                        );
                    }
                }
            }
        }
        sheet.save("/tmp/synthetic_grid.png").unwrap();
    }
}
