//! `gemm` products over strided matrix views: single-threaded ones for kernels that
//! parallelise over images, sequences or heads around them, and whole-layer ones that let
//! `gemm` spread one product over rayon's threads.

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

/// Multiply-adds from which one product is worth `gemm`'s threads (burn-flex's threshold).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// # Safety
/// `dst` must hold `m×n` row-major values `dst_row` apart, valid for writes (and for reads
/// when `accumulate`), aliasing neither operand; the views must reach only their slices.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_row: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    scale: f32,
    parallelism: gemm::Parallelism,
) {
    assert!(lhs.0.len() >= extent(m, k, lhs.1, lhs.2));
    assert!(rhs.0.len() >= extent(k, n, rhs.1, rhs.2));
    // SAFETY: the caller's contract for dst; the assertions above for the operands.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
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
            parallelism,
        );
    }
}

/// `dst[m×n] = (accumulate ? dst : 0) + scale · lhs[m×k] · rhs[k×n]` on the calling thread,
/// where `dst` is row-major with `dst_row` elements between rows (a column block of a wider
/// matrix when `dst_row > n`).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dims: (usize, usize, usize),
    dst: &mut [f32],
    dst_row: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    scale: f32,
) {
    let (m, n, _) = dims;
    assert!(dst_row >= n && dst.len() >= extent(m, n, dst_row, 1));
    // SAFETY: dst is a live, exclusively borrowed slice that holds every row.
    unsafe {
        gemm_raw(
            dims,
            dst.as_mut_ptr(),
            dst_row,
            accumulate,
            lhs,
            rhs,
            scale,
            gemm::Parallelism::None,
        )
    }
}

fn threads_for(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_WORK {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// `dst[m×n] += lhs · rhs` (row-major `dst`), on rayon's threads when it is large.
pub fn accumulate_product(dims: (usize, usize, usize), dst: &mut [f32], lhs: View, rhs: View) {
    let (m, n, k) = dims;
    assert!(dst.len() >= m * n);
    // SAFETY: dst is a live, exclusively borrowed slice of m×n values.
    unsafe {
        gemm_raw(
            dims,
            dst.as_mut_ptr(),
            n,
            true,
            lhs,
            rhs,
            1.0,
            threads_for(m, n, k),
        );
    }
}

/// A new row-major `m×n` matrix `lhs · rhs`, on rayon's threads when it is large. The output
/// is written once: it is neither zeroed first nor copied after (burn-flex's matmul does both).
pub fn product(dims: (usize, usize, usize), lhs: View, rhs: View) -> Vec<f32> {
    let (m, n, k) = dims;
    if k == 0 {
        return vec![0.0; m * n];
    }
    let mut dst = Vec::<f32>::with_capacity(m * n);
    // SAFETY: the capacity holds m×n values; gemm writes every one of them without reading
    // (accumulate = false, k > 0) before the length covers them.
    unsafe {
        gemm_raw(
            dims,
            dst.as_mut_ptr(),
            n,
            false,
            lhs,
            rhs,
            1.0,
            threads_for(m, n, k),
        );
        dst.set_len(m * n);
    }
    dst
}
