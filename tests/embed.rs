//! `pretext embed`: each split's features with `files.csv`, one row per feature row naming the
//! image behind it, in memory and streamed, with corrupt files skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{pretrain_tiny, stderr};

/// An RGB PNG of `side` x `side` whose content is a function of `seed` alone.
fn write_png(path: &Path, side: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([
            ((x * 17 + seed * 53) % 256) as u8,
            ((y * 29 + seed * 7) % 256) as u8,
            ((x * y + seed * 91) % 256) as u8,
        ])
    });
    img.save(path).unwrap();
}

fn write_corrupt(path: &Path) {
    std::fs::write(path, b"not a PNG at all").unwrap();
}

/// `pretext ARGS` with the index cache kept in `cache`.
fn run(cache: &Path, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args(args)
        .args(["--quiet", "--threads", "2"])
        .env("PRETEXT_CACHE", cache)
        .output()
        .expect("the pretext binary runs");
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

/// `cat/` and `dog/` folders of 16 x 16 PNGs, cat seeds 0-7 and dog seeds 4-11, so that four
/// cats have a twin among the dogs (the same pixels under another name), and one corrupt file.
/// The seed of each file, by name.
fn pets(root: &Path) -> Vec<(String, u32)> {
    let mut seeds = Vec::new();
    for (class, first) in [("cat", 0), ("dog", 4)] {
        for i in 0..8 {
            let name = format!("{class}{i:02}.png");
            write_png(&root.join(class).join(&name), 16, first + i);
            seeds.push((name, first + i));
        }
    }
    write_corrupt(&root.join("cat/cat03b.png"));
    seeds
}

/// A tiny rotation run on `data`, corrupt files skipped (recorded in its config).
fn pretrain(dir: &Path, data: &Path) -> PathBuf {
    let out = dir.join("run");
    let mut args = vec!["pretrain", "--data", data.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend("--task rotation --model convnet4 --width 4 --epochs 1 --batch-size 8".split(' '));
    args.push("--skip-corrupt");
    run(dir, &args);
    out
}

fn embed(dir: &Path, run_dir: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["embed", "--run", run_dir.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    run(dir, &args);
}

/// One row of `files.csv`.
#[derive(Debug, PartialEq)]
struct Row {
    split: String,
    index: usize,
    path: String,
    label: String,
}

fn rows(out: &Path) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(out.join("files.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["split", "index", "path", "label"]);
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            Row {
                split: r[0].into(),
                index: r[1].parse().unwrap(),
                path: r[2].into(),
                label: r[3].into(),
            }
        })
        .collect()
}

/// A split's features as rows, and its labels where written.
fn features(out: &Path, split: &str) -> (Vec<Vec<f32>>, Option<Vec<i64>>) {
    let bytes = std::fs::read(out.join(format!("{split}_features.npy"))).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let cols = npy.shape()[1] as usize;
    let values: Vec<f32> = npy.into_vec().unwrap();
    let labels = std::fs::read(out.join(format!("{split}_labels.npy")))
        .ok()
        .map(|b| npyz::NpyFile::new(&b[..]).unwrap().into_vec().unwrap());
    (values.chunks(cols).map(<[f32]>::to_vec).collect(), labels)
}

/// Rows are the training split's, then the test split's, each indexed from 0, as many as the
/// features; the features of each row, in that order.
fn check_rows_match_features(out: &Path, rows: &[Row]) -> Vec<Vec<f32>> {
    let n_train = rows.iter().take_while(|r| r.split == "train").count();
    assert!(
        rows[n_train..].iter().all(|r| r.split == "test"),
        "{rows:?}"
    );
    let mut all = Vec::new();
    for (split, of_split) in [("train", &rows[..n_train]), ("test", &rows[n_train..])] {
        let (f, labels) = features(out, split);
        assert_eq!(of_split.len(), f.len(), "{split}: one row per feature row");
        assert!(of_split.iter().enumerate().all(|(i, r)| r.index == i));
        if let Some(labels) = labels {
            assert_eq!(labels.len(), f.len());
        }
        all.extend(f);
    }
    all
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_folder_embeds_with_the_file_behind_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pets");
    let seeds = pets(&data);
    let run_dir = pretrain(dir.path(), &data);
    let out = dir.path().join("emb");
    embed(dir.path(), &run_dir, &out, &[]);

    let rows = rows(&out);
    // 16 readable images, the corrupt one skipped; 20 % of each class held out as the test split.
    assert_eq!(rows.len(), 16, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r.split == "test").count(), 4);
    let features = check_rows_match_features(&out, &rows);
    let root = std::fs::canonicalize(&data).unwrap();
    for row in &rows {
        let path = Path::new(&row.path);
        assert!(path.is_file() && path.starts_with(&root), "{row:?}");
        // The label is the class folder's name.
        let class = path.parent().unwrap().file_name().unwrap();
        assert_eq!(class.to_str().unwrap(), row.label);
    }
    check_labels(&out, &rows);
    check_twins(&rows, &features, &seeds);
}

/// Each split's labels file holds the number of the class each row names (cat 0, dog 1).
fn check_labels(out: &Path, rows: &[Row]) {
    for split in ["train", "test"] {
        let expected: Vec<i64> = rows
            .iter()
            .filter(|r| r.split == split)
            .map(|r| i64::from(r.label == "dog"))
            .collect();
        assert_eq!(features_labels(out, split), expected, "{split}");
    }
}

/// Twins (the same pixels under two names) have the same features and nothing else does, so
/// each row's features are those of the image it names. An image is named by its file name
/// (`.../cat03.png`) or its shard member's (`...tar#0007_cat03.png`).
fn check_twins(rows: &[Row], features: &[Vec<f32>], seeds: &[(String, u32)]) {
    let seed_of = |row: &Row| {
        let file = row.path.rsplit(['/', '#']).next().unwrap();
        let file = file.split_once('_').map_or(file, |(_, name)| name);
        let seed = seeds.iter().find(|(name, _)| name == file);
        seed.unwrap_or_else(|| panic!("{row:?} names no image")).1
    };
    let mut twin_diff: f32 = 0.0;
    let mut other_diff = f32::INFINITY;
    for (a, ra) in rows.iter().enumerate() {
        for (b, rb) in rows.iter().enumerate().skip(a + 1) {
            let d = max_diff(&features[a], &features[b]);
            if seed_of(ra) == seed_of(rb) {
                twin_diff = twin_diff.max(d);
            } else {
                other_diff = other_diff.min(d);
            }
        }
    }
    assert!(
        twin_diff <= 1e-5 && other_diff > 1e-4,
        "twins differ by up to {twin_diff}, other images by at least {other_diff}"
    );
}

fn features_labels(out: &Path, split: &str) -> Vec<i64> {
    features(out, split).1.expect("labelled")
}

/// `train/` and `test/` class folders of 128-pixel PNGs, a corrupt file among the first
/// training images: at 128 pixels an evaluation batch is 16 images and the embedding decodes
/// 64 at a time, so the training split takes two chunks and the skipped file is made up.
fn two_chunk_folder(root: &Path) {
    for (c, class) in ["ant", "bee"].iter().enumerate() {
        let seed = |i: u32| c as u32 * 1000 + i;
        for i in 0..36 {
            write_png(
                &root.join(format!("train/{class}/{i:03}.png")),
                128,
                seed(i),
            );
        }
        for i in 0..4 {
            write_png(
                &root.join(format!("test/{class}/{i:03}.png")),
                128,
                seed(500 + i),
            );
        }
    }
    write_corrupt(&root.join("train/ant/010b.png"));
}

#[test]
fn a_streamed_folder_gives_the_rows_and_features_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let pets_dir = dir.path().join("pets");
    pets(&pets_dir);
    let run_dir = pretrain(dir.path(), &pets_dir);
    let data = dir.path().join("insects");
    two_chunk_folder(&data);
    let data = data.to_str().unwrap();
    let out = |mode: &str| dir.path().join(format!("emb-{mode}"));
    for mode in ["always", "never"] {
        embed(
            dir.path(),
            &run_dir,
            &out(mode),
            &["--data", data, "--stream", mode],
        );
    }
    let streamed = rows(&out("always"));
    assert_eq!(streamed.len(), 72 + 8, "the corrupt file is skipped");
    assert!(!streamed.iter().any(|r| r.path.ends_with("010b.png")));
    assert_eq!(streamed, rows(&out("never")));
    check_rows_match_features(&out("always"), &streamed);
    for file in [
        "train_features.npy",
        "train_labels.npy",
        "test_features.npy",
        "test_labels.npy",
        "files.csv",
    ] {
        let read = |mode: &str| std::fs::read(out(mode).join(file)).unwrap();
        assert!(read("always") == read("never"), "{file} differs");
    }
}

#[test]
fn synthetic_rows_are_named_by_record() {
    let dir = tempfile::tempdir().unwrap();
    let (o, run_dir) = pretrain_tiny(dir.path(), "tiny", None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("emb");
    embed(dir.path(), &run_dir, &out, &[]);
    let rows = rows(&out);
    check_rows_match_features(&out, &rows);
    // Each class name goes with one label number, and each number with one name.
    let mut names = std::collections::BTreeMap::new();
    for split in ["train", "test"] {
        let of_split: Vec<&Row> = rows.iter().filter(|r| r.split == split).collect();
        assert_eq!(of_split.len(), if split == "train" { 400 } else { 200 });
        let labels = features_labels(&out, split);
        for (i, r) in of_split.iter().enumerate() {
            assert_eq!(r.path, format!("synthetic#{i}"));
            assert_eq!(*names.entry(labels[i]).or_insert(&r.label), &r.label);
        }
    }
    let distinct: std::collections::BTreeSet<_> = names.values().collect();
    assert_eq!((names.len(), distinct.len()), (10, 10), "{names:?}");
}

#[test]
fn tar_shards_name_each_row_by_shard_and_member_streamed_or_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pets");
    let seeds = pets(&data);
    let run_dir = pretrain(dir.path(), &data);
    let shards = dir.path().join("shards");
    let (data, shards_arg) = (data.to_str().unwrap(), shards.to_str().unwrap());
    // The corrupt file is copied into a shard as it is, and skipped when decoded.
    run(
        dir.path(),
        &["shard", data, "--out", shards_arg, "--shard-size", "5"],
    );
    let out = |mode: &str| dir.path().join(format!("emb-{mode}"));
    for mode in ["auto", "never"] {
        embed(
            dir.path(),
            &run_dir,
            &out(mode),
            &["--data", shards_arg, "--stream", mode],
        );
    }
    let rows = rows(&out("auto"));
    assert_eq!(rows.len(), 16, "{rows:?}");
    assert_eq!(rows, self::rows(&out("never")));
    let root = std::fs::canonicalize(&shards).unwrap();
    for row in &rows {
        let (shard, member) = row.path.split_once('#').unwrap();
        assert!(
            Path::new(shard).is_file() && Path::new(shard).starts_with(&root),
            "{row:?}"
        );
        assert!(member.contains(&row.label), "{row:?}");
    }
    let features = check_rows_match_features(&out("auto"), &rows);
    check_labels(&out("auto"), &rows);
    check_twins(&rows, &features, &seeds);
    for split in ["train", "test"] {
        let file = format!("{split}_features.npy");
        let read = |mode: &str| std::fs::read(out(mode).join(&file)).unwrap();
        assert!(read("auto") == read("never"), "{file} differs");
    }
}
