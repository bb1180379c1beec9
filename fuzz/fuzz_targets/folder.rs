//! Image-folder scan and decode: the input describes a small tree of files (class folders,
//! train/test splits, hidden and non-image files; real PNG/JPEG images of any size and channel
//! count, whole or cut short, or raw bytes) that is then loaded as a data set.
#![no_main]

use std::io::Cursor;

use image::{DynamicImage, ImageFormat};
use libfuzzer_sys::fuzz_target;
use pretext::data::{self, Format, folder::FolderOptions};

#[path = "scratch_dir.rs"]
mod scratch_dir;
use scratch_dir::ScratchDir;

const DIRS: [&str; 8] = [
    "", "a/", "b/", ".hidden/", "train/a/", "train/b/", "test/a/", "test/c/",
];
const NAMES: [&str; 8] = [
    "x.png", "y.jpg", "z.JPEG", "notes.txt", ".DS_Store", "noext", "w.png", "v.jpg",
];

fn image_bytes(spec: &[u8; 4], jpeg: bool) -> Vec<u8> {
    let (w, h) = (1 + spec[0] as u32 % 12, 1 + spec[1] as u32 % 12);
    let img = match spec[2] % 4 {
        0 => DynamicImage::new_luma8(w, h),
        1 => DynamicImage::new_rgb8(w, h),
        2 => DynamicImage::new_rgba8(w, h),
        _ => DynamicImage::new_luma16(w, h),
    };
    let img = if jpeg { DynamicImage::ImageRgb8(img.to_rgb8()) } else { img };
    let mut out = Cursor::new(Vec::new());
    let format = if jpeg { ImageFormat::Jpeg } else { ImageFormat::Png };
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fuzz_target!(|data: &[u8]| {
    let dir = ScratchDir::new("folder");
    let mut rest = data;
    // Each entry: [where, kind, a, b, c, len] then `len` raw bytes.
    while rest.len() >= 6 && rest.len() < 1 << 16 {
        let (head, tail) = rest.split_at(6);
        let len = (head[5] as usize).min(tail.len());
        let (raw, tail) = tail.split_at(len);
        rest = tail;
        let path = format!(
            "{}{}{}",
            DIRS[head[0] as usize % 8],
            head[0] / 8 % 4,
            NAMES[head[1] as usize % 8]
        );
        let spec = [head[2], head[3], head[4], head[5]];
        let bytes = match head[1] / 8 % 4 {
            0 => raw.to_vec(),
            1 => image_bytes(&spec, false),
            2 => image_bytes(&spec, true),
            // A real image cut short or with bytes overwritten by the raw ones.
            _ => {
                let mut b = image_bytes(&spec, head[4] & 1 == 1);
                let cut = (head[3] as usize * 7) % b.len();
                if head[4] & 2 == 2 {
                    b.truncate(cut);
                } else {
                    for (i, x) in raw.iter().enumerate() {
                        let at = (cut + i) % b.len();
                        b[at] = *x;
                    }
                }
                b
            }
        };
        dir.write(&path, &bytes);
    }
    let skip_corrupt = data.first().is_some_and(|b| b & 0x80 != 0);
    let _ = data::load(dir.path(), Some(Format::Folder), &FolderOptions { skip_corrupt });
});
