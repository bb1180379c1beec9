//! `report.md` and its plots: accuracy against labels per class, the gain over scratch and where
//! it ends, pretext training curves, a 2-D map of the test embeddings, and the confusion matrix
//! of the best few-label model.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::plots::{self, Drawing, Series, palette};
use super::stats::Summary;
use super::{Cell, Method, StudyFile, budget_name};
use crate::Error;
use crate::config::TransferMode;
use crate::curate::grid::{self, GridRow};
use crate::data::ImageSet;
use crate::data::loader::Normalizer;
use crate::methods::PretrainSummary;
use crate::train::checkpoint::write_atomic;
use crate::util::run_dir::RunDir;

/// A line of results: a method used one way.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    pub method: String,
    pub mode: String,
}

impl SeriesKey {
    /// The baseline this line is, if it is one.
    fn baseline(&self) -> Option<TransferMode> {
        [TransferMode::Scratch, TransferMode::Random]
            .into_iter()
            .find(|b| self.method == b.name())
    }
    pub fn label(&self) -> String {
        match self.baseline() {
            Some(TransferMode::Scratch) => "scratch (supervised only)".into(),
            Some(_) => "random encoder, probe".into(),
            None => format!("{} / {}", self.method, self.mode),
        }
    }
    fn is_baseline(&self) -> bool {
        self.baseline().is_some()
    }
}

/// Summaries per series and budget, in the study's order (baselines first).
pub fn summarise(cells: &[Cell]) -> Vec<(SeriesKey, BTreeMap<usize, Summary>)> {
    let mut order: Vec<SeriesKey> = Vec::new();
    let mut values: BTreeMap<(SeriesKey, usize), Vec<f64>> = BTreeMap::new();
    for c in cells {
        let key = SeriesKey {
            method: c.method.clone(),
            mode: c.mode.clone(),
        };
        if !order.contains(&key) {
            order.push(key.clone());
        }
        values.entry((key, c.budget)).or_default().push(c.accuracy);
    }
    order
        .into_iter()
        .map(|key| {
            let per_budget = values
                .iter()
                .filter(|((k, _), _)| *k == key)
                .map(|((_, b), v)| (*b, Summary::of(v)))
                .collect();
            (key, per_budget)
        })
        .collect()
}

/// Budgets in increasing order of images, "all" (0) last.
fn ordered_budgets(budgets: &[usize]) -> Vec<usize> {
    let mut b = budgets.to_vec();
    b.sort_by_key(|&x| if x == 0 { usize::MAX } else { x });
    b.dedup();
    b
}

/// Where pretraining stops paying off: for every budget, the best pretrained series against
/// scratch.
pub struct Gain {
    pub budget: usize,
    pub best: SeriesKey,
    pub best_summary: Summary,
    pub scratch: Summary,
}

impl Gain {
    pub fn gain(&self) -> f64 {
        self.best_summary.mean - self.scratch.mean
    }
    /// Both sides have several seeds, so that they have intervals.
    pub fn has_intervals(&self) -> bool {
        self.best_summary.n > 1 && self.scratch.n > 1
    }
    /// The best method's 95 % interval lies wholly above scratch's (never with one seed: a
    /// single run has no interval).
    pub fn clear(&self) -> bool {
        self.has_intervals() && self.best_summary.low() > self.scratch.high()
    }
}

pub fn gains(summaries: &[(SeriesKey, BTreeMap<usize, Summary>)], budgets: &[usize]) -> Vec<Gain> {
    let scratch = summaries
        .iter()
        .find(|(k, _)| k.baseline() == Some(TransferMode::Scratch));
    let Some((_, scratch)) = scratch else {
        return Vec::new();
    };
    ordered_budgets(budgets)
        .into_iter()
        .filter_map(|budget| {
            let s = *scratch.get(&budget)?;
            let (best, best_summary) = summaries
                .iter()
                .filter(|(k, _)| !k.is_baseline())
                .filter_map(|(k, m)| m.get(&budget).map(|v| (k.clone(), *v)))
                .max_by(|a, b| a.1.mean.total_cmp(&b.1.mean))?;
            Some(Gain {
                budget,
                best,
                best_summary,
                scratch: s,
            })
        })
        .collect()
}

/// The sentence that answers the study's question. Pretraining pays off at a budget when the
/// best pretrained method's 95 % interval lies above scratch's.
pub fn verdict(gains: &[Gain]) -> String {
    if gains.is_empty() {
        return "No pretrained method and scratch share a budget, so there is no comparison."
            .into();
    }
    let ahead = gains.iter().filter(|g| g.gain() > 0.0).count();
    let noise = if ahead > 0 {
        format!(
            " (The best pretrained method's mean is ahead of scratch at {ahead} of {} budgets.)",
            gains.len()
        )
    } else {
        String::new()
    };
    let clear: Vec<String> = gains
        .iter()
        .filter(|g| g.clear())
        .map(|g| budget_name(g.budget))
        .collect();
    // Where it stops: the first budget from which on no gain is clear.
    let stop = gains
        .iter()
        .rposition(|g| g.clear())
        .map_or(0, |last_clear| last_clear + 1);
    if clear.len() == gains.len() {
        format!(
            "Pretraining pays off clearly at every budget tried, up to {}.",
            per_class(&[budget_name(gains.last().expect("non-empty").budget)])
        )
    } else if !gains.iter().any(Gain::has_intervals) {
        format!(
            "With one seed per cell there are no intervals to tell a gain from the noise of the seeds.{noise}"
        )
    } else if clear.is_empty() {
        format!(
            "Pretraining does not pay off clearly at any budget tried: the best pretrained method's 95 % interval is never above scratch's.{noise}"
        )
    } else if stop == gains.len() {
        let unclear: Vec<String> = gains
            .iter()
            .filter(|g| !g.clear())
            .map(|g| format!("{} ({:+.3})", budget_name(g.budget), g.gain()))
            .collect();
        format!(
            "Pretraining pays off clearly at {}; at {} the gain is within the spread of the seeds.",
            per_class(&clear),
            join_and(&unclear)
        )
    } else {
        format!(
            "Pretraining pays off clearly up to {} and stops paying off at {}.",
            per_class(&[budget_name(gains[stop - 1].budget)]),
            budget_name(gains[stop].budget)
        )
    }
}

/// "1 label per class", "5 labels per class", "1 and 5 labels per class".
fn per_class(budgets: &[String]) -> String {
    match budgets {
        [one] if one == "1" => "1 label per class".into(),
        _ => format!("{} labels per class", join_and(budgets)),
    }
}

/// "a", "a and b", "a, b and c".
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

struct AccuracyPlot {
    panels: Vec<(String, Vec<Series>)>,
    x_labels: Vec<(f64, String)>,
}

impl Drawing for AccuracyPlot {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let parts = area.split_evenly((1, self.panels.len().max(1)));
        for (part, (title, series)) in parts.iter().zip(&self.panels) {
            plots::accuracy_panel(part, title, series, &self.x_labels)?;
        }
        Ok(())
    }
}

struct CurvesPlot {
    panels: Vec<(String, String, Vec<(String, RGBColor, Vec<(f64, f64)>)>)>,
}

impl Drawing for CurvesPlot {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let parts = area.split_evenly((1, self.panels.len().max(1)));
        for (part, (title, y, lines)) in parts.iter().zip(&self.panels) {
            plots::curve_panel(part, title, y, lines)?;
        }
        Ok(())
    }
}

struct ScatterPlot {
    title: String,
    points: Vec<(f64, f64, usize)>,
    class_names: Vec<String>,
}

impl Drawing for ScatterPlot {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        plots::scatter_panel(area, &self.title, &self.points, &self.class_names)
    }
}

struct ConfusionPlot {
    title: String,
    counts: Vec<Vec<usize>>,
    class_names: Vec<String>,
}

impl Drawing for ConfusionPlot {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        plots::confusion_panel(area, &self.title, &self.counts, &self.class_names)
    }
}

/// The x position of a budget: its labels per class, "all" at the mean class size.
fn budget_x(budget: usize, train: &ImageSet) -> f64 {
    if budget == 0 {
        train.len as f64 / train.num_classes().max(1) as f64
    } else {
        budget as f64
    }
}

fn cell_text(s: &Summary) -> String {
    if s.n > 1 {
        format!(
            "{:.3} ± {:.3} [{:.3}, {:.3}]",
            s.mean,
            s.std,
            s.low().max(0.0),
            s.high().min(1.0)
        )
    } else {
        format!("{:.3}", s.mean)
    }
}

/// Per-epoch numbers of a pretraining run's `metrics.jsonl`.
fn training_curves(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(RunDir(run).metrics())
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What every section of the report reads.
struct Study<'a> {
    file: &'a StudyFile,
    train: &'a ImageSet,
    test: &'a ImageSet,
    methods: &'a [Method],
    budgets: Vec<usize>,
    summaries: Vec<(SeriesKey, BTreeMap<usize, Summary>)>,
}

/// The report's file, in the study directory.
const REPORT_FILE: &str = "report.md";

/// Write `report.md` and the plots beside it; returns the report's path.
pub fn write(
    file: &StudyFile,
    train: &ImageSet,
    test: &ImageSet,
    methods: &[Method],
    cells: &[Cell],
    quiet: bool,
) -> Result<PathBuf, Error> {
    let study = Study {
        file,
        train,
        test,
        methods,
        budgets: ordered_budgets(&file.study.budgets),
        summaries: summarise(cells),
    };
    let mut md = String::new();
    study.introduction(&mut md);
    study.methods_table(&mut md);
    study.accuracy_table(&mut md);
    study.gain_table(&mut md);
    study.accuracy_plot(&mut md)?;
    study.training_plot(&mut md)?;
    let few = study.few_label_budget();
    study.confusion_plot(few, &mut md)?;
    study.embedding_plot(few, &mut md)?;
    let report = file.study.out.join(REPORT_FILE);
    write_atomic(&report, md.as_bytes())?;
    if !quiet {
        eprintln!("wrote {}", report.display());
    }
    Ok(report)
}

impl Study<'_> {
    fn out(&self) -> &Path {
        &self.file.study.out
    }

    fn introduction(&self, md: &mut String) {
        let _ = writeln!(md, "# Few-label study: {}\n", self.file.data.path);
        let _ = writeln!(
            md,
            "{} training images ({} classes), {} test images. Every cell: {} labelled subsets (seeds); \
             mean ± standard deviation [95 % confidence interval of the mean]. Fine-tuning and scratch \
             train for {} steps at every budget. Raw numbers: `results.csv`.\n",
            self.train.len,
            self.train.num_classes(),
            self.test.len,
            self.file.study.seeds,
            self.file.study.finetune_steps
        );
    }

    /// Each method's run, its pretraining length and its pretext accuracy.
    fn methods_table(&self, md: &mut String) {
        let _ = writeln!(md, "## Methods\n");
        let _ = writeln!(
            md,
            "| method | run | pretext task | pretraining | pretext test accuracy |"
        );
        let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
        for m in self.methods {
            let run = m.run.as_ref().expect("pretrained methods have a run");
            let summary: Option<PretrainSummary> = std::fs::read(RunDir(run).results())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let (task, time, acc) = match &summary {
                Some(s) => (
                    s.task.clone(),
                    format!("{} steps, {:.1} min", s.steps, s.seconds / 60.0),
                    s.pretext_test_acc.map_or("–".into(), |a| format!("{a:.3}")),
                ),
                None => ("?".into(), "?".into(), "–".into()),
            };
            let _ = writeln!(
                md,
                "| {} | `{}` | {task} | {time} | {acc} |",
                m.name,
                run.display()
            );
        }
    }

    fn accuracy_table(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Test accuracy\n");
        let _ = write!(md, "| method / mode |");
        for &b in &self.budgets {
            let _ = write!(md, " {} |", budget_name(b));
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "|---|{}", "---|".repeat(self.budgets.len()));
        for (key, per_budget) in &self.summaries {
            let _ = write!(md, "| {} |", key.label());
            for b in &self.budgets {
                let _ = write!(md, " {} |", per_budget.get(b).map_or("–".into(), cell_text));
            }
            let _ = writeln!(md);
        }
    }

    /// The best pretrained model against scratch at every budget.
    fn gain_table(&self, md: &mut String) {
        let gains = gains(&self.summaries, &self.file.study.budgets);
        if gains.is_empty() {
            return;
        }
        let _ = writeln!(md, "\n## Gain over scratch\n");
        let _ = writeln!(md, "**{}**\n", verdict(&gains));
        let _ = writeln!(
            md,
            "| labels per class | best pretrained | its accuracy | scratch | gain | clear (95 % intervals apart) |"
        );
        let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
        for g in &gains {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} | {:.3} | {:+.3} | {} |",
                budget_name(g.budget),
                g.best.label(),
                g.best_summary.mean,
                g.scratch.mean,
                g.gain(),
                match (g.has_intervals(), g.clear()) {
                    (false, _) => "– (one seed)",
                    (true, true) => "yes",
                    (true, false) => "no",
                }
            );
        }
    }

    /// One panel per mode, every method's line, the baselines as dashed references.
    fn accuracy_plot(&self, md: &mut String) -> Result<(), Error> {
        let x_labels: Vec<(f64, String)> = self
            .budgets
            .iter()
            .map(|&b| (budget_x(b, self.train), budget_name(b)))
            .collect();
        let panels = self.accuracy_panels();
        let width = 620 * panels.len().max(1) as u32;
        plots::both(
            &self.out().join("accuracy"),
            (width, 520),
            &AccuracyPlot { panels, x_labels },
        )?;
        let _ = writeln!(
            md,
            "\n## Accuracy against labels per class\n\n![accuracy](accuracy.png)\n\nOne panel per transfer \
             mode; scratch (black, dashed) is the same network trained only on the labels, random (grey, \
             dashed) a probe on a random encoder. [SVG](accuracy.svg)"
        );
        Ok(())
    }

    /// The transfer modes in the order they first appear (fine-tuning when there are none).
    fn modes(&self) -> Vec<String> {
        let mut modes: Vec<String> = Vec::new();
        for (key, _) in self.summaries.iter().filter(|(k, _)| !k.is_baseline()) {
            if !modes.contains(&key.mode) {
                modes.push(key.mode.clone());
            }
        }
        if modes.is_empty() {
            modes.push(TransferMode::Finetune.name().into());
        }
        modes
    }

    fn accuracy_panels(&self) -> Vec<(String, Vec<Series>)> {
        let mut panels = Vec::new();
        for mode in self.modes() {
            let mut series = Vec::new();
            for (key, per_budget) in &self.summaries {
                let wanted = match key.baseline() {
                    Some(TransferMode::Scratch) => true,
                    Some(_) => mode == TransferMode::Probe.name(),
                    None => key.mode == mode,
                };
                if wanted {
                    series.push(self.series(key, per_budget));
                }
            }
            panels.push((format!("{mode} (bands: ± 1 std over seeds)"), series));
        }
        panels
    }

    /// A line of the accuracy plot: mean ± one standard deviation at every budget.
    fn series(&self, key: &SeriesKey, per_budget: &BTreeMap<usize, Summary>) -> Series {
        let method_index = self
            .methods
            .iter()
            .position(|m| m.name == key.method)
            .unwrap_or(0);
        let colour = match key.baseline() {
            Some(TransferMode::Scratch) => BLACK,
            Some(_) => RGBColor(120, 120, 120),
            None => palette(method_index),
        };
        Series {
            label: if key.is_baseline() {
                key.label()
            } else {
                key.method.clone()
            },
            points: self
                .budgets
                .iter()
                .filter_map(|b| {
                    let s = per_budget.get(b)?;
                    Some((
                        budget_x(*b, self.train),
                        s.mean,
                        s.mean - s.std,
                        s.mean + s.std,
                    ))
                })
                .collect(),
            colour,
            dashed: key.is_baseline(),
        }
    }

    /// Per epoch of pretraining: training accuracy, relative loss and the k-NN monitor.
    fn training_plot(&self, md: &mut String) -> Result<(), Error> {
        let mut acc_lines = Vec::new();
        let mut loss_lines = Vec::new();
        let mut knn_lines = Vec::new();
        for (i, m) in self.methods.iter().enumerate() {
            let curves = training_curves(m.run.as_ref().expect("pretrained"));
            let series = |key: &str| -> Vec<(f64, f64)> {
                curves
                    .iter()
                    .filter_map(|e| Some((e["epoch"].as_f64()?, e[key].as_f64()?)))
                    .collect()
            };
            let acc = series("train_acc");
            let loss = series("loss");
            let knn = series("knn_acc");
            if !acc.is_empty() {
                acc_lines.push((m.name.clone(), palette(i), acc));
            }
            if let Some(&(_, first)) = loss.first().filter(|(_, l)| l.abs() > 1e-12) {
                let relative = loss.iter().map(|&(e, l)| (e, l / first)).collect();
                loss_lines.push((m.name.clone(), palette(i), relative));
            }
            if !knn.is_empty() {
                knn_lines.push((m.name.clone(), palette(i), knn));
            }
        }
        if acc_lines.is_empty() {
            return Ok(());
        }
        let mut panels = vec![
            (
                "pretext training accuracy".to_string(),
                "accuracy on the pretext task".to_string(),
                acc_lines,
            ),
            (
                "pretext loss".to_string(),
                "loss / first epoch's loss".to_string(),
                loss_lines,
            ),
        ];
        if !knn_lines.is_empty() {
            panels.push((
                "k-NN accuracy while pretraining".into(),
                "test accuracy (k-NN monitor)".into(),
                knn_lines,
            ));
        }
        let width = 520 * panels.len() as u32;
        plots::both(
            &self.out().join("training"),
            (width, 420),
            &CurvesPlot { panels },
        )?;
        let _ = writeln!(
            md,
            "\n## Pretext training\n\n![training](training.png)\n\nPer epoch of pretraining: the \
             pretext task's training accuracy, the loss relative to the first epoch's, and (where \
             labels were available) the k-NN monitor. [SVG](training.svg)"
        );
        Ok(())
    }

    /// The budget the best few-label model is picked at: the smallest of at least 10 labels
    /// per class.
    fn few_label_budget(&self) -> usize {
        self.budgets
            .iter()
            .copied()
            .find(|&b| b >= 10)
            .or_else(|| self.budgets.first().copied())
            .unwrap_or(0)
    }

    /// The confusion matrix of the best model (pretrained or baseline) at budget `few`.
    fn confusion_plot(&self, few: usize, md: &mut String) -> Result<(), Error> {
        let best = self
            .summaries
            .iter()
            .filter_map(|(k, m)| m.get(&few).map(|s| (k.clone(), *s)))
            .max_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
        let Some((key, summary)) = &best else {
            return Ok(());
        };
        let path = self.out().join(super::PREDICTIONS_DIR).join(format!(
            "{}-{}-{}.npy",
            key.method,
            key.mode,
            budget_name(few)
        ));
        let (Ok(predicted), Some(truth)) =
            (crate::npy::read_labels(&path), self.test.labels.as_ref())
        else {
            return Ok(());
        };
        let k = self.test.num_classes().max(self.train.num_classes());
        let mut counts = vec![vec![0usize; k]; k];
        for (&p, &t) in predicted.iter().zip(truth) {
            if (p as usize) < k && (t as usize) < k {
                counts[t as usize][p as usize] += 1;
            }
        }
        let title = format!(
            "{} at {} labels per class (seed 0; mean {:.3})",
            key.label(),
            budget_name(few),
            summary.mean
        );
        plots::both(
            &self.out().join("confusion"),
            (760, 640),
            &ConfusionPlot {
                title,
                counts,
                class_names: class_names(self.test, k),
            },
        )?;
        let _ = writeln!(
            md,
            "\n## Confusion matrix of the best few-label model\n\n![confusion](confusion.png)\n\n\
             {} at {} labels per class, the best mean accuracy there; each row (true class) sums \
             to 1. [SVG](confusion.svg)",
            key.label(),
            budget_name(few)
        );
        Ok(())
    }

    /// The test embeddings of the best pretrained method at budget `few`, on their first two
    /// principal components.
    fn embedding_plot(&self, few: usize, md: &mut String) -> Result<(), Error> {
        let best_pretrained = self
            .summaries
            .iter()
            .filter(|(k, _)| !k.is_baseline())
            .filter_map(|(k, m)| m.get(&few).map(|s| (k.method.clone(), s.mean)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((name, _)) = best_pretrained else {
            return Ok(());
        };
        let encoder = self
            .methods
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.encoder.as_ref());
        let (Some(encoder), Some(truth)) = (encoder, self.test.labels.as_ref()) else {
            return Ok(());
        };
        let test = self.test;
        let n = self.file.study.embedding_points.min(test.len).max(2);
        let stride = (test.len / n).max(1);
        let picked: Vec<usize> = (0..test.len).step_by(stride).take(n).collect();
        let normalizer = Normalizer {
            mean: encoder.spec.mean.clone(),
            std: encoder.spec.std.clone(),
        };
        let features = crate::transfer::features::extract(
            &encoder.encoder,
            &test.subset(&picked),
            &normalizer,
            256,
        );
        let Ok(pca) =
            crate::cluster::pca::Pca::fit(&features.values, features.rows, features.dim, 2, false)
        else {
            return Ok(());
        };
        self.neighbour_grid(&name, &features, &picked, md)?;
        let xy = pca.transform(&features.values);
        let points: Vec<(f64, f64, usize)> = picked
            .iter()
            .enumerate()
            .map(|(row, &i)| {
                (
                    xy[2 * row] as f64,
                    xy[2 * row + 1] as f64,
                    truth[i] as usize,
                )
            })
            .collect();
        plots::both(
            &self.out().join("embedding"),
            (900, 640),
            &ScatterPlot {
                title: format!(
                    "{name}: {} test images, PCA of the frozen features",
                    picked.len()
                ),
                points,
                class_names: class_names(test, test.num_classes()),
            },
        )?;
        let _ = writeln!(
            md,
            "\n## Test embeddings\n\n![embedding](embedding.png)\n\nThe frozen features of `{name}` \
             (the best pretrained method at {} labels per class) for {} test images, projected on \
             their first two principal components and coloured by class. [SVG](embedding.svg)",
            budget_name(few),
            picked.len()
        );
        Ok(())
    }
}

/// Test images the study's neighbour grid shows, and their neighbours each.
const GRID_QUERIES: usize = 8;
const GRID_NEIGHBOURS: usize = 8;

impl Study<'_> {
    /// `neighbors.png`: the first test images of the sample and their nearest neighbours among
    /// the sample in `name`'s frozen features (what `pretext neighbors` draws).
    fn neighbour_grid(
        &self,
        name: &str,
        features: &crate::eval::features::Features,
        picked: &[usize],
        md: &mut String,
    ) -> Result<(), Error> {
        let queries: Vec<usize> = (0..GRID_QUERIES.min(picked.len())).collect();
        let k = GRID_NEIGHBOURS.min(picked.len() - 1);
        let found = crate::eval::neighbours::cosine_knn_of(
            &features.values,
            features.rows,
            features.dim,
            &queries,
            k,
        );
        let rows: Vec<GridRow> = queries
            .iter()
            .map(|&q| {
                let (index, similarity) = found.of(q);
                GridRow {
                    query: q,
                    neighbours: index
                        .iter()
                        .map(|&i| i as usize)
                        .zip(similarity.iter().copied())
                        .collect(),
                }
            })
            .collect();
        let out = self.out().join(NEIGHBOURS_GRID);
        grid::draw(&self.test.subset(picked), &rows, &out).map_err(|e| Error::io(&out, e))?;
        let _ = writeln!(
            md,
            "\n## Nearest neighbours\n\n![neighbours]({NEIGHBOURS_GRID})\n\nIn `{name}`'s frozen \
             features: each row is a test image and its {k} nearest neighbours among the {} test \
             images above (cosine similarity under each; green: same class, red: another).",
            picked.len()
        );
        Ok(())
    }
}

/// The study's neighbour grid.
const NEIGHBOURS_GRID: &str = "neighbors.png";

fn class_names(set: &ImageSet, k: usize) -> Vec<String> {
    (0..k)
        .map(|c| {
            set.class_names
                .get(c)
                .cloned()
                .unwrap_or_else(|| format!("class {c}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(method: &str, mode: &str, budget: usize, seed: u64, accuracy: f64) -> Cell {
        Cell {
            method: method.into(),
            mode: mode.into(),
            budget,
            seed,
            accuracy,
            seconds: 0.0,
        }
    }

    #[test]
    fn gains_find_where_pretraining_stops_paying_off() {
        let mut cells = Vec::new();
        for seed in 0..3 {
            let jitter = seed as f64 * 0.001;
            cells.push(cell("scratch", "finetune", 10, seed, 0.50 + jitter));
            cells.push(cell("scratch", "finetune", 50, seed, 0.70 + jitter));
            cells.push(cell("rot", "finetune", 50, seed, 0.70 + 2.0 * jitter));
            cells.push(cell("scratch", "finetune", 100, seed, 0.80 + jitter));
            cells.push(cell("scratch", "finetune", 0, seed, 0.90 + jitter));
            cells.push(cell("rot", "probe", 10, seed, 0.60 + jitter));
            cells.push(cell("rot", "finetune", 10, seed, 0.65 + jitter));
            cells.push(cell("rot", "finetune", 100, seed, 0.82 + jitter));
            cells.push(cell("rot", "finetune", 0, seed, 0.88 + jitter));
        }
        let summaries = summarise(&cells);
        assert_eq!(summaries[0].0.method, "scratch");
        let g = gains(&summaries, &[0, 10, 50, 100]);
        assert_eq!(
            g.iter().map(|g| g.budget).collect::<Vec<_>>(),
            vec![10, 50, 100, 0]
        );
        assert_eq!(g[0].best.mode, "finetune");
        assert!((g[0].gain() - 0.15).abs() < 1e-9 && g[0].clear());
        // At 50 the means differ by a hair, well inside the intervals: no clear gain.
        assert!(g[1].gain() > 0.0 && !g[1].clear());
        assert!(g[3].gain() < 0.0);
        // 100 is clear again (0.82 against 0.80 with tiny spread), so it stops only at "all".
        assert_eq!(
            verdict(&g),
            "Pretraining pays off clearly up to 100 labels per class and stops paying off at all."
        );
        assert_eq!(per_class(&["1".into()]), "1 label per class");
        assert_eq!(
            per_class(&["1".into(), "all".into()]),
            "1 and all labels per class"
        );
        // One seed has no interval: however large its gain, it is not called clear.
        let one_seed: Vec<Cell> = cells.iter().filter(|c| c.seed == 0).cloned().collect();
        let single = gains(&summarise(&one_seed), &[10]);
        assert!(single[0].gain() > 0.1 && !single[0].has_intervals() && !single[0].clear());
        assert!(verdict(&single).starts_with("With one seed per cell there are no intervals"));
        // A gain lost in the noise of the smallest budget does not hide the clear ones after it.
        assert_eq!(
            verdict(&g[1..3]),
            "Pretraining pays off clearly at 100 labels per class; at 50 (+0.001) the gain is within the spread of the seeds."
        );
    }
}
