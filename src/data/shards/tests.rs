use std::collections::HashSet;

use super::write::{ShardOptions, shard};
use super::*;
use crate::config::{DataConfig, StreamMode};

fn png(path: &Path, w: u32, h: u32, seed: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 13) as u8 ^ seed, (y * 7) as u8, seed.wrapping_mul(31)])
    });
    img.save(path).unwrap();
}

fn jpeg(path: &Path, w: u32, h: u32, seed: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 5) as u8 ^ seed, 90])
    });
    img.save_with_format(path, image::ImageFormat::Jpeg)
        .unwrap();
}

/// Two classes of mixed sizes and formats, 7 and 6 images.
fn labelled_folder(root: &Path) {
    for i in 0..7u8 {
        png(&root.join(format!("cat/c{i}.png")), 20 + i as u32, 16, i);
    }
    for i in 0..6u8 {
        jpeg(
            &root.join(format!("dog/sub/d.{i}.jpeg")),
            24,
            18 + i as u32,
            i,
        );
    }
}

fn config(path: &Path) -> DataConfig {
    DataConfig {
        path: path.to_string_lossy().into_owned(),
        image_size: Some(12),
        stream: StreamMode::Always,
        ..Default::default()
    }
}

fn opts(size: usize) -> ShardOptions {
    ShardOptions {
        shard_size: size,
        shuffle: None,
    }
}

#[test]
fn brace_patterns_expand() {
    assert_eq!(
        expand_braces("s-{08..11}.tar").unwrap(),
        ["s-08.tar", "s-09.tar", "s-10.tar", "s-11.tar"]
    );
    assert_eq!(
        expand_braces("{a,b}/x{1..2}.tar").unwrap(),
        ["a/x1.tar", "a/x2.tar", "b/x1.tar", "b/x2.tar"]
    );
    assert_eq!(expand_braces("plain.tar").unwrap(), ["plain.tar"]);
    assert!(
        expand_braces("s-{3..1}.tar")
            .unwrap_err()
            .contains("counts down")
    );
    assert!(
        expand_braces("s-{1..2.tar")
            .unwrap_err()
            .contains("unclosed")
    );
    assert!(
        expand_braces("s-{0..99999999}.tar")
            .unwrap_err()
            .contains("over")
    );
}

#[test]
fn keys_end_at_the_first_dot_of_the_file_name() {
    assert_eq!(split_key("dir.v1/abc.seg.png"), ("dir.v1/abc", "seg.png"));
    assert_eq!(split_key("000001_cat.jpg"), ("000001_cat", "jpg"));
    assert_eq!(split_key("noext"), ("noext", ""));
    assert_eq!(write::safe_stem("a/b/../x y.é.jpg"), "x_y");
}

fn runs(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut start = 0;
    sizes
        .iter()
        .map(|&n| {
            start += n;
            start - n..start
        })
        .collect()
}

#[test]
fn buffered_order_is_a_seeded_shard_local_permutation() {
    let runs = runs(&[50, 50, 50, 50, 37]);
    let n = 237;
    let a = buffered_order(&runs, 10, 1);
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "a permutation");
    assert_eq!(a, buffered_order(&runs, 10, 1), "a function of the seed");
    assert_ne!(a, buffered_order(&runs, 10, 2));
    let shard = |i: usize| runs.iter().position(|r| r.contains(&i)).unwrap();
    let same = a.windows(2).filter(|w| shard(w[0]) == shard(w[1])).count();
    assert!(
        same as f64 > 0.7 * (n - 1) as f64,
        "{same} of {} pairs in one shard",
        n - 1
    );
    // A buffer as large as the set is a uniform shuffle, still a permutation.
    let mut all = buffered_order(&runs, 1000, 3);
    all.sort_unstable();
    assert_eq!(all.len(), n);
    all.dedup();
    assert_eq!(all.len(), n);
}

#[test]
fn folder_round_trips_through_shards() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("photos");
    labelled_folder(&folder);
    let out = dir.path().join("shards");
    let report = shard(&folder, &out, &opts(5)).unwrap();
    assert_eq!(
        (report.shards(), report.samples(), report.classes),
        (3, 13, 2)
    );
    let names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        names,
        [
            "classes.txt",
            "shard-000000.tar",
            "shard-000001.tar",
            "shard-000002.tar"
        ]
    );
    assert_eq!(
        fs::read_to_string(out.join("classes.txt")).unwrap(),
        "cat\ndog\n"
    );
    assert_eq!(
        crate::data::detect_format(&out).unwrap(),
        crate::data::Format::Shards
    );
    assert_eq!(
        crate::data::detect_format(&folder).unwrap(),
        crate::data::Format::Folder
    );

    // The index: every sample in the folder's order, labelled, counted per shard.
    let cache = tempfile::tempdir().unwrap();
    let (index, origin) = open(&out, cache.path()).unwrap();
    assert_eq!(origin, IndexOrigin::Walked);
    assert_eq!(index.class_names, ["cat", "dog"]);
    let counts: Vec<usize> = index.train.iter().map(|s| s.samples.len()).collect();
    assert_eq!(counts, [5, 5, 3]);
    let (folder_index, _) = crate::data::index::open(&folder, cache.path()).unwrap();
    let splits = splits(&index, false, None).unwrap();
    assert_eq!(splits.train.len(), folder_index.train.len());
    for (m, e) in splits.train.iter().zip(&folder_index.train) {
        assert_eq!(m.label, e.label);
        let original = fs::read(folder_index.full_path(e)).unwrap();
        assert_eq!(
            splits.reader.read(m).unwrap(),
            original,
            "{} is stored as it was",
            e.path
        );
    }
    assert_eq!(&*splits.train[7].name, "000000007_d.jpg");

    // Decoded and framed: the same pixels and labels as the folder, train and held-out test.
    let from_folder = crate::collection::in_memory(&config(&folder))
        .unwrap()
        .unwrap();
    let from_shards = crate::collection::in_memory(&config(&out))
        .unwrap()
        .unwrap();
    assert_eq!(from_shards.format, crate::data::Format::Shards);
    assert_eq!(from_shards.train.pixels, from_folder.train.pixels);
    assert_eq!(from_shards.train.labels, from_folder.train.labels);
    let (ft, st) = (from_folder.test.unwrap(), from_shards.test.unwrap());
    assert!(st.len > 0);
    assert_eq!((st.pixels, st.labels), (ft.pixels, ft.labels));

    // Cached, and read again when a shard changes.
    assert_eq!(open(&out, cache.path()).unwrap().1, IndexOrigin::Cached);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let last = out.join("shard-000002.tar");
    let bytes = fs::read(&last).unwrap();
    fs::write(&last, &bytes).unwrap();
    assert_eq!(open(&out, cache.path()).unwrap().1, IndexOrigin::Walked);

    // Writing into the input, or into a folder that holds shards already, is refused.
    let err = shard(&folder, &folder.join("cat/shards"), &opts(5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("inside"), "{err}");
    assert!(!folder.join("cat/shards").exists());
    let err = shard(&folder, &out, &opts(5)).unwrap_err().to_string();
    assert!(err.contains("already holds shards"), "{err}");
}

#[test]
fn train_test_layout_and_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("split");
    png(&folder.join("train/a/1.png"), 10, 10, 1);
    png(&folder.join("train/b/2.png"), 10, 10, 2);
    png(&folder.join("train/b/3.png"), 10, 10, 3);
    png(&folder.join("test/b/4.png"), 10, 10, 4);
    let out = dir.path().join("out");
    let report = shard(&folder, &out, &opts(2)).unwrap();
    assert_eq!(report.splits.len(), 2);
    assert_eq!((report.splits[0].shards, report.splits[1].shards), (2, 1));
    let cache = tempfile::tempdir().unwrap();
    let (index, _) = open(&out, cache.path()).unwrap();
    assert_eq!(index.class_names, ["a", "b"]);
    let s = splits(&index, false, Some(0.5)).unwrap();
    assert_eq!((s.train.len(), s.test.as_ref().unwrap().len()), (3, 1));
    assert_eq!(s.test.unwrap()[0].label, Some(1));

    // A brace pattern naming the training shards, and one shard file alone.
    let pattern = out.join("train/shard-{000000..000001}.tar");
    assert_eq!(
        crate::data::detect_format(&pattern).unwrap(),
        crate::data::Format::Shards
    );
    let (index, _) = open(&pattern, cache.path()).unwrap();
    assert_eq!(index.samples(&index.train), 3);
    assert_eq!(
        index.class_names,
        ["a", "b"],
        "classes.txt beside the shards"
    );
    let one = out.join("train/shard-000001.tar");
    assert_eq!(
        crate::data::detect_format(&one).unwrap(),
        crate::data::Format::Shards
    );
    assert_eq!(
        open(&one, cache.path())
            .unwrap()
            .0
            .samples(&index.train[1..]),
        1
    );
    let missing = out.join("train/shard-{000000..000005}.tar");
    let err = open(&missing, cache.path()).unwrap_err().to_string();
    assert!(err.contains("shard-000002.tar"), "{err}");
}

#[test]
fn epoch_order_is_exact_and_shard_local() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("flat");
    for i in 0..60u8 {
        png(&folder.join(format!("{i:02}.png")), 8, 8, i);
    }
    let out = dir.path().join("out");
    shard(&folder, &out, &opts(15)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (index, _) = open(&out, cache.path()).unwrap();
    assert!(!index.labelled());
    let s = splits(&index, false, Some(0.2)).unwrap();
    assert!(s.test.is_none(), "unlabelled shards have no test split");
    assert_eq!(s.probe_channels(decode::DEFAULT_MAX_PIXELS), 3);
    let framer = Framer {
        image_size: 8,
        eval_crop: 1.0,
        crop_min_scale: 1.0,
        max_pixels: decode::DEFAULT_MAX_PIXELS,
    };
    let set = ShardSet::new(&s, s.train.clone(), 3, framer, false, 4);
    let a = set.epoch_order(7, 0).unwrap();
    assert_eq!(a, set.epoch_order(7, 0).unwrap());
    assert_ne!(a, set.epoch_order(7, 1).unwrap());
    assert_ne!(a, set.epoch_order(8, 0).unwrap());
    assert_eq!(a.iter().copied().collect::<HashSet<_>>().len(), 60);
    let same = a
        .windows(2)
        .filter(|w| set.shard_of(w[0]) == set.shard_of(w[1]))
        .count();
    // A uniform shuffle would put about a quarter of the pairs in one shard.
    assert!(
        same >= 35,
        "{same} of 59 consecutive pairs in one shard: {a:?}"
    );
    // Image i is the folder's image i.
    let img = set.image(5, Framing::Eval).unwrap().unwrap();
    assert_eq!(img.len(), 3 * 8 * 8);
    assert_eq!(set.path(5).file_name().unwrap(), "000000005_05.png");
}

/// A tar of `members` written with raw headers (the `tar` crate's builder refuses bad paths).
fn raw_tar(path: &Path, members: &[(&str, tar::EntryType, &[u8])]) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in members {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        if kind.is_symlink() || kind.is_hard_link() {
            h.as_old_mut().linkname[..11].copy_from_slice(b"/etc/passwd");
            h.set_size(0);
        } else {
            h.set_size(data.len() as u64);
        }
        h.set_cksum();
        b.append(&h, &data[..h.entry_size().unwrap() as usize])
            .unwrap();
    }
    fs::write(path, b.into_inner().unwrap()).unwrap();
}

fn small_png() -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn hostile_members_are_refused_by_name() {
    use tar::EntryType as T;
    let img = small_png();
    let cases: [(&str, T, &str); 6] = [
        ("../evil.jpg", T::Regular, "`..`"),
        ("ok/../../evil.jpg", T::Regular, "`..`"),
        ("/tmp/evil.jpg", T::Regular, "absolute"),
        ("link.jpg", T::Symlink, "symbolic link"),
        ("hard.jpg", T::Link, "hard link"),
        ("dev.jpg", T::Char, "character device"),
    ];
    for (name, kind, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let shards = dir.path().join("in");
        fs::create_dir(&shards).unwrap();
        raw_tar(
            &shards.join("bad.tar"),
            &[("000.png", T::Regular, &img), (name, kind, &img)],
        );
        let cache = tempfile::tempdir().unwrap();
        let err = open(&shards, cache.path()).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains("bad.tar") && err.contains(why),
            "{err}"
        );
        // `pretext shard` refuses it before writing anything.
        let out = dir.path().join("deep/out");
        let err = shard(&shards, &out, &opts(10)).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
        assert!(
            !dir.path().join("deep/evil.jpg").exists() && !dir.path().join("evil.jpg").exists()
        );
        assert!(!out.exists() || fs::read_dir(&out).unwrap().next().is_none());
    }
}

#[test]
fn a_sample_without_an_image_is_named_or_skipped() {
    use tar::EntryType as T;
    let img = small_png();
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("s.tar");
    raw_tar(
        &tar_path,
        &[
            ("a.png", T::Regular, &img),
            ("a.cls", T::Regular, b"1"),
            ("b.cls", T::Regular, b"0"),
            ("c.png", T::Regular, &img),
            ("c.cls", T::Regular, b"zero"),
            ("d.png", T::Regular, &img),
            ("d.cls", T::Regular, b" 0\n"),
            ("d.json", T::Regular, b"{}"),
        ],
    );
    let cache = tempfile::tempdir().unwrap();
    let (index, _) = open(&tar_path, cache.path()).unwrap();
    assert_eq!(
        index.class_names,
        ["0", "1"],
        "no classes.txt: the label numbers"
    );
    let err = splits(&index, false, None).err().unwrap().to_string();
    assert!(err.contains("sample `b`") && err.contains("s.tar"), "{err}");
    let s = splits(&index, true, None).unwrap();
    assert_eq!(
        s.train.iter().map(|m| m.label).collect::<Vec<_>>(),
        [Some(1), Some(0)]
    );
    assert_eq!(s.problems.len(), 2);
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains("c.cls") && p.contains("zero")),
        "{:?}",
        s.problems
    );
}
