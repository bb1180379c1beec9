//! One single-threaded `gemm` product over strided matrix views; the kernels parallelise over
//! images, sequences or heads around it.

/// A read-only matrix: its values and the element strides between rows and between columns.
pub type View<'a> = (&'a [f32], usize, usize);

/// The number of elements a `rows × cols` view with strides `(row, col)` reaches.
fn extent(rows: usize, cols: usize, row: usize, col: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row + (cols - 1) * col + 1
    }
}

/// `dst[m×n] = (accumulate ? dst : 0) + scale · lhs[m×k] · rhs[k×n]`, where `dst` is row-major
/// with `dst_row` elements between rows (a column block of a wider matrix when `dst_row > n`).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_row: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    scale: f32,
) {
    assert!(dst_row >= n && dst.len() >= extent(m, n, dst_row, 1));
    assert!(lhs.0.len() >= extent(m, k, lhs.1, lhs.2));
    assert!(rhs.0.len() >= extent(k, n, rhs.1, rhs.2));
    // SAFETY: the assertions above keep every element the strides address inside its slice,
    // and `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
