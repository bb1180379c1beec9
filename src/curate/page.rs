//! The explorer page (`pretext explore`): one self-contained `index.html` with its data in
//! `data.js` beside it and the thumbnails in sprite atlases the pipeline already wrote there.
//!
//! A page opened from `file://` cannot `fetch()`, so the data arrives as a `<script>` that sets
//! `window.PRETEXT_DATA`. The bulky per-point arrays travel as base64 of little-endian typed
//! arrays (a browser decodes 60,000 × 36 numbers in milliseconds; JSON numbers would take
//! seconds and three times the bytes); strings travel as JSON with `<`, `>` and `&` escaped, so
//! an untrusted file or class name can neither close the script element nor become markup. The
//! page itself (`page/explore.*`) only ever puts data into the DOM as text.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use crate::error::Error;
use crate::util::fs::write_atomic;

/// The page's markup, style and script, included in the binary so the page needs no install.
const HTML: &str = include_str!("page/explore.html");
const CSS: &str = include_str!("page/explore.css");
const JS: &str = include_str!("page/explore.js");

/// Where the template takes the style and the script (each placeholder appears once).
const CSS_SLOT: &str = "/*@EXPLORE_CSS@*/";
const JS_SLOT: &str = "/*@EXPLORE_JS@*/";

/// The page's file names in the output folder.
pub const INDEX_FILE: &str = "index.html";
pub const DATA_FILE: &str = "data.js";

/// Bumped when `data.js` changes shape, so a page and data of different versions say so.
const DATA_VERSION: u32 = 1;

/// Everything the page shows; built by the pipeline.
#[derive(Debug, Clone)]
pub struct PageData {
    /// Shown as the page's heading; untrusted text (it names the data set's folder).
    pub title: String,
    pub n: usize,
    /// The 2-D maps; the first is shown first.
    pub layouts: Vec<Layout>,
    /// Per point, an index into `class_names`.
    pub labels: Option<Vec<u32>>,
    /// Untrusted (they come from folder names or a labels file).
    pub class_names: Vec<String>,
    /// Per point, its k-means cluster: an index into `cluster_summaries`.
    pub clusters: Vec<u32>,
    pub cluster_summaries: Vec<ClusterSummary>,
    /// Per point, where the image came from (untrusted; may be "").
    pub paths: Vec<String>,
    pub neighbours_k: usize,
    /// `n * neighbours_k`: each point's neighbours, most similar first, itself excluded.
    pub neighbour_index: Vec<u32>,
    /// `n * neighbours_k`: the cosine similarity to each of those neighbours.
    pub neighbour_similarity: Vec<f32>,
    pub atlas: AtlasLayout,
}

/// One 2-D map of the embeddings.
#[derive(Debug, Clone)]
pub struct Layout {
    pub kind: LayoutKind,
    /// `n * 2`: x then y of each point, in any units (the page fits them to the window).
    pub xy: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutKind {
    Umap,
    Pca,
}

impl LayoutKind {
    /// The name the page's layout selector shows.
    pub fn name(self) -> &'static str {
        match self {
            LayoutKind::Umap => "UMAP",
            LayoutKind::Pca => "PCA",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterSummary {
    pub size: usize,
    /// The most common label in the cluster and its share of the cluster (0 to 1).
    pub majority: Option<(u32, f32)>,
    /// Point indices shown as the cluster's sample.
    pub sample: Vec<u32>,
}

/// Thumbnails packed into sprite sheets: point i is thumbnail i, in sheet `i / per_sheet`, at
/// cell `(i % per_sheet) % columns, (i % per_sheet) / columns`. Every sheet is
/// `columns * thumb` pixels wide; the last may have fewer rows than the others (the page scales
/// sheets by their width).
#[derive(Debug, Clone)]
pub struct AtlasLayout {
    /// Plain file names beside `index.html`, e.g. "atlas-0.jpg".
    pub files: Vec<String>,
    /// The side of one square thumbnail, in pixels.
    pub thumb: u32,
    pub columns: u32,
    pub per_sheet: u32,
}

/// Writes `dir/index.html` and `dir/data.js` (the atlases are already in `dir`), each
/// atomically, and returns their paths. Checks first that every per-point array has `n`
/// entries, that every index points somewhere and that the atlases exist.
pub fn write(dir: &Path, data: &PageData) -> Result<Vec<PathBuf>, Error> {
    let data_path = dir.join(DATA_FILE);
    validate(data).map_err(|problem| Error::msg(format!("{}: {problem}", data_path.display())))?;
    check_atlases_exist(dir, &data.atlas)?;
    let index_path = dir.join(INDEX_FILE);
    let script =
        data_script(data).map_err(|e| Error::msg(format!("{}: {e}", data_path.display())))?;
    write_atomic(&data_path, script.as_bytes()).map_err(|e| Error::io(&data_path, e))?;
    write_atomic(&index_path, index_html().as_bytes()).map_err(|e| Error::io(&index_path, e))?;
    Ok(vec![index_path, data_path])
}

/// `index.html`: the template with the style and script put in (they are ours, not data).
fn index_html() -> String {
    HTML.replacen(CSS_SLOT, CSS, 1).replacen(JS_SLOT, JS, 1)
}

/// Every inconsistency that would make the page draw garbage or throw, as one sentence.
fn validate(d: &PageData) -> Result<(), String> {
    if d.n == 0 {
        return Err("the page needs at least one point (n is 0)".into());
    }
    validate_layouts(d)?;
    validate_points(d)?;
    validate_neighbours(d)?;
    validate_clusters(d)?;
    validate_atlas(d.n, &d.atlas)
}

fn validate_layouts(d: &PageData) -> Result<(), String> {
    if d.layouts.is_empty() {
        return Err("no layout to show (layouts is empty)".into());
    }
    for layout in &d.layouts {
        let name = layout.kind.name();
        expect_len(
            &format!("{name} layout coordinates"),
            layout.xy.len(),
            d.n * 2,
        )?;
        if let Some(i) = layout.xy.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{name} layout: point {} has a coordinate that is not finite",
                i / 2
            ));
        }
    }
    Ok(())
}

fn validate_points(d: &PageData) -> Result<(), String> {
    expect_len("paths", d.paths.len(), d.n)?;
    expect_len("clusters", d.clusters.len(), d.n)?;
    expect_below(
        "clusters",
        &d.clusters,
        d.cluster_summaries.len(),
        "cluster summaries",
    )?;
    if let Some(labels) = &d.labels {
        expect_len("labels", labels.len(), d.n)?;
        expect_below("labels", labels, d.class_names.len(), "class names")?;
    }
    Ok(())
}

fn validate_neighbours(d: &PageData) -> Result<(), String> {
    if d.neighbours_k >= d.n && d.neighbours_k > 0 {
        return Err(format!(
            "{} neighbours per point asked of {} points (a point is not its own neighbour)",
            d.neighbours_k, d.n
        ));
    }
    expect_len(
        "neighbour indices",
        d.neighbour_index.len(),
        d.n * d.neighbours_k,
    )?;
    expect_len(
        "neighbour similarities",
        d.neighbour_similarity.len(),
        d.n * d.neighbours_k,
    )?;
    expect_below("neighbour indices", &d.neighbour_index, d.n, "points")?;
    if let Some(j) = d.neighbour_similarity.iter().position(|s| !s.is_finite()) {
        return Err(format!("neighbour similarity {j} is not finite"));
    }
    Ok(())
}

fn validate_clusters(d: &PageData) -> Result<(), String> {
    for (c, s) in d.cluster_summaries.iter().enumerate() {
        expect_below(&format!("cluster {c}'s sample"), &s.sample, d.n, "points")?;
        if let Some((label, share)) = s.majority {
            if label as usize >= d.class_names.len() {
                return Err(format!(
                    "cluster {c}'s majority label {label} has no class name ({} names)",
                    d.class_names.len()
                ));
            }
            if !(0.0..=1.0).contains(&share) {
                return Err(format!(
                    "cluster {c}'s majority share {share} is not in [0, 1]"
                ));
            }
        }
    }
    Ok(())
}

fn validate_atlas(n: usize, a: &AtlasLayout) -> Result<(), String> {
    if a.thumb == 0 || a.columns == 0 || a.per_sheet == 0 {
        return Err(format!(
            "atlas thumb ({}), columns ({}) and per_sheet ({}) must all be positive",
            a.thumb, a.columns, a.per_sheet
        ));
    }
    let sheets = n.div_ceil(a.per_sheet as usize);
    if a.files.len() < sheets {
        return Err(format!(
            "{n} thumbnails at {} per sheet need {sheets} atlas files, got {}",
            a.per_sheet,
            a.files.len()
        ));
    }
    match a.files.iter().find(|f| !is_plain_file_name(f)) {
        Some(f) => Err(format!(
            "atlas file name {f:?} is not a plain file name (letters, digits, '.', '-', '_')"
        )),
        None => Ok(()),
    }
}

/// Atlas names go into CSS `url("...")` as they are, so only characters that need no quoting
/// there (or in a URL) are allowed; the pipeline chooses these names, not the data set.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn check_atlases_exist(dir: &Path, a: &AtlasLayout) -> Result<(), Error> {
    for f in &a.files {
        let path = dir.join(f);
        if !path.is_file() {
            return Err(Error::msg(format!(
                "{}: atlas image not found (the page's thumbnails come from it)",
                path.display()
            )));
        }
    }
    Ok(())
}

fn expect_len(what: &str, got: usize, want: usize) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: expected {want} entries, got {got}"))
    }
}

/// Every value of `values` indexes a list of `bound` `things`.
fn expect_below(what: &str, values: &[u32], bound: usize, things: &str) -> Result<(), String> {
    match values
        .iter()
        .enumerate()
        .find(|(_, v)| **v as usize >= bound)
    {
        Some((i, v)) => Err(format!(
            "{what}: entry {i} is {v}, but there are {bound} {things}"
        )),
        None => Ok(()),
    }
}

/// `data.js` as the page reads it (camelCase keys; typed arrays as base64 strings).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DataJs<'a> {
    version: u32,
    title: &'a str,
    n: usize,
    layouts: Vec<LayoutJs>,
    labels: Option<String>,
    class_names: &'a [String],
    clusters: String,
    cluster_summaries: Vec<ClusterJs<'a>>,
    paths: &'a [String],
    neighbours_k: usize,
    neighbour_index: String,
    neighbour_similarity: String,
    atlas: AtlasJs<'a>,
}

#[derive(Serialize)]
struct LayoutJs {
    name: &'static str,
    /// Float32Array of x, y pairs.
    xy: String,
}

#[derive(Serialize)]
struct ClusterJs<'a> {
    size: usize,
    /// `[label, share]`, or null where there are no labels.
    majority: Option<(u32, f32)>,
    sample: &'a [u32],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AtlasJs<'a> {
    files: &'a [String],
    thumb: u32,
    columns: u32,
    per_sheet: u32,
}

/// The text of `data.js`: one assignment of the data object.
fn data_script(d: &PageData) -> Result<String, serde_json::Error> {
    let js = DataJs {
        version: DATA_VERSION,
        title: &d.title,
        n: d.n,
        layouts: (d.layouts.iter())
            .map(|l| LayoutJs {
                name: l.kind.name(),
                xy: base64_f32(&l.xy),
            })
            .collect(),
        labels: d.labels.as_deref().map(base64_u32),
        class_names: &d.class_names,
        clusters: base64_u32(&d.clusters),
        cluster_summaries: (d.cluster_summaries.iter())
            .map(|c| ClusterJs {
                size: c.size,
                majority: c.majority,
                sample: &c.sample,
            })
            .collect(),
        paths: &d.paths,
        neighbours_k: d.neighbours_k,
        neighbour_index: base64_u32(&d.neighbour_index),
        neighbour_similarity: base64_f32(&d.neighbour_similarity),
        atlas: AtlasJs {
            files: &d.atlas.files,
            thumb: d.atlas.thumb,
            columns: d.atlas.columns,
            per_sheet: d.atlas.per_sheet,
        },
    };
    let json = script_safe_json(&serde_json::to_string(&js)?);
    Ok(format!(
        "// Written by `pretext explore`; read by index.html.\nwindow.PRETEXT_DATA = {json};\n"
    ))
}

/// JSON that is safe inside a `<script>`: `<`, `>` and `&` (which JSON output only ever holds
/// inside strings) and the two JavaScript line terminators become `\u` escapes, so no string can
/// spell `</script>` or `<!--`.
pub fn script_safe_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn base64_f32(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_u32(values: &[u32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three points in two clusters, one neighbour each, one atlas sheet.
    fn tiny() -> PageData {
        PageData {
            title: "t".into(),
            n: 3,
            layouts: vec![Layout {
                kind: LayoutKind::Umap,
                xy: vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
            }],
            labels: Some(vec![0, 1, 1]),
            class_names: vec!["a".into(), "b".into()],
            clusters: vec![0, 1, 1],
            cluster_summaries: vec![
                ClusterSummary {
                    size: 1,
                    majority: Some((0, 1.0)),
                    sample: vec![0],
                },
                ClusterSummary {
                    size: 2,
                    majority: Some((1, 1.0)),
                    sample: vec![1, 2],
                },
            ],
            paths: vec!["x.png".into(), "".into(), "z.png".into()],
            neighbours_k: 1,
            neighbour_index: vec![1, 2, 1],
            neighbour_similarity: vec![0.5, 0.9, 0.9],
            atlas: AtlasLayout {
                files: vec!["atlas-0.png".into()],
                thumb: 4,
                columns: 2,
                per_sheet: 4,
            },
        }
    }

    fn tiny_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("atlas-0.png"), b"not read by write").unwrap();
        dir
    }

    #[test]
    fn writes_index_and_data_with_escaped_strings() {
        let dir = tiny_dir();
        let mut d = tiny();
        d.paths[0] = "</script><script>window.pwned=1</script>".into();
        d.class_names[1] = "<img src=x onerror=alert(1)>&".into();
        let written = write(dir.path(), &d).unwrap();
        assert_eq!(
            written,
            vec![dir.path().join(INDEX_FILE), dir.path().join(DATA_FILE)]
        );
        let js = std::fs::read_to_string(dir.path().join(DATA_FILE)).unwrap();
        assert!(
            !js.contains('<') && !js.contains('>') && !js.contains('&'),
            "{js}"
        );
        assert!(js.contains(r"\u003c/script\u003e\u003cscript\u003ewindow.pwned=1"));
        let html = std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
        assert!(!html.contains(CSS_SLOT) && !html.contains(JS_SLOT));
        assert!(html.contains("pretextExplorer") && html.contains("data.js"));
    }

    #[test]
    fn escaped_json_parses_back_to_the_same_strings() {
        let s = "a</script>&<!--\u{2028}b";
        let safe = script_safe_json(&serde_json::to_string(s).unwrap());
        assert_eq!(serde_json::from_str::<String>(&safe).unwrap(), s);
    }

    #[test]
    fn typed_arrays_are_little_endian_base64() {
        assert_eq!(base64_u32(&[1, 256]), "AQAAAAABAAA=");
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
    }

    /// `write`'s error for `d`, which must name the data file.
    fn error_of(d: &PageData) -> String {
        let dir = tiny_dir();
        let e = write(dir.path(), d).unwrap_err().to_string();
        assert!(
            !dir.path().join(INDEX_FILE).exists(),
            "nothing is written on a bad input"
        );
        e
    }

    #[test]
    fn rejects_arrays_of_the_wrong_length() {
        let mut d = tiny();
        d.paths.pop();
        let e = error_of(&d);
        assert!(
            e.contains("data.js") && e.contains("paths: expected 3 entries, got 2"),
            "{e}"
        );
        let mut d = tiny();
        d.layouts[0].xy.push(0.0);
        assert!(error_of(&d).contains("UMAP layout coordinates: expected 6"));
        let mut d = tiny();
        d.neighbour_similarity.pop();
        assert!(error_of(&d).contains("neighbour similarities"));
    }

    #[test]
    fn rejects_indices_out_of_range() {
        let mut d = tiny();
        d.labels = Some(vec![0, 2, 1]);
        assert!(error_of(&d).contains("labels: entry 1 is 2, but there are 2 class names"));
        let mut d = tiny();
        d.neighbour_index[2] = 3;
        assert!(error_of(&d).contains("neighbour indices: entry 2 is 3"));
        let mut d = tiny();
        d.clusters[0] = 5;
        assert!(error_of(&d).contains("clusters: entry 0 is 5"));
        let mut d = tiny();
        d.cluster_summaries[1].sample.push(9);
        assert!(error_of(&d).contains("cluster 1's sample"));
    }

    #[test]
    fn rejects_bad_atlases_and_layouts() {
        let mut d = tiny();
        d.atlas.per_sheet = 2;
        assert!(error_of(&d).contains("need 2 atlas files, got 1"));
        let mut d = tiny();
        d.atlas.files[0] = "a\").png".into();
        assert!(error_of(&d).contains("not a plain file name"));
        let mut d = tiny();
        d.layouts[0].xy[3] = f32::NAN;
        assert!(error_of(&d).contains("point 1 has a coordinate that is not finite"));
        let mut d = tiny();
        d.atlas.files[0] = "atlas-9.png".into();
        let e = error_of(&d);
        assert!(e.contains("atlas-9.png: atlas image not found"), "{e}");
    }
}
