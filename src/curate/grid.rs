//! A picture of nearest neighbours (`pretext neighbors`): one row per query image, the query
//! first, then its neighbours, most similar first, each with its cosine similarity and label.
//! Where labels exist a neighbour is framed green when it shares the query's label and red
//! when it does not, so the encoder's mistakes stand out.

use std::path::Path;

use image::{Rgb, RgbImage, imageops::FilterType};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::atlas::picture;
use crate::data::ImageSet;
use crate::util::font;

/// A cell's image side in pixels: small images are scaled up to be seen.
const CELL: u32 = 88;
/// Space around each cell, and under it for its two lines of text.
const PAD: u32 = 6;
const TEXT_BAND: u32 = 30;
const FRAME: u32 = 3;
/// Extra space between the query column and its neighbours.
const QUERY_GAP: u32 = 14;
const TEXT_SIZE: f64 = 12.0;
const SAME_LABEL: Rgb<u8> = Rgb([44, 160, 44]);
const OTHER_LABEL: Rgb<u8> = Rgb([214, 39, 40]);
const QUERY_FRAME: Rgb<u8> = Rgb([40, 40, 40]);
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
/// Characters of a label shown under a cell.
const LABEL_CHARS: usize = 13;

/// One row of the grid: the query and its neighbours with their similarities, as indices into
/// the images given to [`draw`].
pub struct GridRow {
    pub query: usize,
    pub neighbours: Vec<(usize, f32)>,
}

/// Draws `rows` of `images` (labelled or not) and writes the PNG to `out`.
pub fn draw(images: &ImageSet, rows: &[GridRow], out: &Path) -> std::io::Result<()> {
    let columns = rows.iter().map(|r| r.neighbours.len()).max().unwrap_or(0) + 1;
    let cell_w = CELL + 2 * PAD;
    let cell_h = CELL + 2 * PAD + TEXT_BAND;
    let width = columns as u32 * cell_w + QUERY_GAP;
    let height = rows.len().max(1) as u32 * cell_h;
    let mut canvas = RgbImage::from_pixel(width, height, BACKGROUND);
    let mut captions = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let y = r as u32 * cell_h + PAD;
        let query_label = images.labels.as_ref().map(|l| l[row.query]);
        place(&mut canvas, images, row.query, (PAD, y), QUERY_FRAME);
        captions.push(((PAD, y), "query".to_string(), label_of(images, row.query)));
        for (c, &(i, similarity)) in row.neighbours.iter().enumerate() {
            let x = (c as u32 + 1) * cell_w + QUERY_GAP + PAD;
            let frame = match (query_label, images.labels.as_ref().map(|l| l[i])) {
                (Some(q), Some(l)) if q == l => SAME_LABEL,
                (Some(_), Some(_)) => OTHER_LABEL,
                _ => BACKGROUND,
            };
            place(&mut canvas, images, i, (x, y), frame);
            captions.push(((x, y), format!("{similarity:.3}"), label_of(images, i)));
        }
    }
    write_captions(&mut canvas, &captions)?;
    let mut png = Vec::new();
    canvas
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(std::io::Error::other)?;
    crate::util::fs::write_atomic(out, &png)
}

/// Image `i` scaled into the cell at `(x, y)`, inside a frame of `colour`.
fn place(canvas: &mut RgbImage, images: &ImageSet, i: usize, (x, y): (u32, u32), colour: Rgb<u8>) {
    let outer = CELL + 2 * FRAME;
    let (fx, fy) = (x.saturating_sub(FRAME), y.saturating_sub(FRAME));
    for dy in 0..outer {
        for dx in 0..outer {
            canvas.put_pixel(fx + dx, fy + dy, colour);
        }
    }
    let scaled = image::imageops::resize(&picture(images, i), CELL, CELL, FilterType::Nearest);
    image::imageops::replace(canvas, &scaled, i64::from(x), i64::from(y));
}

fn label_of(images: &ImageSet, i: usize) -> String {
    let Some(labels) = &images.labels else {
        return String::new();
    };
    let name = &images.class_names[labels[i] as usize];
    match name.char_indices().nth(LABEL_CHARS) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.clone(),
    }
}

type Caption = ((u32, u32), String, String);

/// The two lines under each cell, drawn onto the canvas's pixels.
fn write_captions(canvas: &mut RgbImage, captions: &[Caption]) -> std::io::Result<()> {
    font::register();
    let (width, height) = canvas.dimensions();
    let area = BitMapBackend::with_buffer(canvas.as_mut(), (width, height)).into_drawing_area();
    let style = TextStyle::from((font::FAMILY, TEXT_SIZE).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for ((x, y), first, second) in captions {
        let centre = (x + CELL / 2) as i32;
        let top = (y + CELL + FRAME + 2) as i32;
        for (line, text) in [first, second].into_iter().enumerate() {
            area.draw_text(text, &style, (centre, top + 14 * line as i32))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
    }
    area.present()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_has_a_row_per_query_and_frames_by_label() {
        let side = 8;
        let images = ImageSet {
            pixels: (0..3 * side * side)
                .map(|v| (v / (side * side) * 100) as u8)
                .collect(),
            labels: Some(vec![0, 0, 1]),
            len: 3,
            channels: 1,
            height: side,
            width: side,
            class_names: vec!["cat".into(), "<b>dog</b>".into()],
            origins: None,
        };
        let rows = [
            GridRow {
                query: 0,
                neighbours: vec![(1, 0.9), (2, 0.5)],
            },
            GridRow {
                query: 2,
                neighbours: vec![(0, 0.5)],
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("grid.png");
        draw(&images, &rows, &out).unwrap();
        let png = image::open(&out).unwrap().to_rgb8();
        let (cell_w, cell_h) = (CELL + 2 * PAD, CELL + 2 * PAD + TEXT_BAND);
        assert_eq!(png.dimensions(), (3 * cell_w + QUERY_GAP, 2 * cell_h));
        // Row 0: neighbour 1 shares the query's label (green frame), neighbour 2 does not.
        let frame_at = |column: u32, row: u32| {
            let x = column * cell_w + QUERY_GAP + PAD - FRAME + 1;
            *png.get_pixel(x, row * cell_h + PAD + CELL / 2)
        };
        assert_eq!(frame_at(1, 0), SAME_LABEL);
        assert_eq!(frame_at(2, 0), OTHER_LABEL);
        assert_eq!(frame_at(1, 1), OTHER_LABEL);
        // The image itself is inside: image 2 is uniformly 200.
        let inside = png.get_pixel(2 * cell_w + QUERY_GAP + PAD + CELL / 2, PAD + CELL / 2);
        assert_eq!(inside.0, [200, 200, 200]);
    }
}
