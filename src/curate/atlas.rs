//! Thumbnails packed into a few JPEG sprite sheets, so that a page can show any of 60,000
//! images from a handful of files. Sheets are filled in the order images arrive and written as
//! each fills: memory holds one sheet, whatever the number of images.

use std::path::{Path, PathBuf};

use image::{RgbImage, imageops::FilterType};
use rayon::prelude::*;

use crate::data::ImageSet;
use crate::util::fs::write_atomic;

/// A sheet's side in pixels: large enough that 60,000 thumbnails of 32 px fit in four sheets,
/// small enough for every browser to decode.
pub const SHEET_SIDE: u32 = 4096;
/// JPEG quality of the sheets: thumbnails stay clean at a fraction of PNG's size.
const SHEET_QUALITY: u8 = 85;
/// Thumbnail sides `explore` accepts.
pub const THUMB_RANGE: std::ops::RangeInclusive<u32> = 8..=256;

/// Where thumbnail `i` is: sheet `i / per_sheet`, cell `i % per_sheet`, cells filling rows of
/// `columns` from the top left.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AtlasLayout {
    /// The sheets' file names, beside the page.
    pub files: Vec<String>,
    /// A thumbnail's side in pixels.
    pub thumb: u32,
    pub columns: u32,
    pub per_sheet: u32,
}

impl AtlasLayout {
    fn new(thumb: u32) -> Self {
        let columns = SHEET_SIDE / thumb;
        AtlasLayout {
            files: Vec::new(),
            thumb,
            columns,
            per_sheet: columns * columns,
        }
    }

    /// The sheet index and the top-left pixel of thumbnail `i`.
    pub fn cell(&self, i: usize) -> (usize, u32, u32) {
        let in_sheet = (i % self.per_sheet as usize) as u32;
        (
            i / self.per_sheet as usize,
            (in_sheet % self.columns) * self.thumb,
            (in_sheet / self.columns) * self.thumb,
        )
    }
}

/// Builds the sheets of one page in `dir` as images are added.
pub struct AtlasWriter {
    dir: PathBuf,
    layout: AtlasLayout,
    sheet: RgbImage,
    /// Thumbnails in the current sheet.
    filled: u32,
}

impl AtlasWriter {
    pub fn new(dir: &Path, thumb: u32) -> Result<Self, String> {
        if !THUMB_RANGE.contains(&thumb) {
            return Err(format!(
                "thumbnail side must be {} to {} pixels, got {thumb}",
                THUMB_RANGE.start(),
                THUMB_RANGE.end()
            ));
        }
        Ok(AtlasWriter {
            dir: dir.to_path_buf(),
            layout: AtlasLayout::new(thumb),
            sheet: RgbImage::new(SHEET_SIDE, SHEET_SIDE),
            filled: 0,
        })
    }

    /// Thumbnails so far.
    pub fn len(&self) -> usize {
        self.layout.files.len() * self.layout.per_sheet as usize + self.filled as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the thumbnails of `images`, scaled in parallel.
    pub fn add(&mut self, images: &ImageSet) -> std::io::Result<()> {
        let thumb = self.layout.thumb;
        let thumbs: Vec<RgbImage> = (0..images.len)
            .into_par_iter()
            .map(|i| thumbnail(images, i, thumb))
            .collect();
        for t in &thumbs {
            let (_, x, y) = self.layout.cell(self.filled as usize);
            image::imageops::replace(&mut self.sheet, t, i64::from(x), i64::from(y));
            self.filled += 1;
            if self.filled == self.layout.per_sheet {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the last sheet (cut to its filled rows) and returns the layout.
    pub fn finish(mut self) -> std::io::Result<AtlasLayout> {
        if self.filled > 0 {
            self.flush()?;
        }
        Ok(self.layout)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let rows = self.filled.div_ceil(self.layout.columns);
        let height = rows * self.layout.thumb;
        let sheet = std::mem::replace(&mut self.sheet, RgbImage::new(SHEET_SIDE, SHEET_SIDE));
        let used = image::imageops::crop_imm(&sheet, 0, 0, SHEET_SIDE, height).to_image();
        let name = format!("atlas-{}.jpg", self.layout.files.len());
        write_atomic(&self.dir.join(&name), &encode_jpeg(&used)?)?;
        self.layout.files.push(name);
        self.filled = 0;
        Ok(())
    }
}

fn encode_jpeg(image: &RgbImage) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, SHEET_QUALITY)
        .encode_image(image)
        .map_err(std::io::Error::other)?;
    Ok(bytes)
}

/// Image `i` of `set` as an RGB picture (grey repeated over the three channels).
pub fn picture(set: &ImageSet, i: usize) -> RgbImage {
    let pixels = set.image(i);
    let plane = set.height * set.width;
    let channel = |c: usize| if set.channels >= 3 { c } else { 0 };
    let mut out = RgbImage::new(set.width as u32, set.height as u32);
    for (p, px) in out.pixels_mut().enumerate() {
        px.0 = [0, 1, 2].map(|c| pixels[channel(c) * plane + p]);
    }
    out
}

/// Image `i` of `set` scaled to `side` x `side`.
fn thumbnail(set: &ImageSet, i: usize, side: u32) -> RgbImage {
    let full = picture(set, i);
    if full.dimensions() == (side, side) {
        return full;
    }
    image::imageops::resize(&full, side, side, FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(n: usize, channels: usize, side: usize) -> ImageSet {
        let len = channels * side * side;
        ImageSet {
            pixels: (0..n * len).map(|v| ((v / len) * 40 % 256) as u8).collect(),
            labels: None,
            len: n,
            channels,
            height: side,
            width: side,
            class_names: vec![],
            origins: None,
        }
    }

    #[test]
    fn thumbnails_fill_sheets_in_order_and_the_last_is_cut_to_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut atlas = AtlasWriter::new(dir.path(), 256).unwrap();
        // 16 x 16 cells per sheet: 300 thumbnails are one full sheet and 44 in a second.
        atlas.add(&images(200, 1, 20)).unwrap();
        atlas.add(&images(100, 3, 20)).unwrap();
        assert_eq!(atlas.len(), 300);
        let layout = atlas.finish().unwrap();
        assert_eq!(layout.files, ["atlas-0.jpg", "atlas-1.jpg"]);
        assert_eq!((layout.columns, layout.per_sheet), (16, 256));
        let second = image::open(dir.path().join("atlas-1.jpg")).unwrap();
        assert_eq!((second.width(), second.height()), (SHEET_SIDE, 3 * 256));
        // Thumbnail 257 is the first of the second sheet's second row.
        assert_eq!(layout.cell(257 + 15), (1, 0, 256));
        let first = image::open(dir.path().join("atlas-0.jpg"))
            .unwrap()
            .to_rgb8();
        // Image 3 of the first set is uniformly grey 120: its cell holds that grey.
        let (_, x, y) = layout.cell(3);
        let px = first.get_pixel(x + 128, y + 128).0;
        assert!(px.iter().all(|&v| (v as i32 - 120).abs() <= 3), "{px:?}");
    }

    #[test]
    fn a_thumbnail_side_out_of_range_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = AtlasWriter::new(dir.path(), 4).err().unwrap();
        assert!(err.contains("thumbnail side"), "{err}");
    }
}
