//! `pretext info`: what a data set holds, text or images.

use std::path::Path;

use pretext::data::{Format, text};
use pretext::pipeline;

use super::{Globals, set_threads};
use crate::cli::InfoArgs;

pub fn run(a: InfoArgs, g: Globals) -> anyhow::Result<()> {
    set_threads(g.threads.unwrap_or(0))?;
    let p = Path::new(&a.path);
    if a.format.is_none() && describe_text(p, &a)? {
        return Ok(());
    }
    let format = match a.format {
        Some(f) => Some(f.into()),
        None if a.path != pretext::data::SYNTHETIC => Some(pretext::data::detect_format(p)?),
        None => None,
    };
    match format {
        Some(Format::Folder | Format::Shards) => describe_files(p, format, &a),
        _ => describe_loaded(format, &a),
    }
}

/// Prints a text corpus or labelled table at `p`; false when `p` holds no text.
fn describe_text(p: &Path, a: &InfoArgs) -> anyhow::Result<bool> {
    let opts = text::TextOptions {
        lossy_utf8: a.lossy_utf8,
    };
    if p.is_file() && !pretext::data::shards::is_tar_file(p) {
        if text::is_table(p) {
            let columns = text::Columns {
                text: a.text_column.clone(),
                label: a.label_column.clone(),
                ..Default::default()
            };
            let table = text::read_labelled(p, &columns, &opts)?;
            print!("{}", text::describe_labelled(&table));
        } else {
            print!("{}", text::describe_corpus(&text::read_corpus(p, &opts)?));
        }
        return Ok(true);
    }
    if p.is_dir() && text::is_corpus_dir(p) && !pretext::data::shards::holds_shards(p) {
        print!("{}", text::describe_corpus(&text::read_corpus(p, &opts)?));
        return Ok(true);
    }
    Ok(false)
}

/// An image folder or shards, read file by file (headers only unless `--check`).
fn describe_files(p: &Path, format: Option<Format>, a: &InfoArgs) -> anyhow::Result<()> {
    let (report, problems) = if format == Some(Format::Shards) {
        pretext::data::shards::describe(p, a.check, a.max_image_pixels)?
    } else {
        pipeline::describe_folder(p, a.check, a.max_image_pixels)?
    };
    print!("{report}");
    match problems.first() {
        None => Ok(()),
        Some(_) if a.skip_corrupt => {
            problems.iter().for_each(|p| eprintln!("warning: {p}"));
            println!("skipped corrupt images: {}", problems.len());
            Ok(())
        }
        Some(first) => Err(pretext::Error::msg(format!(
            "{} unreadable image(s) in {}, the first: {first} (--skip-corrupt reports them and goes on)",
            problems.len(),
            a.path
        ))
        .into()),
    }
}

/// A data set of the other formats, read into memory.
fn describe_loaded(format: Option<Format>, a: &InfoArgs) -> anyhow::Result<()> {
    let data = pretext::config::DataConfig {
        path: a.path.clone(),
        format,
        skip_corrupt: a.skip_corrupt,
        ..Default::default()
    };
    let ds = pipeline::load_data(&data)?;
    print!("{}", pretext::data::describe(&ds));
    if format == Some(Format::Stl10) {
        print!(
            "{}",
            pretext::data::stl::describe_unlabelled(Path::new(&data.path))?
        );
    }
    Ok(())
}
