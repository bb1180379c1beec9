//! Runs an ONNX export through tract (a runtime pretext did not write) on a `.npy` of images,
//! float32 `[n, c, h, w]` of pixel/255, and writes the features as a float32 `[n, d]` `.npy`:
//! bench/interop_check.py compares them with `pretext embed`'s.
//!
//!     cargo run --release --example tract_features -- MODEL.onnx IMAGES.npy FEATURES.npy

use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_path, images_path, out_path] = &args[..] else {
        eprintln!("usage: tract_features MODEL.onnx IMAGES.npy FEATURES.npy");
        std::process::exit(2);
    };
    let bytes = std::fs::read(images_path)?;
    let npy = npyz::NpyFile::new(&bytes[..])?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let pixels: Vec<f32> = npy.into_vec()?;
    let model = tract_onnx::onnx()
        .model_for_path(model_path)?
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_optimized()?
        .into_runnable()?;
    let input = tract_ndarray::ArrayD::from_shape_vec(shape, pixels)?;
    let out = model.run(tvec!(Tensor::from(input).into()))?;
    let view = out[0].to_plain_array_view::<f32>()?;
    let dims: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
    let values: Vec<f32> = view.iter().copied().collect();
    pretext::npy::write(std::path::Path::new(out_path), &values, &dims)?;
    println!("wrote {out_path} ({dims:?})");
    Ok(())
}
