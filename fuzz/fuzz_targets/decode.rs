//! The streaming reader's decoding of one untrusted file: its header (with the pixel limit that
//! refuses decompression bombs), then a decode at every DCT scale and a framing at 16 pixels.
//! Any input must give pixels of the right size or an error, never a panic or an allocation
//! beyond the limit.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pretext::data::decode;
use pretext::data::source::Framing;
use pretext::data::stream::Framer;

/// Small enough that a fuzzed header cannot ask for a large buffer.
const MAX_PIXELS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&need, bytes)) = data.split_first() else {
        return;
    };
    let path = Path::new(if bytes.starts_with(b"\x89PNG") { "f.png" } else { "f.jpg" });
    let Ok(header) = decode::header(path, bytes, MAX_PIXELS) else {
        return;
    };
    for channels in [1, 3] {
        if let Ok(pixels) = decode::decode(path, bytes, &header, channels, need as u32) {
            assert_eq!(pixels.data.len(), (pixels.width * pixels.height) as usize * channels);
            let framer = Framer {
                image_size: 16,
                eval_crop: 0.875,
                crop_min_scale: 1.0,
                max_pixels: MAX_PIXELS,
            };
            assert_eq!(framer.frame(&pixels, Framing::Eval).len(), 16 * 16 * channels);
        }
    }
});
