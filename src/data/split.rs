//! Stratified, seeded few-label subsets.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{DataError, ImageSet};

/// Indices of `per_class` images of every class, chosen at random by `seed`, sorted by class.
/// `None` takes every labelled image.
pub fn few_labels(
    set: &ImageSet,
    per_class: Option<usize>,
    seed: u64,
) -> Result<Vec<usize>, DataError> {
    let labels = set.labels.as_ref().ok_or_else(|| {
        DataError::Other(
            "transfer needs labelled training images; this data set has no labels".into(),
        )
    })?;
    let mut by_class = vec![Vec::new(); set.num_classes()];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let Some(n) = per_class else {
        return Ok((0..labels.len()).collect());
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5b5e_7000_0000);
    let mut chosen = Vec::with_capacity(n * by_class.len());
    for (class, members) in by_class.iter_mut().enumerate() {
        if members.len() < n {
            return Err(DataError::Other(format!(
                "labels_per_class = {n} but class `{}` has only {} training images",
                set.class_names[class],
                members.len()
            )));
        }
        members.shuffle(&mut rng);
        chosen.extend_from_slice(&members[..n]);
    }
    Ok(chosen)
}

/// Split a labelled set into (train, test), holding out `fraction` of every class, seeded.
pub fn holdout(set: &ImageSet, fraction: f64, seed: u64) -> (ImageSet, ImageSet) {
    let labels = set.labels.as_ref().expect("holdout needs labels");
    let mut by_class = vec![Vec::new(); set.num_classes()];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x401d_0u64);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for members in &mut by_class {
        members.shuffle(&mut rng);
        let n_test = ((members.len() as f64 * fraction).round() as usize)
            .min(members.len().saturating_sub(1));
        test.extend_from_slice(&members[..n_test]);
        train.extend_from_slice(&members[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (set.subset(&train), set.subset(&test))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(labels: Vec<u32>, classes: usize) -> ImageSet {
        ImageSet {
            pixels: vec![0; labels.len()],
            len: labels.len(),
            labels: Some(labels),
            channels: 1,
            height: 1,
            width: 1,
            class_names: (0..classes).map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn takes_n_of_each_class_deterministically() {
        let s = set((0..100).map(|i| i % 4).collect(), 4);
        let a = few_labels(&s, Some(5), 1).unwrap();
        assert_eq!(a.len(), 20);
        let labels = s.labels.as_ref().unwrap();
        for c in 0..4 {
            assert_eq!(a.iter().filter(|&&i| labels[i] == c).count(), 5);
        }
        assert_eq!(a, few_labels(&s, Some(5), 1).unwrap());
        assert_ne!(a, few_labels(&s, Some(5), 2).unwrap());
    }

    #[test]
    fn holdout_keeps_every_class_on_both_sides() {
        let s = set((0..50).map(|i| i % 5).collect(), 5);
        let (train, test) = holdout(&s, 0.2, 0);
        assert_eq!((train.len, test.len), (40, 10));
        assert!(train.class_counts().iter().all(|&c| c == 8));
        assert!(test.class_counts().iter().all(|&c| c == 2));
    }

    #[test]
    fn too_many_labels_per_class_is_an_error_naming_the_class() {
        let s = set(vec![0, 0, 1], 2);
        let err = few_labels(&s, Some(2), 0).unwrap_err().to_string();
        assert!(err.contains("class `1`"), "{err}");
    }
}
