//! IDX reader: an image file and a label file from the input, raw or gzipped, loaded as a
//! data set. Any outcome but a panic, an abort or a huge allocation is fine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pretext::data::{self, Format, folder::FolderOptions};

#[path = "scratch_dir.rs"]
mod scratch_dir;
use scratch_dir::{ScratchDir, gzip, split2};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let (images, labels) = split2(data);
    let dir = ScratchDir::new("idx");
    if flags & 1 == 1 {
        dir.write("train-images-idx3-ubyte.gz", &gzip(images));
    } else {
        dir.write("train-images-idx3-ubyte", images);
    }
    if flags & 2 == 2 {
        dir.write("train-labels-idx1-ubyte.gz", &gzip(labels));
    } else {
        dir.write("train-labels-idx1-ubyte", labels);
    }
    let _ = data::load(dir.path(), Some(Format::Idx), &FolderOptions::default());
});
