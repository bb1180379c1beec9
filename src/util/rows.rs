//! Checks on a matrix of features given as row-major values.

/// `values` must be `n` rows of `dim` (> 0) finite numbers; `purpose` says in the message
/// what needs them finite (e.g. "k-means").
pub fn check_finite_rows(
    values: &[f32],
    n: usize,
    dim: usize,
    purpose: &str,
) -> Result<(), String> {
    if dim == 0 || n.checked_mul(dim) != Some(values.len()) {
        return Err(format!(
            "{} values do not form {n} rows of {dim}",
            values.len()
        ));
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!(
            "row {} column {} is {} ({purpose} needs finite values)",
            i / dim,
            i % dim,
            values[i]
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_non_finite_values_are_named() {
        assert!(check_finite_rows(&[1.0; 6], 2, 3, "x").is_ok());
        let err = check_finite_rows(&[1.0; 5], 2, 3, "x").unwrap_err();
        assert!(err.contains("5 values do not form 2 rows of 3"), "{err}");
        let err = check_finite_rows(&[0.0, 1.0, f32::NAN, 0.0], 2, 2, "UMAP").unwrap_err();
        assert_eq!(err, "row 1 column 0 is NaN (UMAP needs finite values)");
    }
}
