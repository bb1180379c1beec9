//! The labelled training images of each seed: per class, a list's (`transfer.labels_file`),
//! or random ones (`transfer.random_labels`).

use std::collections::HashMap;
use std::path::Path;

use crate::Error;
use crate::curate::select::{ListedImage, Split, read_listed};
use crate::data::ImageSet;
use crate::data::split::{few_labels, random_labels};

use super::config::LabelledSubset;

/// The labelled rows of `train` for each of `seeds` seeds, and the description of the subset
/// that `results.json` records.
pub fn labelled_subsets(
    train: &ImageSet,
    subset: &LabelledSubset,
    seeds: usize,
) -> Result<(Vec<Vec<usize>>, String), Error> {
    let seeds = 0..seeds as u64;
    let subsets: Vec<Vec<usize>> = match subset {
        LabelledSubset::All => seeds
            .map(|s| few_labels(train, None, s))
            .collect::<Result<_, _>>()?,
        LabelledSubset::PerClass(n) => seeds
            .map(|s| few_labels(train, Some(*n), s))
            .collect::<Result<_, _>>()?,
        LabelledSubset::Listed(file) => {
            let rows = listed_rows(train, file)?;
            seeds.map(|_| rows.clone()).collect()
        }
        LabelledSubset::Random { count, stratified } => seeds
            .map(|s| random_labels(train, *count, *stratified, s))
            .collect::<Result<_, _>>()?,
    };
    let images = subsets.first().map_or(0, Vec::len);
    Ok((subsets, subset.describe(images)))
}

/// The rows of `train` that the list at `file` names, in its order. Every row must be of the
/// training split, within it, name the image at that row where both the list and `train` know
/// where it came from, and appear once; the list must name at least one image and `train` must
/// have labels.
pub fn listed_rows(train: &ImageSet, file: &Path) -> Result<Vec<usize>, Error> {
    let listed = read_listed(file)?;
    if train.labels.is_none() {
        return Err(Error::msg(format!(
            "{}: the training images have no labels to transfer with",
            file.display()
        )));
    }
    if listed.is_empty() {
        return Err(Error::msg(format!("{}: lists no images", file.display())));
    }
    let mut first_line = HashMap::new();
    let mut rows = Vec::with_capacity(listed.len());
    for image in &listed {
        check_listed(train, file, image)?;
        if let Some(before) = first_line.insert(image.index, image.line) {
            return Err(Error::msg(format!(
                "{}:{}: training image {} is listed twice (lines {before} and {})",
                file.display(),
                image.line,
                image.index,
                image.line
            )));
        }
        rows.push(image.index);
    }
    Ok(rows)
}

/// One listed image is a training image of `train`, the one its path names.
fn check_listed(train: &ImageSet, file: &Path, image: &ListedImage) -> Result<(), Error> {
    let at = |problem: String| Error::msg(format!("{}:{}: {problem}", file.display(), image.line));
    if image.split != Split::Train {
        return Err(at(format!(
            "only training images can be labelled, this row is of the `{}` split",
            image.split.name()
        )));
    }
    if image.index >= train.len {
        return Err(at(format!(
            "index {} is past the {} training images",
            image.index, train.len
        )));
    }
    // An empty path leaves the row unchecked: lists made without origins (synthetic data, or
    // by hand) name images by row alone.
    let origin = train.origins.as_ref().map(|o| o[image.index].as_str());
    match origin {
        Some(origin) if !image.path.is_empty() && image.path != origin => Err(at(format!(
            "lists `{}` at index {}, but that training image is `{origin}` (a list made for another data set?)",
            image.path, image.index
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 40 one-pixel images of 4 classes (image i is of class i % 4), from `img{i}.png`.
    fn train() -> ImageSet {
        ImageSet {
            pixels: vec![0; 40],
            len: 40,
            labels: Some((0..40).map(|i| i % 4).collect()),
            channels: 1,
            height: 1,
            width: 1,
            class_names: ["a", "b", "c", "d"].map(String::from).to_vec(),
            origins: Some((0..40).map(|i| format!("img{i}.png")).collect()),
        }
    }

    /// The list `text` (after the header) as a file in `dir`.
    fn list(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let file = dir.path().join("sel.csv");
        std::fs::write(&file, format!("path,split,index,label,reason\n{text}")).unwrap();
        file
    }

    fn error(set: &ImageSet, file: &Path) -> String {
        listed_rows(set, file).unwrap_err().to_string()
    }

    #[test]
    fn a_list_labels_exactly_its_images_for_every_seed() {
        let dir = tempfile::tempdir().unwrap();
        let file = list(
            &dir,
            "img7.png,train,7,d,x\n,train,2,,\nimg30.png,train,30,c,y\n",
        );
        let subset = LabelledSubset::Listed(file);
        let (subsets, described) = labelled_subsets(&train(), &subset, 3).unwrap();
        assert_eq!(subsets, vec![vec![7, 2, 30]; 3]);
        assert_eq!(described, "3 images listed in sel.csv");
    }

    #[test]
    fn random_subsets_vary_by_seed_and_say_how_they_were_drawn() {
        let subset = LabelledSubset::Random {
            count: 8,
            stratified: false,
        };
        let (subsets, described) = labelled_subsets(&train(), &subset, 3).unwrap();
        assert!(subsets.iter().all(|s| s.len() == 8));
        assert_ne!(subsets[0], subsets[1]);
        assert_eq!(described, "8 random images, unstratified");
        let stratified = LabelledSubset::Random {
            count: 8,
            stratified: true,
        };
        let (subsets, _) = labelled_subsets(&train(), &stratified, 2).unwrap();
        for s in &subsets {
            let mut per_class = [0; 4];
            s.iter().for_each(|&i| per_class[i % 4] += 1);
            assert_eq!(per_class, [2; 4]);
        }
    }

    #[test]
    fn bad_lists_are_errors_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let set = train();
        let e = error(&set, &dir.path().join("none.csv"));
        assert!(e.contains("none.csv"), "{e}");
        let bad_header = dir.path().join("bad.csv");
        std::fs::write(&bad_header, "file,index\nx,1\n").unwrap();
        let e = error(&set, &bad_header);
        assert!(e.contains("bad.csv:1") && e.contains("`path`"), "{e}");
        let e = error(&set, &list(&dir, "img1.png,train,1,,\nimg2.png,test,2,,\n"));
        assert!(e.contains("sel.csv:3") && e.contains("`test` split"), "{e}");
        let e = error(&set, &list(&dir, ",train,40,,\n"));
        assert!(e.contains("sel.csv:2") && e.contains("past the 40"), "{e}");
        let e = error(&set, &list(&dir, "other/img3.png,train,3,,\n"));
        assert!(
            e.contains("sel.csv:2") && e.contains("other/img3.png") && e.contains("`img3.png`"),
            "{e}"
        );
        let e = error(
            &set,
            &list(&dir, ",train,5,,\n,train,6,,\nimg5.png,train,5,,\n"),
        );
        assert!(
            e.contains("sel.csv:4") && e.contains("lines 2 and 4"),
            "{e}"
        );
        let e = error(&set, &list(&dir, ""));
        assert!(e.contains("lists no images"), "{e}");
        let unlabelled = ImageSet {
            labels: None,
            ..train()
        };
        let e = error(&unlabelled, &list(&dir, ",train,1,,\n"));
        assert!(e.contains("no labels"), "{e}");
    }

    #[test]
    fn without_origins_a_listed_path_is_not_checked() {
        let dir = tempfile::tempdir().unwrap();
        let set = ImageSet {
            origins: None,
            ..train()
        };
        let file = list(&dir, "anything.png,train,4,,\n");
        assert_eq!(listed_rows(&set, &file).unwrap(), [4]);
    }
}
