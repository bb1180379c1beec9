//! `.npy` files: float32 matrices and integer vectors in and out, checked against the file size
//! before anything is allocated.

use std::path::Path;

use crate::Error;
use crate::train::checkpoint::write_atomic;

/// Bytes after the header of a `.npy` file that has already parsed (versions 1 to 3).
fn payload_len(bytes: &[u8]) -> u64 {
    let start = match bytes.get(6) {
        Some(1) => 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        _ => 12 + u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
    };
    bytes.len().saturating_sub(start) as u64
}

/// A row-major float32 matrix read from `.npy`.
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
}

/// Reads a 2-D float32 (or float64, converted) C-order array.
pub fn read_matrix(path: &Path) -> Result<Matrix, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |problem: String| Error::msg(format!("{}: {problem}", path.display()));
    let npy =
        npyz::NpyFile::new(bytes.as_slice()).map_err(|e| bad(format!("not a .npy file: {e}")))?;
    let shape = npy.shape().to_vec();
    let [rows, cols] = shape[..] else {
        return Err(bad(format!(
            "expected a 2-D array (rows x features), found shape {shape:?}"
        )));
    };
    if npy.order() != npyz::Order::C {
        return Err(bad(
            "Fortran-order arrays are not supported; save it in C order".into(),
        ));
    }
    let dtype = npy.dtype().descr().trim_matches('\'').to_owned();
    let width = match dtype.as_str() {
        "<f4" => 4,
        "<f8" => 8,
        other => {
            return Err(bad(format!(
                "expected float32 or float64 values, found dtype {other}"
            )));
        }
    };
    let declared = rows.checked_mul(cols).and_then(|n| n.checked_mul(width));
    if declared.is_none_or(|d| d > payload_len(&bytes)) {
        return Err(bad(format!(
            "the header declares {rows} x {cols} values of {width} bytes but the file holds {} bytes of data",
            payload_len(&bytes)
        )));
    }
    let values: Vec<f32> = if width == 4 {
        npy.into_vec::<f32>()
    } else {
        npy.into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect())
    }
    .map_err(|e| bad(format!("cannot read the values: {e}")))?;
    Ok(Matrix {
        rows: rows as usize,
        cols: cols as usize,
        values,
    })
}

/// Reads a 1-D array of non-negative integer labels (int64, int32 or uint8).
pub fn read_labels(path: &Path) -> Result<Vec<u32>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |problem: String| Error::msg(format!("{}: {problem}", path.display()));
    let npy =
        npyz::NpyFile::new(bytes.as_slice()).map_err(|e| bad(format!("not a .npy file: {e}")))?;
    let shape = npy.shape().to_vec();
    let [n] = shape[..] else {
        return Err(bad(format!(
            "expected a 1-D array of labels, found shape {shape:?}"
        )));
    };
    // Labels take at least a byte each, whatever their dtype.
    if n > payload_len(&bytes) {
        return Err(bad(format!(
            "the header declares {n} labels but the file holds {} bytes of data",
            payload_len(&bytes)
        )));
    }
    let dtype = npy.dtype().descr().trim_matches('\'').to_owned();
    let values: Vec<i64> = match dtype.as_str() {
        "<i8" => npy.into_vec::<i64>(),
        "<i4" => npy
            .into_vec::<i32>()
            .map(|v| v.into_iter().map(i64::from).collect()),
        "|u1" => npy
            .into_vec::<u8>()
            .map(|v| v.into_iter().map(i64::from).collect()),
        other => return Err(bad(format!("expected integer labels, found dtype {other}"))),
    }
    .map_err(|e| bad(format!("cannot read the labels: {e}")))?;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            u32::try_from(v).map_err(|_| bad(format!("label {i} is {v}, not a class index")))
        })
        .collect()
}

/// Writes `values` with `shape` atomically, in the type's default dtype.
pub fn write<T: npyz::AutoSerialize + Clone>(
    path: &Path,
    values: &[T],
    shape: &[u64],
) -> Result<(), Error> {
    use npyz::WriterBuilder;
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut bytes)
        .begin_nd()
        .map_err(|e| Error::io(path, e))?;
    writer
        .extend(values.iter().cloned())
        .map_err(|e| Error::io(path, e))?;
    writer.finish().map_err(|e| Error::io(path, e))?;
    Ok(write_atomic(path, &bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.npy");
        write(&p, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        let m = read_matrix(&p).unwrap();
        assert_eq!((m.rows, m.cols), (2, 3));
        assert_eq!(m.values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);

        let v = dir.path().join("v.npy");
        write(&v, &[1i64, 2], &[2]).unwrap();
        let err = read_matrix(&v).err().unwrap().to_string();
        assert!(err.contains("v.npy") && err.contains("2-D"), "{err}");

        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let err = read_matrix(&p).err().unwrap().to_string();
        assert!(err.contains("declares 2 x 3"), "{err}");
        std::fs::write(&p, b"not numpy").unwrap();
        assert!(
            read_matrix(&p)
                .err()
                .unwrap()
                .to_string()
                .contains("not a .npy")
        );
    }
}
