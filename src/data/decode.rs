//! One image file to pixels, for the streaming reader: the header first (size and colour, to
//! refuse decompression bombs before any pixel is allocated), then a decode at the smallest
//! JPEG DCT scale (1/8, 1/4, 1/2 or 1) that still covers the size the caller needs.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader};

use super::{DataError, Result};

/// The default for `data.max_image_pixels`: 100 megapixels (a 12,000 x 8,000 photo passes; a
/// 30,000 x 30,000 PNG declared by a 900 KB file does not).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// What a file's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    /// Whether the image has colour (otherwise grey, with or without alpha).
    pub colour: bool,
}

/// Decoded pixels, interleaved (`[h][w][c]`), with 1 or 3 channels.
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: usize,
    pub data: Vec<u8>,
}

fn corrupt(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::CorruptImage {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn reader<'b>(path: &Path, bytes: &'b [u8]) -> Result<ImageReader<Cursor<&'b [u8]>>> {
    let mut reader = ImageReader::new(Cursor::new(bytes));
    if let Ok(format) = ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    reader
        .with_guessed_format()
        .map_err(|e| corrupt(path, e.to_string()))
}

/// The header of `bytes` (the file at `path`), checked against the pixel limit.
pub fn header(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<Header> {
    let reader = reader(path, bytes)?;
    let format = reader
        .format()
        .ok_or_else(|| corrupt(path, "not a PNG or JPEG file"))?;
    let decoder = reader
        .into_decoder()
        .map_err(|e| corrupt(path, e.to_string()))?;
    use image::ImageDecoder;
    let (width, height) = decoder.dimensions();
    let colour = decoder.color_type().has_color();
    if width == 0 || height == 0 {
        return Err(corrupt(path, "image has no pixels"));
    }
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            problem: format!(
                "declares {width}x{height} = {pixels} pixels, over the limit of {max_pixels} per image (data.max_image_pixels); refused as a possible decompression bomb"
            ),
        });
    }
    Ok(Header {
        format,
        width,
        height,
        colour,
    })
}

/// The largest power-of-two reduction (at most 8) of a `width` x `height` image whose shorter
/// side stays at least `need`.
pub fn dct_reduction(width: u32, height: u32, need: u32) -> u32 {
    let short = width.min(height);
    let mut factor = 1;
    while factor < 8 && short / (factor * 2) >= need.max(1) {
        factor *= 2;
    }
    factor
}

/// Decodes `bytes` to `channels` (1 or 3) channels, at a reduced scale where the file is a JPEG
/// whose shorter side is at least twice `need`.
pub fn decode(
    path: &Path,
    bytes: &[u8],
    header: &Header,
    channels: usize,
    need: u32,
) -> Result<Pixels> {
    if header.format == ImageFormat::Jpeg {
        super::folder::check_jpeg_complete(bytes).map_err(|p| corrupt(path, p))?;
        let factor = dct_reduction(header.width, header.height, need);
        if factor > 1
            && let Some(pixels) = decode_jpeg_scaled(path, bytes, header, channels, factor)?
        {
            return Ok(pixels);
        }
    }
    let image = reader(path, bytes)?
        .decode()
        .map_err(|e| corrupt(path, e.to_string()))?;
    Ok(to_channels(image, channels))
}

/// A JPEG decoded by jpeg-decoder's scaled IDCT; `None` for the colour models it returns
/// unconverted (CMYK, 16-bit), which the full decoder handles.
fn decode_jpeg_scaled(
    path: &Path,
    bytes: &[u8],
    header: &Header,
    channels: usize,
    factor: u32,
) -> Result<Option<Pixels>> {
    use jpeg_decoder::PixelFormat;
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder
        .read_info()
        .map_err(|e| corrupt(path, e.to_string()))?;
    let format = decoder.info().map(|i| i.pixel_format);
    if !matches!(format, Some(PixelFormat::L8 | PixelFormat::RGB24)) {
        return Ok(None);
    }
    let want = |side: u32| (side / factor).clamp(1, u16::MAX as u32) as u16;
    let (width, height) = decoder
        .scale(want(header.width), want(header.height))
        .map_err(|e| corrupt(path, e.to_string()))?;
    let data = decoder.decode().map_err(|e| corrupt(path, e.to_string()))?;
    let (width, height) = (width as u32, height as u32);
    let image = match format {
        Some(PixelFormat::L8) => {
            image::GrayImage::from_raw(width, height, data).map(DynamicImage::ImageLuma8)
        }
        _ => image::RgbImage::from_raw(width, height, data).map(DynamicImage::ImageRgb8),
    }
    .ok_or_else(|| {
        corrupt(
            path,
            "JPEG decoder returned fewer pixels than the image size",
        )
    })?;
    Ok(Some(to_channels(image, channels)))
}

/// Any colour model (grey, grey+alpha, RGB, RGBA, CMYK, 16-bit) to 8-bit grey or RGB.
fn to_channels(image: DynamicImage, channels: usize) -> Pixels {
    let (width, height) = (image.width(), image.height());
    let data = if channels == 1 {
        match image {
            DynamicImage::ImageLuma8(buf) => buf.into_raw(),
            other => other.to_luma8().into_raw(),
        }
    } else {
        match image {
            DynamicImage::ImageRgb8(buf) => buf.into_raw(),
            other => other.to_rgb8().into_raw(),
        }
    };
    Pixels {
        width,
        height,
        channels,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
            .unwrap();
        out
    }

    #[test]
    fn reduction_keeps_the_short_side_above_the_need() {
        assert_eq!(dct_reduction(4000, 3000, 256), 8);
        assert_eq!(dct_reduction(1000, 800, 256), 2);
        assert_eq!(dct_reduction(600, 800, 256), 2);
        assert_eq!(dct_reduction(500, 800, 256), 1);
        assert_eq!(dct_reduction(32, 32, 32), 1);
    }

    #[test]
    fn large_jpeg_decodes_at_reduced_scale() {
        let path = Path::new("big.jpg");
        let bytes = jpeg(1024, 768);
        let h = header(path, &bytes, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((h.width, h.height, h.colour), (1024, 768, true));
        let px = decode(path, &bytes, &h, 3, 150).unwrap();
        assert_eq!((px.width, px.height), (256, 192));
        assert_eq!(px.data.len(), 256 * 192 * 3);
        let grey = decode(path, &bytes, &h, 1, 1000).unwrap();
        assert_eq!(
            (grey.width, grey.height, grey.data.len()),
            (1024, 768, 1024 * 768)
        );
    }

    #[test]
    fn every_colour_mode_becomes_grey_or_rgb() {
        let png = |image: DynamicImage| {
            let mut out = Vec::new();
            image
                .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
                .unwrap();
            out
        };
        let images = [
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 2, image::Luma([200]))),
            DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
                4,
                2,
                image::LumaA([200, 9]),
            )),
            DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
                4,
                2,
                image::Rgba([200, 200, 200, 9]),
            )),
            DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
                4,
                2,
                image::Luma([200 * 257u16]),
            )),
            DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
                4,
                2,
                image::Rgb([200 * 257u16; 3]),
            )),
        ];
        for (k, image) in images.into_iter().enumerate() {
            let colour = image.color().has_color();
            let bytes = png(image);
            let path = Path::new("mode.png");
            let h = header(path, &bytes, DEFAULT_MAX_PIXELS).unwrap();
            assert_eq!((h.width, h.height, h.colour), (4, 2, colour), "mode {k}");
            for channels in [1, 3] {
                let px = decode(path, &bytes, &h, channels, 2).unwrap();
                assert_eq!(px.data.len(), 4 * 2 * channels, "mode {k}");
                assert!(px.data.iter().all(|&v| v == 200), "mode {k}: {:?}", px.data);
            }
        }
    }

    #[test]
    fn pixel_bomb_is_refused_from_its_header() {
        // A PNG declaring 30,000 x 30,000 grey pixels, with a few bytes of image data: a real
        // bomb's data would inflate to 900 MB, but the header alone must be enough to refuse it.
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&30_000u32.to_be_bytes());
        ihdr.extend_from_slice(&30_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(
            &mut png,
            b"IDAT",
            &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
        );
        chunk(&mut png, b"IEND", &[]);
        let err = header(Path::new("bomb.png"), &png, DEFAULT_MAX_PIXELS).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("bomb.png") && text.contains("30000x30000"),
            "{text}"
        );
        assert!(text.contains("data.max_image_pixels"), "{text}");
    }

    fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
