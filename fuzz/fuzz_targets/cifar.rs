//! CIFAR-10 / CIFAR-100 binary reader: a training batch, a test batch and a class-name file
//! from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pretext::data::{self, Format, folder::FolderOptions};

#[path = "scratch_dir.rs"]
mod scratch_dir;
use scratch_dir::{ScratchDir, split2};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let (train, rest) = split2(data);
    let (test, names) = split2(rest);
    let dir = ScratchDir::new("cifar");
    let format = if flags & 1 == 0 {
        dir.write("data_batch_1.bin", train);
        dir.write("test_batch.bin", test);
        dir.write("batches.meta.txt", names);
        Format::Cifar10
    } else {
        dir.write("train.bin", train);
        dir.write("test.bin", test);
        dir.write("fine_label_names.txt", names);
        Format::Cifar100
    };
    let forced = if flags & 2 == 0 { Some(format) } else { None };
    let _ = data::load(dir.path(), forced, &FolderOptions::default());
});
