//! WebDataset-style tar shards through the binary: `pretext shard`, `pretext info` on shards,
//! pretraining on them, and hostile members refused.

mod common;

use std::path::Path;

use common::{assert_clean_failure, json, pretext, stderr, stdout};

fn write_png(path: &Path, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(20, 16, |x, y| {
        image::Rgb([x as u8 * 12, y as u8 * 15, seed * 20])
    });
    img.save(path).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn shard_a_folder_then_describe_and_pretrain_on_the_shards() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("photos");
    for i in 0..10u8 {
        write_png(&folder.join(format!("cat/{i}.png")), i);
        write_png(&folder.join(format!("dog/{i}.png")), i + 10);
    }
    let shards = dir.path().join("shards");
    let o = pretext(&[
        "shard",
        s(&folder),
        "--out",
        s(&shards),
        "--shard-size",
        "6",
        "--shuffle",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("wrote 4 shards (20 samples, 2 classes)"),
        "{}",
        stdout(&o)
    );
    assert!(shards.join("shard-000003.tar").is_file() && shards.join("classes.txt").is_file());

    let o = pretext(&["info", s(&shards)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("format: shards (4 shards"), "{out}");
    assert!(
        out.contains("train: 20 images in 4 shards, 2 classes"),
        "{out}"
    );
    assert!(
        out.contains("  cat: 10\n") && out.contains("  dog: 10\n"),
        "{out}"
    );
    assert!(out.contains("20x16: 20"), "sizes from the headers: {out}");

    let pattern = shards.join("shard-{000000..000001}.tar");
    let o = pretext(&["info", s(&pattern)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("train: 12 images in 2 shards"),
        "{}",
        stdout(&o)
    );
    let o = pretext(&["info", s(&shards.join("shard-000003.tar"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("train: 2 images in 1 shards"),
        "{}",
        stdout(&o)
    );

    let run = dir.path().join("run");
    let o = pretext(&[
        "pretrain",
        "--data",
        s(&shards),
        "--task",
        "rotation",
        "--model",
        "convnet4",
        "--width",
        "4",
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--image-size",
        "16",
        "--out",
        s(&run),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let results = json(&run.join("results.json"));
    assert_eq!(results["steps"], 2, "{results}");
}

/// A shard whose second member is `name` of `kind`, written with raw headers.
fn hostile_tar(path: &Path, name: &str, kind: tar::EntryType) {
    let mut png = Vec::new();
    image::RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (member, kind) in [("000.png", tar::EntryType::Regular), (name, kind)] {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..member.len()].copy_from_slice(member.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        let data: &[u8] = if kind == tar::EntryType::Regular {
            &png
        } else {
            &[]
        };
        if kind == tar::EntryType::Symlink {
            h.as_old_mut().linkname[..8].copy_from_slice(b"/etc/pwd");
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

#[test]
fn hostile_members_are_refused_by_name_and_nothing_is_written() {
    for (name, kind) in [
        ("../evil.jpg", tar::EntryType::Regular),
        ("/tmp/pretext-evil.jpg", tar::EntryType::Regular),
        ("evil.jpg", tar::EntryType::Symlink),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in/shards");
        std::fs::create_dir_all(&input).unwrap();
        hostile_tar(&input.join("shard-000000.tar"), name, kind);
        let o = pretext(&["info", s(&input)]);
        assert_clean_failure(&o, name);
        let out = dir.path().join("in/out");
        let o = pretext(&["shard", s(&input), "--out", s(&out), "--shard-size", "5"]);
        assert_clean_failure(&o, name);
        assert!(stderr(&o).contains("shard-000000.tar"), "{}", stderr(&o));
        assert!(!dir.path().join("in/evil.jpg").exists() && !dir.path().join("evil.jpg").exists());
        assert!(!out.exists(), "nothing is written for refused input");
        let o = pretext(&[
            "pretrain",
            "--data",
            s(&input),
            "--epochs",
            "1",
            "--out",
            s(&dir.path().join("run")),
        ]);
        assert_clean_failure(&o, name);
    }
}
