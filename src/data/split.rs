//! Stratified, seeded few-label subsets.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{DataError, ImageSet};

/// Indices of `per_class` images of every class, chosen at random by `seed`, sorted by class.
/// `None` takes every labelled image. A class with fewer images is an error.
pub fn few_labels(
    set: &ImageSet,
    per_class: Option<usize>,
    seed: u64,
) -> Result<Vec<usize>, DataError> {
    let labels = labels_of(set)?;
    let (chosen, short) = few_of_labels(labels, set.num_classes(), per_class, seed);
    match short.first() {
        Some(&(class, have)) => Err(DataError::Other(format!(
            "labels_per_class = {} but class `{}` has only {have} training images",
            per_class.unwrap_or(0),
            set.class_names[class],
        ))),
        None => Ok(chosen),
    }
}

/// The labels of `set`, which transfer needs.
fn labels_of(set: &ImageSet) -> Result<&[u32], DataError> {
    set.labels.as_deref().ok_or_else(|| {
        DataError::Other(
            "transfer needs labelled training images; this data set has no labels".into(),
        )
    })
}

/// Indices of up to `per_class` examples of every class (all of a smaller class), chosen at
/// random by `seed`, sorted by class; and the (class, count) of the classes that had fewer.
/// `None` takes every example.
pub fn few_of_labels(
    labels: &[u32],
    classes: usize,
    per_class: Option<usize>,
    seed: u64,
) -> (Vec<usize>, Vec<(usize, usize)>) {
    let Some(n) = per_class else {
        return ((0..labels.len()).collect(), Vec::new());
    };
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5b5e_7000_0000);
    let mut chosen = Vec::with_capacity(n * classes);
    let mut short = Vec::new();
    for (class, members) in by_class.iter_mut().enumerate() {
        if members.len() < n {
            short.push((class, members.len()));
        }
        members.shuffle(&mut rng);
        chosen.extend_from_slice(&members[..n.min(members.len())]);
    }
    (chosen, short)
}

/// `count` labelled images of `set` drawn at random by `seed`: spread evenly over the classes
/// when `stratified` (the remainder going one each to classes in a seeded random order), else
/// drawn from all of them alike. More than there are, or more of a class than it has, is an
/// error naming the class.
pub fn random_labels(
    set: &ImageSet,
    count: usize,
    stratified: bool,
    seed: u64,
) -> Result<Vec<usize>, DataError> {
    let labels = labels_of(set)?;
    if count > labels.len() {
        return Err(DataError::Other(format!(
            "random_labels = {count} but there are only {} labelled training images",
            labels.len()
        )));
    }
    if !stratified {
        return Ok(sample(labels.len(), count, seed ^ 0x4a9d_0000_0000));
    }
    let mut by_class = vec![Vec::new(); set.num_classes()];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x57a7_0000_0000);
    let shares = class_shares(count, by_class.len(), &mut rng);
    let mut chosen = Vec::with_capacity(count);
    for (class, (members, share)) in by_class.iter_mut().zip(shares).enumerate() {
        if members.len() < share {
            return Err(DataError::Other(format!(
                "random_labels = {count} stratified needs {share} images of class `{}`, which has only {}",
                set.class_names[class],
                members.len()
            )));
        }
        members.shuffle(&mut rng);
        chosen.extend_from_slice(&members[..share]);
    }
    Ok(chosen)
}

/// `count` split over `classes`: the same share each, and one more for `count % classes` of
/// them chosen at random.
fn class_shares(count: usize, classes: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut shares = vec![count / classes.max(1); classes];
    let mut order: Vec<usize> = (0..classes).collect();
    order.shuffle(rng);
    for &c in order.iter().take(count % classes.max(1)) {
        shares[c] += 1;
    }
    shares
}

/// `limit` of the indices `0..n` chosen at random by `seed`, in increasing order (all of them
/// when `limit` is 0 or at least `n`).
pub fn sample(n: usize, limit: usize, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    if limit == 0 || limit >= n {
        return all;
    }
    all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7e57_0000));
    all.truncate(limit);
    all.sort_unstable();
    all
}

/// The rows of a test split of `n` that a transfer scores when `limit` caps it
/// (`transfer.test_limit`): a fixed sample, the same for every mode and seed; `None` when the
/// cap keeps them all.
pub fn scored_test_rows(n: usize, limit: usize) -> Option<Vec<usize>> {
    (limit > 0 && limit < n).then(|| sample(n, limit, 0))
}

/// Split a labelled set into (train, test), holding out `fraction` of every class, seeded.
pub fn holdout(set: &ImageSet, fraction: f64, seed: u64) -> (ImageSet, ImageSet) {
    let labels = set.labels.as_ref().expect("holdout needs labels");
    let (train, test) = holdout_indices(labels, set.num_classes(), fraction, seed);
    (set.subset(&train), set.subset(&test))
}

/// The indices of [`holdout`]'s (train, test) for items with `labels` of `classes` classes, so
/// a streamed folder is split exactly as the same folder in memory.
pub fn holdout_indices(
    labels: &[u32],
    classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut by_class = vec![Vec::new(); classes];
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
    (train, test)
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
            origins: None,
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

    fn counts(s: &ImageSet, chosen: &[usize], classes: usize) -> Vec<usize> {
        let labels = s.labels.as_ref().unwrap();
        let mut counts = vec![0; classes];
        chosen.iter().for_each(|&i| counts[labels[i] as usize] += 1);
        counts
    }

    #[test]
    fn random_unstratified_labels_differ_per_seed_and_fall_unevenly() {
        let s = set((0..400).map(|i| i % 10).collect(), 10);
        let draws: Vec<Vec<usize>> = (0..5)
            .map(|seed| random_labels(&s, 30, false, seed).unwrap())
            .collect();
        for d in &draws {
            let mut distinct = d.clone();
            distinct.dedup();
            assert_eq!(distinct.len(), 30);
        }
        assert!(draws.windows(2).all(|w| w[0] != w[1]));
        assert_eq!(draws[0], random_labels(&s, 30, false, 0).unwrap());
        // Chance does not give every class its 3.
        let uneven = draws
            .iter()
            .filter(|d| counts(&s, d, 10).iter().any(|&c| c != 3))
            .count();
        assert!(uneven >= 4, "{uneven} of 5 draws were uneven");
    }

    #[test]
    fn random_stratified_labels_spread_evenly_with_a_seeded_remainder() {
        let s = set((0..400).map(|i| i % 10).collect(), 10);
        let a = random_labels(&s, 34, true, 0).unwrap();
        let c = counts(&s, &a, 10);
        assert_eq!(c.iter().sum::<usize>(), 34);
        assert!(c.iter().all(|&n| n == 3 || n == 4), "{c:?}");
        assert_eq!(c.iter().filter(|&&n| n == 4).count(), 4);
        // Another seed gives the extra images to other classes (at least once in a few).
        assert!(
            (1..6).any(|seed| counts(&s, &random_labels(&s, 34, true, seed).unwrap(), 10) != c)
        );
        let e = random_labels(&s, 401, false, 0).unwrap_err().to_string();
        assert!(e.contains("only 400"), "{e}");
        let short = set(vec![0, 0, 0, 1], 2);
        let e = random_labels(&short, 4, true, 0).unwrap_err().to_string();
        assert!(e.contains("class `1`"), "{e}");
    }

    #[test]
    fn a_sample_is_sorted_distinct_and_seeded() {
        let a = sample(100, 10, 3);
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a[9] < 100);
        assert_eq!(a, sample(100, 10, 3));
        assert_ne!(a, sample(100, 10, 4));
        assert_eq!(sample(5, 0, 0), vec![0, 1, 2, 3, 4]);
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
        // Text transfer takes all of a short class instead, and says which classes were short.
        let (chosen, short) = few_of_labels(&[0, 0, 1, 0], 2, Some(2), 0);
        assert_eq!(short, vec![(1, 1)]);
        assert_eq!(chosen.len(), 3);
        assert!(chosen.contains(&2));
    }
}
