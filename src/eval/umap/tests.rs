use super::*;

/// `per` points around each of `blobs` random centres in `dim` dimensions; returns the values
/// and each point's blob.
fn blobs(blobs: usize, per: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..blobs * dim).map(|_| 4.0 * gaussian(&mut rng)).collect();
    let mut values = Vec::with_capacity(blobs * per * dim);
    let mut truth = Vec::with_capacity(blobs * per);
    for b in 0..blobs {
        for _ in 0..per {
            values.extend(
                centres[b * dim..(b + 1) * dim]
                    .iter()
                    .map(|c| c + gaussian(&mut rng)),
            );
            truth.push(b);
        }
    }
    (values, truth)
}

#[test]
fn trustworthiness_of_a_hand_checked_case() {
    // Points 0, 1, 3, 7 on a line, mapped to 0, 7, 3, 1. With k = 1 each point's map neighbour
    // has original rank 3, 2, 3, 3: penalties 2 + 1 + 2 + 2 = 7, and
    // T = 1 − 7 · 2 / (4 · 1 · (8 − 3 − 1)) = 0.125.
    let high = [0.0, 1.0, 3.0, 7.0];
    let low = [0.0, 7.0, 3.0, 1.0];
    assert!((trustworthiness(&high, 1, &low, 1, 4, 1) - 0.125).abs() < 1e-12);
}

#[test]
fn trustworthiness_is_one_for_an_isometry() {
    let (values, _) = blobs(3, 40, 2, 1);
    // A rotation by 30° and a shift.
    let (c, s) = (3f32.sqrt() / 2.0, 0.5f32);
    let moved: Vec<f32> = values
        .chunks(2)
        .flat_map(|p| [c * p[0] - s * p[1] + 3.0, s * p[0] + c * p[1]])
        .collect();
    assert!((trustworthiness(&values, 2, &moved, 2, 120, 5) - 1.0).abs() < 1e-12);
    // Shuffling the map's points breaks it.
    let mut order: Vec<usize> = (0..120).collect();
    rand::seq::SliceRandom::shuffle(&mut order[..], &mut ChaCha8Rng::seed_from_u64(4));
    let shuffled: Vec<f32> = order
        .iter()
        .flat_map(|&i| [moved[2 * i], moved[2 * i + 1]])
        .collect();
    assert!(trustworthiness(&values, 2, &shuffled, 2, 120, 5) < 0.8);
}

#[test]
fn ab_fit_gives_umap_learns_values() {
    // umap-learn's find_ab_params(1.0, 0.1) gives a = 1.5769, b = 0.8951.
    let (a, b) = fit_ab(1.0, 0.1);
    assert!((a - 1.577).abs() < 5e-3, "a = {a}");
    assert!((b - 0.895).abs() < 2e-3, "b = {b}");
    // A larger min_dist flattens the curve's top: a falls.
    let (a2, _) = fit_ab(1.0, 0.5);
    assert!(a2 < a, "{a2} vs {a}");
}

/// The share of points whose `k` nearest map neighbours are mostly from their own blob.
fn own_blob_share(map: &[f32], truth: &[usize], k: usize) -> f64 {
    let n = truth.len();
    let good = (0..n)
        .filter(|&i| {
            let d = sq_dists(map, 2, i);
            let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            order.sort_by(|&x, &y| d[x].total_cmp(&d[y]));
            order
                .iter()
                .take(k)
                .filter(|&&j| truth[j] == truth[i])
                .count()
                * 2
                > k
        })
        .count();
    good as f64 / n as f64
}

#[test]
fn blobs_keep_their_neighbourhoods_and_a_seed_fixes_the_map() {
    let (n, dim) = (1200, 32);
    let (values, truth) = blobs(6, n / 6, dim, 2);
    let cfg = UmapConfig {
        epochs: 200,
        seed: 9,
        ..Default::default()
    };
    let map = umap(&values, n, dim, &cfg).unwrap();
    assert_eq!(map.len(), 2 * n);
    assert!(map.iter().all(|v| v.is_finite()));
    let t = trustworthiness(&values, dim, &map, 2, n, 15);
    assert!(t > 0.9, "trustworthiness {t}");
    let share = own_blob_share(&map, &truth, 10);
    assert!(share > 0.95, "{share}");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    assert_eq!(pool.install(|| umap(&values, n, dim, &cfg).unwrap()), map);
    let other = umap(&values, n, dim, &UmapConfig { seed: 10, ..cfg }).unwrap();
    assert_ne!(other, map);
}

#[test]
fn a_given_graph_is_used_as_is() {
    let (n, dim) = (300, 8);
    let (values, _) = blobs(3, n / 3, dim, 3);
    let cfg = UmapConfig {
        neighbours: 10,
        epochs: 50,
        ..Default::default()
    };
    let wide = cosine_knn(&values, n, dim, 20);
    assert_eq!(
        umap_with(&wide, &values, dim, &cfg).unwrap(),
        umap(&values, n, dim, &cfg).unwrap()
    );
    let narrow = cosine_knn(&values, n, dim, 5);
    let err = umap_with(&narrow, &values, dim, &cfg).unwrap_err();
    assert!(err.contains("umap.neighbours"), "{err}");
}

#[test]
fn bad_settings_and_values_are_refused_by_name() {
    let ok = UmapConfig::default();
    let cases = [
        (
            UmapConfig {
                neighbours: 1,
                ..ok.clone()
            },
            "umap.neighbours",
        ),
        (
            UmapConfig {
                neighbours: 101,
                ..ok.clone()
            },
            "umap.neighbours",
        ),
        (
            UmapConfig {
                min_dist: -0.1,
                ..ok.clone()
            },
            "umap.min_dist",
        ),
        (
            UmapConfig {
                min_dist: 2.0,
                ..ok.clone()
            },
            "umap.min_dist",
        ),
        (
            UmapConfig {
                spread: 0.0,
                ..ok.clone()
            },
            "umap.spread",
        ),
        (
            UmapConfig {
                spread: f32::NAN,
                ..ok.clone()
            },
            "umap.spread",
        ),
        (
            UmapConfig {
                learning_rate: 0.0,
                ..ok.clone()
            },
            "umap.learning_rate",
        ),
    ];
    for (cfg, key) in cases {
        let err = cfg.validate(100).unwrap_err();
        assert!(err.contains(key), "{err}");
    }
    assert!(ok.validate(100).is_ok());
    let err = umap(&[1.0, f32::NAN, 0.0, 1.0], 2, 2, &ok).unwrap_err();
    assert!(err.contains("row 0 column 1"), "{err}");
    assert!(umap(&[1.0, 2.0, 3.0], 2, 2, &ok).is_err());
}
