//! `pretext explore`, `neighbors` and `select` end to end on a small image folder whose file
//! names include markup, and `transfer --labels-file` scoring a selection.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_clean_failure, json, stderr};

/// A file name that would run script if a page put it into HTML unescaped.
const SCRIPT_NAME: &str = "<img src=x onerror=alert(1)>.png";

/// `pretext ARGS` with the index cache kept in `cache`.
fn pretext(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args(args)
        .args(["--quiet", "--threads", "2"])
        .env("PRETEXT_CACHE", cache)
        .output()
        .expect("the pretext binary runs")
}

fn ok(cache: &Path, args: &[&str]) -> Output {
    let o = pretext(cache, args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

/// `train/` and `test/` class folders of 16 x 16 PNGs of two kinds of pattern. In `train/`,
/// `a/twin-of-07.png` repeats the pixels of `a/07.png`, and one image has a script-like name.
fn folder(root: &Path) -> PathBuf {
    let data = root.join("data");
    for (split, count) in [("train", 24u32), ("test", 8)] {
        for (class, kind) in [("a", 0u32), ("b", 1)] {
            for i in 0..count {
                write_png(
                    &data.join(split).join(class).join(format!("{i:02}.png")),
                    kind,
                    i,
                );
            }
        }
    }
    write_png(&data.join("train/a/twin-of-07.png"), 0, 7);
    write_png(&data.join("train/b").join(SCRIPT_NAME), 1, 30);
    data
}

/// Class 0: horizontal stripes; class 1: vertical stripes; `seed` shifts and tints them.
fn write_png(path: &Path, kind: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(16, 16, |x, y| {
        let along = if kind == 0 { y } else { x };
        let on = (along + seed) % 4 < 2;
        let v = if on { 200 } else { 30 };
        image::Rgb([v, ((seed * 37) % 200) as u8, 255 - v])
    });
    img.save(path).unwrap();
}

fn pretrain(root: &Path, data: &Path) -> PathBuf {
    let out = root.join("run");
    let mut args = vec!["pretrain", "--data", data.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend("--task rotation --model convnet4 --width 4 --epochs 2 --batch-size 8".split(' '));
    ok(root, &args);
    out
}

/// A temporary folder holding the data and a run pretrained on it.
fn trained() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let data = folder(root.path());
    let run = pretrain(root.path(), &data);
    (root, run, data)
}

fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn npy_shape(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    npyz::NpyFile::new(&bytes[..]).unwrap().shape().to_vec()
}

#[test]
fn explore_writes_a_page_with_every_training_image_and_its_maps() {
    let root = tempfile::tempdir().unwrap();
    let data = folder(root.path());
    let run = pretrain(root.path(), &data);
    let out = root.path().join("page");
    let mut args = vec!["explore", "--run", run.to_str().unwrap()];
    args.extend([
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    args.extend(["--clusters", "4", "--neighbours", "5"]);
    ok(root.path(), &args);
    let n = 2 * 24 + 2;
    for name in ["index.html", "data.js", "atlas-0.jpg", "explore.toml"] {
        assert!(out.join(name).is_file(), "{name} written");
    }
    assert_eq!(npy_shape(&out.join("umap.npy")), [n, 2]);
    assert_eq!(npy_shape(&out.join("pca.npy")), [n, 2]);
    assert_eq!(npy_shape(&out.join("clusters.npy")), [n]);
    assert_eq!(npy_shape(&out.join("embedding/train_features.npy"))[0], n);
    // Names reach the page only as data, never as markup.
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    let data_js = std::fs::read_to_string(out.join("data.js")).unwrap();
    assert!(!page.contains("onerror=alert") && !data_js.contains("<img"));
    assert!(
        data_js.contains("onerror=alert(1)"),
        "the name is in the data"
    );
    // The page makes no request: nothing in it or its data points off the machine.
    for text in [&page, &data_js] {
        assert!(!text.contains("http://") && !text.contains("https://"));
    }
}

#[test]
fn neighbors_draws_a_row_per_query_and_select_finds_the_twin_and_covers_both_classes() {
    let (root, run, data) = trained();
    let base = [
        "--run",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    let grid = root.path().join("grid.png");
    let mut args = vec![
        "neighbors",
        "--queries",
        "3",
        "--k",
        "4",
        "--out",
        grid.to_str().unwrap(),
    ];
    args.extend(base);
    ok(root.path(), &args);
    let picture = image::open(&grid).unwrap();
    // Three rows of five cells (the query and four neighbours) each.
    assert_eq!(picture.height() % 3, 0);
    assert!(
        picture.width() > picture.height(),
        "{:?}",
        (picture.width(), picture.height())
    );

    let dedup = root.path().join("dedup.csv");
    let mut args = vec!["select", "--strategy", "dedup", "--threshold", "0.9999"];
    args.extend(["--out", dedup.to_str().unwrap()]);
    args.extend(base);
    ok(root.path(), &args);
    let (header, rows) = csv_rows(&dedup);
    assert_eq!(&header[..5], ["path", "split", "index", "label", "reason"]);
    let mut names: Vec<&str> = rows.iter().map(|r| file_name(&r[0])).collect();
    names.sort_unstable();
    assert_eq!(names, ["07.png", "twin-of-07.png"], "{rows:?}");

    let coreset = root.path().join("coreset.csv");
    let mut args = vec!["select", "--strategy", "coreset", "--n", "6"];
    args.extend(["--out", coreset.to_str().unwrap()]);
    args.extend(base);
    ok(root.path(), &args);
    let (_, rows) = csv_rows(&coreset);
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter()
            .all(|r| Path::new(&r[0]).is_file() && r[1] == "train")
    );
    let labels: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(labels.len(), 2, "both classes among the chosen: {rows:?}");
    transfer_the_selection(root.path(), &run, &data, &coreset);
}

fn file_name(path: &str) -> &str {
    Path::new(path).file_name().unwrap().to_str().unwrap()
}

/// `transfer --labels-file` labels exactly the selection.
fn transfer_the_selection(root: &Path, run: &Path, data: &Path, selection: &Path) {
    let out = root.join("transfer");
    let mut args = vec![
        "transfer",
        "--run",
        run.to_str().unwrap(),
        "--mode",
        "probe,knn",
    ];
    args.extend(["--data", data.to_str().unwrap(), "--seeds", "1"]);
    args.extend([
        "--labels-file",
        selection.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(root, &args);
    let results = json(&out.join("results.json"));
    let text = results.to_string();
    assert!(
        text.contains("coreset.csv"),
        "the subset is recorded: {text}"
    );
}

#[test]
fn bad_curation_input_is_refused_by_name() {
    let (root, run, data) = trained();
    let base = [
        "--run",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    let out = root.path().join("x.csv");
    let mut args = vec!["select", "--strategy", "coreset", "--n", "0"];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(base);
    assert_clean_failure(
        &pretext(root.path(), &args),
        "--n (count) must be at least 1",
    );
    let mut args = vec![
        "neighbors",
        "--queries",
        "0",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(base);
    assert_clean_failure(&pretext(root.path(), &args), "--queries");
    let missing = root.path().join("no-run");
    let args = [
        "explore",
        "--run",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    assert_clean_failure(&pretext(root.path(), &args), "no-run");
    assert!(!out.exists(), "nothing written on refusal");
}
