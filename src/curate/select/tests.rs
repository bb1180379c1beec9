//! Planted data: clusters, duplicates and outliers whose answers are known.

use super::*;
use rand::seq::SliceRandom;

const DIM: usize = 16;

/// Points around orthogonal axes (cluster c around axis c), `sizes[c]` of each, shuffled so
/// that a cluster is not a block of rows; returns the rows and each row's cluster.
fn planted_clusters(sizes: &[usize], noise: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut of: Vec<usize> = sizes
        .iter()
        .enumerate()
        .flat_map(|(c, &s)| std::iter::repeat_n(c, s))
        .collect();
    of.shuffle(&mut rng);
    let mut x = Vec::with_capacity(of.len() * DIM);
    for &c in &of {
        for d in 0..DIM {
            x.push(if d == c { 1.0 } else { 0.0 } + rng.random_range(-noise..noise));
        }
    }
    (x, of)
}

/// Points in random directions: no two alike.
fn scattered(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * DIM)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect()
}

/// Exact cosine neighbours (self excluded, most similar first).
fn neighbours(x: &[f32], k: usize) -> Neighbours {
    crate::eval::neighbours::cosine_knn(x, x.len() / DIM, DIM, k)
}

/// `a` with `noise` added to every value.
fn nudged(a: &[f32], noise: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    a.iter()
        .map(|v| v + rng.random_range(-noise..noise))
        .collect()
}

fn set_row(x: &mut [f32], i: usize, values: &[f32]) {
    x[i * DIM..(i + 1) * DIM].copy_from_slice(values);
}

const UNEQUAL: [usize; 5] = [600, 100, 20, 5, 2];

#[test]
fn the_coreset_covers_every_cluster_where_random_choice_does_not() {
    let (x, of) = planted_clusters(&UNEQUAL, 0.05, 1);
    let covers = |chosen: &[usize]| {
        let mut seen: Vec<usize> = chosen.iter().map(|&i| of[i]).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() == UNEQUAL.len()
    };
    for seed in 0..5 {
        let chosen = coreset(&x, DIM, UNEQUAL.len(), seed).unwrap();
        let rows: Vec<usize> = chosen.iter().map(|s| s.index).collect();
        assert!(covers(&rows), "seed {seed}: {rows:?}");
        // After the start, every pick is about a whole cluster away (orthogonal axes: ~1).
        assert!(chosen[1..].iter().all(|s| s.score > 0.8), "{chosen:?}");
        assert!(chosen[1].reason.contains("from the nearest chosen image"));
        assert_eq!(chosen, coreset(&x, DIM, UNEQUAL.len(), seed).unwrap());
    }
    let n = of.len();
    let random_covers = (0..20u64)
        .filter(|&seed| {
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            covers(&all[..UNEQUAL.len()])
        })
        .count();
    assert!(
        random_covers <= 2,
        "random choice covered all {random_covers} times of 20"
    );
}

#[test]
fn a_coreset_larger_than_the_distinct_images_never_repeats_one() {
    let one = [1.0f32; DIM];
    let x: Vec<f32> = one.iter().cycle().take(4 * DIM).copied().collect();
    let chosen = coreset(&x, DIM, 4, 0).unwrap();
    let mut rows: Vec<usize> = chosen.iter().map(|s| s.index).collect();
    rows.sort_unstable();
    assert_eq!(rows, [0, 1, 2, 3]);
}

#[test]
fn diverse_picks_one_image_per_cluster() {
    let sizes = [120, 60, 30, 15];
    let (x, of) = planted_clusters(&sizes, 0.05, 2);
    let chosen = diverse(&x, DIM, sizes.len(), 0).unwrap();
    let mut clusters: Vec<usize> = chosen.iter().map(|s| of[s.index]).collect();
    clusters.sort_unstable();
    assert_eq!(clusters, [0, 1, 2, 3]);
    // The largest cluster comes first, and the reason says how large it is.
    assert_eq!(of[chosen[0].index], 0);
    assert!(
        chosen[0].reason.contains("(120 images)"),
        "{}",
        chosen[0].reason
    );
    assert!(chosen.iter().all(|s| s.score > 0.9));
}

#[test]
fn duplicates_finds_a_planted_pair_and_triple_and_nothing_else() {
    let mut x = scattered(200, 3);
    let copy = |x: &[f32], i: usize, seed| nudged(&x[i * DIM..(i + 1) * DIM], 0.01, seed);
    let pair = copy(&x, 3, 10);
    set_row(&mut x, 10, &pair);
    for (row, seed) in [(21, 11), (40, 12)] {
        let near = copy(&x, 20, seed);
        set_row(&mut x, row, &near);
    }
    let rows = duplicates(&neighbours(&x, 5), 0.99).unwrap();
    let found: Vec<usize> = rows.iter().map(|s| s.index).collect();
    assert_eq!(found, [3, 10, 20, 21, 40]);
    assert!(rows[0].reason.starts_with("keep") && rows[0].reason.contains("(2 images)"));
    assert!(
        rows[1].reason.contains("near-duplicate of 3"),
        "{}",
        rows[1].reason
    );
    assert!(rows[2].reason.starts_with("keep") && rows[2].reason.contains("(3 images)"));
    assert!(
        rows[3..]
            .iter()
            .all(|s| s.reason.contains("of 20") && s.score >= 0.99)
    );
    assert!(rows[1].reason.contains("group 0") && rows[4].reason.contains("group 1"));
}

#[test]
fn outliers_puts_a_planted_far_point_first() {
    let (mut x, _) = planted_clusters(&[50, 50, 50], 0.05, 4);
    let mut far = vec![0.0f32; DIM];
    far[DIM - 1] = 1.0;
    set_row(&mut x, 77, &far);
    let rows = outliers(&neighbours(&x, 10), 3).unwrap();
    assert_eq!(rows[0].index, 77);
    assert!(rows[0].score < 0.2 && rows[1].score > 0.8, "{rows:?}");
    assert!(
        rows[0].reason.contains("to its 10 nearest"),
        "{}",
        rows[0].reason
    );
}

#[test]
fn counts_and_thresholds_out_of_range_are_errors() {
    let x = scattered(10, 5);
    assert!(coreset(&x, DIM, 0, 0).unwrap_err().contains("at least 1"));
    assert!(
        coreset(&x, DIM, 11, 0)
            .unwrap_err()
            .contains("the 10 images")
    );
    assert!(diverse(&x, DIM, 11, 0).is_err());
    let nb = neighbours(&x, 3);
    assert!(outliers(&nb, 0).is_err());
    for bad in [0.0, -0.5, 1.5, f32::NAN] {
        assert!(duplicates(&nb, bad).unwrap_err().contains("(0, 1]"));
    }
    let mut broken = x.clone();
    broken[17] = f32::NAN;
    assert!(coreset(&broken, DIM, 2, 0).unwrap_err().contains("row 1"));
}

fn selected(index: usize, reason: &str) -> Selected {
    Selected {
        index,
        score: 0.5,
        reason: reason.into(),
    }
}

#[test]
fn the_csv_round_trips_through_read_listed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sel.csv");
    let origins: Vec<String> = ["a.png", "b, \"odd\".png", "c.png"]
        .map(String::from)
        .to_vec();
    let names = ["cat".to_string(), "dog".to_string()];
    let rows = [selected(2, "far, \"very\" far"), selected(1, "x")];
    write_csv(
        &file,
        &rows,
        Split::Train,
        &origins,
        Some((&[0u32, 1, 0][..], &names[..])),
    )
    .unwrap();
    let listed = read_listed(&file).unwrap();
    assert_eq!(
        listed,
        [
            ListedImage {
                line: 2,
                split: Split::Train,
                index: 2,
                path: "c.png".into()
            },
            ListedImage {
                line: 3,
                split: Split::Train,
                index: 1,
                path: origins[1].clone()
            },
        ]
    );
    let mut r = csv::Reader::from_path(&file).unwrap();
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
    let first = r.records().next().unwrap().unwrap();
    assert_eq!((&first[3], &first[4]), ("cat", "far, \"very\" far"));
    // Without origins the path is empty, and still reads back.
    write_csv(&file, &rows, Split::Test, &[], None).unwrap();
    let listed = read_listed(&file).unwrap();
    assert!(
        listed
            .iter()
            .all(|l| l.path.is_empty() && l.split == Split::Test)
    );
}

#[test]
fn a_bad_list_is_an_error_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sel.csv");
    let err = |text: &str| {
        std::fs::write(&file, text).unwrap();
        read_listed(&file).unwrap_err().to_string()
    };
    let missing = read_listed(&dir.path().join("none.csv"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("none.csv"), "{missing}");
    let e = err("path,split,row\nx,train,0\n");
    assert!(
        e.contains("sel.csv:1") && e.contains("no `index` column"),
        "{e}"
    );
    let e = err("path,split,index\nx,train,0\nx,valid,1\n");
    assert!(e.contains("sel.csv:3") && e.contains("`valid`"), "{e}");
    let e = err("path,split,index\nx,train,-1\n");
    assert!(e.contains("sel.csv:2") && e.contains("`-1`"), "{e}");
    // A list made by hand needs only the required columns, in any order.
    std::fs::write(&file, "index,split,path\n4,train,\n").unwrap();
    assert_eq!(read_listed(&file).unwrap()[0].index, 4);
}
