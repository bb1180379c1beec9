//! The few-label study: every method (pretrained runs, tasks pretrained on the spot, and the
//! scratch and random baselines) × transfer mode × labels per class × seed, one cell at a time,
//! each appended to `results.csv` as soon as it is done, so that an interrupted study picks up
//! where it stopped. Then the report: `report.md` with tables and plots.

pub mod plots;
pub mod report;
pub mod stats;

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::config::{DataConfig, PretrainConfig, TransferConfig, TransferMode, read_toml};
use crate::data::loader::Normalizer;
use crate::data::split::{few_labels, scored_test_rows};
use crate::data::{Dataset, ImageSet};
use crate::encoder::TrainedEncoder;
use crate::models::EncoderSpec;
use crate::pipeline::{load_data, pretrain};
use crate::train::checkpoint::write_atomic;
use crate::train::train_device;
use crate::transfer::config::{KEY_LABELS_FILE, KEY_RANDOM_LABELS, LabelledSubset};
use crate::transfer::{ImageTransferer, TransferInputs, accuracy};

/// The study's own config, as run.
const STUDY_FILE: &str = "study.toml";
/// Every cell, one line each.
pub const RESULTS_CSV: &str = "results.csv";
/// Seed 0's predictions of every line and budget, for the confusion matrix.
pub const PREDICTIONS_DIR: &str = "predictions";

/// `pretext study --config study.toml`: `[data]`, `[study]` and the transfer recipes of
/// `[transfer]` (its `modes`, `labels_per_class` and `seeds` are the study's own instead).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyFile {
    pub data: DataConfig,
    pub study: StudyConfig,
    #[serde(default)]
    pub transfer: TransferConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudyConfig {
    /// The study directory: `results.csv`, `report.md`, the plots, and the runs it pretrains.
    pub out: PathBuf,
    /// Labelled images per class to try (0: every label).
    pub budgets: Vec<usize>,
    /// Labelled subsets (and initialisations) per budget.
    pub seeds: usize,
    /// How the pretrained encoders are transferred: `probe`, `knn`, `finetune`.
    pub modes: Vec<TransferMode>,
    /// The baselines: the same backbone trained from scratch, and a probe on a random encoder.
    pub scratch: bool,
    pub random: bool,
    /// Optimiser steps of every fine-tuning and scratch run, whatever the budget (so that one
    /// label per class and every label get the same training length).
    pub finetune_steps: usize,
    /// Test images in the 2-D map of the embeddings.
    pub embedding_points: usize,
    pub methods: Vec<MethodConfig>,
}

impl Default for StudyConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("runs/study"),
            budgets: vec![1, 5, 10, 25, 100, 0],
            seeds: 3,
            modes: vec![
                TransferMode::Probe,
                TransferMode::Knn,
                TransferMode::Finetune,
            ],
            scratch: true,
            random: true,
            finetune_steps: 500,
            embedding_points: 2000,
            methods: Vec::new(),
        }
    }
}

/// A pretrained encoder to compare: an existing run directory, or a pretraining config that
/// the study runs (into `OUT/pretrain/NAME`, on the study's data) unless it already finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodConfig {
    pub name: String,
    pub run: Option<PathBuf>,
    pub pretrain: Option<PathBuf>,
}

fn invalid(key: &str, problem: impl std::fmt::Display) -> Error {
    Error::msg(format!("config key `{key}`: {problem}"))
}

impl StudyFile {
    pub fn validate(&self) -> Result<(), Error> {
        let s = &self.study;
        if s.budgets.is_empty() {
            return Err(invalid("study.budgets", "must name at least one budget"));
        }
        if s.seeds == 0 {
            return Err(invalid("study.seeds", "must be at least 1"));
        }
        if s.finetune_steps == 0 {
            return Err(invalid("study.finetune_steps", "must be at least 1"));
        }
        if s.modes
            .iter()
            .any(|m| matches!(m, TransferMode::Scratch | TransferMode::Random))
        {
            return Err(invalid(
                "study.modes",
                "takes probe, knn and finetune; scratch and random are `study.scratch` and `study.random`",
            ));
        }
        if s.methods.is_empty() && !s.scratch {
            return Err(invalid(
                "study.methods",
                "is empty and the scratch baseline is off",
            ));
        }
        let mut names = BTreeSet::new();
        for m in &s.methods {
            let key = format!("study.methods `{}`", m.name);
            if m.name.is_empty()
                || !m
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c))
            {
                return Err(invalid(&key, "a name is letters, digits and - _ + . only"));
            }
            let baselines = [TransferMode::Scratch.name(), TransferMode::Random.name()];
            if baselines.contains(&m.name.as_str()) || !names.insert(&m.name) {
                return Err(invalid(
                    &key,
                    "names must be unique and not scratch or random",
                ));
            }
            if m.run.is_some() == m.pretrain.is_some() {
                return Err(invalid(&key, "needs exactly one of `run` and `pretrain`"));
            }
        }
        let mut transfer = self.transfer.clone();
        transfer.seeds = s.seeds;
        transfer.validate().map_err(Error::from)?;
        // The study's budgets are labels per class; a listed or random subset would be ignored.
        if matches!(
            transfer.labelled_subset(),
            LabelledSubset::Listed(_) | LabelledSubset::Random { .. }
        ) {
            return Err(invalid(
                &format!("{KEY_LABELS_FILE} / {KEY_RANDOM_LABELS}"),
                "a study labels per class (study.budgets): leave these out",
            ));
        }
        Ok(())
    }
}

/// One finished cell: a row of `results.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub method: String,
    pub mode: String,
    /// Labelled images per class; 0 for every label.
    pub budget: usize,
    pub seed: u64,
    pub accuracy: f64,
    pub seconds: f64,
}

pub const CSV_HEADER: &str = "method,mode,labels_per_class,seed,accuracy,seconds";

impl Cell {
    pub fn key(&self) -> (String, String, usize, u64) {
        (
            self.method.clone(),
            self.mode.clone(),
            self.budget,
            self.seed,
        )
    }
    fn to_csv(&self) -> String {
        format!(
            "{},{},{},{},{:.6},{:.3}",
            self.method,
            self.mode,
            budget_name(self.budget),
            self.seed,
            self.accuracy,
            self.seconds
        )
    }
    fn from_csv(line: &str) -> Option<Cell> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            return None;
        }
        Some(Cell {
            method: f[0].to_string(),
            mode: f[1].to_string(),
            budget: if f[2] == "all" { 0 } else { f[2].parse().ok()? },
            seed: f[3].parse().ok()?,
            accuracy: f[4]
                .parse()
                .ok()
                .filter(|a: &f64| (0.0..=1.0).contains(a))?,
            seconds: f[5].parse().ok()?,
        })
    }
}

pub fn budget_name(budget: usize) -> String {
    if budget == 0 {
        "all".into()
    } else {
        budget.to_string()
    }
}

/// The finished cells of an earlier attempt. A line cut short by a kill is dropped (and the
/// file rewritten without it) so that the cell runs again.
pub fn read_results(path: &Path) -> Result<Vec<Cell>, Error> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    match lines.next() {
        Some(CSV_HEADER) => {}
        _ => {
            return Err(Error::msg(format!(
                "{}: not a study results file (its first line must be `{CSV_HEADER}`)",
                path.display()
            )));
        }
    }
    let cells: Vec<Cell> = lines.filter_map(Cell::from_csv).collect();
    let complete = text.ends_with('\n') && cells.len() + 1 == text.lines().count();
    if !complete {
        rewrite_results(path, &cells)?;
    }
    Ok(cells)
}

fn rewrite_results(path: &Path, cells: &[Cell]) -> Result<(), Error> {
    let mut text = format!("{CSV_HEADER}\n");
    for c in cells {
        text += &c.to_csv();
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn append_result(path: &Path, cell: &Cell) -> Result<(), Error> {
    if !path.exists() {
        rewrite_results(path, &[])?;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(format!("{}\n", cell.to_csv()).as_bytes())
        .and_then(|_| file.sync_data())
        .map_err(|e| Error::io(path, e))
}

/// A method with its encoder, ready to transfer.
pub struct Method {
    pub name: String,
    /// The pretraining run (its `metrics.jsonl` and `results.json`), for pretrained methods.
    pub run: Option<PathBuf>,
    pub encoder: Option<TrainedEncoder>,
}

pub struct StudyOutcome {
    pub cells: Vec<Cell>,
    pub computed: usize,
    pub reused: usize,
    pub report: PathBuf,
    pub seconds: f64,
}

/// Test hook: `PRETEXT_ABORT_AFTER_CELLS=N` kills the process after its N-th new cell, as an
/// interruption would.
fn abort_after_cells(done: usize) {
    if std::env::var("PRETEXT_ABORT_AFTER_CELLS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        == Some(done)
    {
        eprintln!("aborting after {done} cells (PRETEXT_ABORT_AFTER_CELLS)");
        std::process::abort();
    }
}

/// The fine-tuning recipe for `images` labelled images: `steps` optimiser steps whatever the
/// budget, 5 % of them warm-up.
fn finetune_recipe(cfg: &TransferConfig, images: usize, steps: usize) -> TransferConfig {
    let batch = cfg.finetune.batch_size.max(1);
    let steps_per_epoch = (images / batch).max(1);
    let mut out = cfg.clone();
    out.finetune.epochs = steps.div_ceil(steps_per_epoch);
    out.finetune.max_steps = steps;
    out.finetune.warmup_epochs = 0.05 * steps as f64 / steps_per_epoch as f64;
    out
}

/// Run (or finish) the study and write its report.
pub fn run_study(file: &StudyFile, quiet: bool) -> Result<StudyOutcome, Error> {
    file.validate()?;
    let started = Instant::now();
    let s = &file.study;
    prepare_out_dir(file)?;
    let data = load_data(&file.data)?;
    let test = scored_test(file, &data)?;
    let methods = prepare_methods(file, &data.train, quiet)?;
    let mut log = ResultLog::open(&s.out, quiet)?;
    let spec = baseline_spec(&data.train, &methods);
    let mut subsets = BTreeMap::new();
    for row in plan(s, &methods) {
        let inputs = TransferInputs {
            train: &data.train,
            test: &test,
            pretrained: row.encoder,
            spec: spec.clone(),
            quiet: true,
        };
        let transferer = ImageTransferer::for_images(&inputs, file.transfer.feature_layer())?;
        for &budget in &s.budgets {
            for seed in 0..s.seeds as u64 {
                let key = (row.method.clone(), row.mode_name.to_string(), budget, seed);
                if log.done.contains(&key) {
                    continue;
                }
                log.refuse_if_stopped()?;
                let subset = match subsets.entry((budget, seed)) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(few_labels(
                        &data.train,
                        (budget > 0).then_some(budget),
                        seed,
                    )?),
                };
                let t = Instant::now();
                let recipe = finetune_recipe(&file.transfer, subset.len(), s.finetune_steps);
                let predicted = transferer.predict(row.mode, subset, seed, &recipe)?;
                let cell = Cell {
                    method: key.0,
                    mode: key.1,
                    budget,
                    seed,
                    accuracy: accuracy(&predicted, transferer.test_labels()),
                    seconds: t.elapsed().as_secs_f64(),
                };
                log.record(cell, &predicted)?;
            }
        }
    }
    let report = report::write(file, &data.train, &test, &methods, &log.cells, quiet)?;
    Ok(StudyOutcome {
        cells: log.cells,
        computed: log.computed,
        reused: log.reused,
        report,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The study directory with its config, and the folder of seed 0's predictions.
fn prepare_out_dir(file: &StudyFile) -> Result<(), Error> {
    let out = &file.study.out;
    let predictions = out.join(PREDICTIONS_DIR);
    std::fs::create_dir_all(&predictions).map_err(|e| Error::io(&predictions, e))?;
    let config = toml::to_string(file).expect("study config serialises");
    write_atomic(&out.join(STUDY_FILE), config.as_bytes())?;
    Ok(())
}

/// The test images the study scores (at most `transfer.test_limit`); both splits must be
/// labelled.
fn scored_test<'d>(file: &StudyFile, data: &'d Dataset) -> Result<Cow<'d, ImageSet>, Error> {
    let path = &file.data.path;
    let test = data
        .test
        .as_ref()
        .ok_or_else(|| Error::msg(format!("{path}: a study needs a test split")))?;
    if data.train.labels.is_none() || test.labels.is_none() {
        return Err(Error::msg(format!(
            "{path}: a study needs labelled training and test images"
        )));
    }
    Ok(match scored_test_rows(test.len, file.transfer.test_limit) {
        Some(rows) => Cow::Owned(test.subset(&rows)),
        None => Cow::Borrowed(test),
    })
}

/// The backbone of the scratch and random baselines: the first method's (or ConvNet-4 of
/// width 16), normalised for `train`.
fn baseline_spec(train: &ImageSet, methods: &[Method]) -> EncoderSpec {
    let normalizer = Normalizer::fit(train);
    let like = methods
        .iter()
        .find_map(|m| m.encoder.as_ref().map(|e| e.spec.clone()));
    EncoderSpec {
        arch: like
            .as_ref()
            .map_or(crate::models::Arch::Convnet4, |l| l.arch),
        width: like.as_ref().map_or(16, |l| l.width),
        in_channels: train.channels,
        mean: normalizer.mean,
        std: normalizer.std,
        stem: like.as_ref().map_or(crate::models::Stem::Cifar, |l| l.stem),
        vit: like.as_ref().and_then(|l| l.vit),
        input_size: None,
        start: None,
    }
}

/// One line of the study: a method (or baseline) used in one transfer mode.
struct PlanRow<'m> {
    method: String,
    encoder: Option<&'m TrainedEncoder>,
    mode: TransferMode,
    /// The mode's name in the results (a baseline's is the mode it is compared under).
    mode_name: &'static str,
}

fn plan<'m>(s: &StudyConfig, methods: &'m [Method]) -> Vec<PlanRow<'m>> {
    let baseline = |name: &str, mode, mode_name| PlanRow {
        method: name.into(),
        encoder: None,
        mode,
        mode_name,
    };
    let mut rows = Vec::new();
    if s.scratch {
        rows.push(baseline(
            TransferMode::Scratch.name(),
            TransferMode::Scratch,
            TransferMode::Finetune.name(),
        ));
    }
    if s.random {
        rows.push(baseline(
            TransferMode::Random.name(),
            TransferMode::Random,
            TransferMode::Probe.name(),
        ));
    }
    for m in methods {
        for &mode in &s.modes {
            rows.push(PlanRow {
                method: m.name.clone(),
                encoder: m.encoder.as_ref(),
                mode,
                mode_name: mode.name(),
            });
        }
    }
    rows
}

/// `results.csv`: the cells done before, and each new one appended as soon as it is done.
struct ResultLog {
    csv: PathBuf,
    predictions: PathBuf,
    cells: Vec<Cell>,
    done: BTreeSet<(String, String, usize, u64)>,
    reused: usize,
    computed: usize,
    quiet: bool,
}

impl ResultLog {
    fn open(out: &Path, quiet: bool) -> Result<Self, Error> {
        let csv = out.join(RESULTS_CSV);
        let cells = read_results(&csv)?;
        let reused = cells.len();
        if reused > 0 && !quiet {
            eprintln!("{}: {reused} cells already done, kept", csv.display());
        }
        Ok(Self {
            done: cells.iter().map(Cell::key).collect(),
            predictions: out.join(PREDICTIONS_DIR),
            csv,
            cells,
            reused,
            computed: 0,
            quiet,
        })
    }

    /// An error when Ctrl-C asked the study to stop (the cells done are kept).
    fn refuse_if_stopped(&self) -> Result<(), Error> {
        if crate::train::stop_was_requested() {
            return Err(Error::msg(format!(
                "study interrupted after {} new cells (kept in {}); run it again to finish",
                self.computed,
                self.csv.display()
            )));
        }
        Ok(())
    }

    /// Appends `cell`, and writes seed 0's predictions for the report's confusion matrix.
    fn record(&mut self, cell: Cell, predicted: &[u32]) -> Result<(), Error> {
        let budget = budget_name(cell.budget);
        if cell.seed == 0 {
            let path = self
                .predictions
                .join(format!("{}-{}-{budget}.npy", cell.method, cell.mode));
            let values: Vec<i64> = predicted.iter().map(|&p| p as i64).collect();
            crate::npy::write(&path, &values, &[values.len() as u64])?;
        }
        append_result(&self.csv, &cell)?;
        if !self.quiet {
            eprintln!(
                "study {:<10} {:<8} {budget:>4} labels/class seed {}: {:.4} ({:.1} s)",
                cell.method, cell.mode, cell.seed, cell.accuracy, cell.seconds
            );
        }
        self.cells.push(cell);
        self.computed += 1;
        abort_after_cells(self.computed);
        Ok(())
    }
}

/// Load every method's encoder, pretraining those given as configs first (a finished run is
/// reused; an interrupted one resumes).
fn prepare_methods(file: &StudyFile, train: &ImageSet, quiet: bool) -> Result<Vec<Method>, Error> {
    let mut out = Vec::new();
    for m in &file.study.methods {
        let run = match (&m.run, &m.pretrain) {
            (Some(run), _) => run.clone(),
            (None, Some(config)) => {
                let mut cfg: PretrainConfig = read_toml(config)?;
                cfg.data = file.data.clone();
                cfg.run.out = file.study.out.join("pretrain").join(&m.name);
                let finished = cfg.run.out.join("results.json").exists()
                    && cfg.run.out.join("encoder.safetensors").exists();
                if !finished {
                    if !quiet {
                        eprintln!("study: pretraining `{}` from {}", m.name, config.display());
                    }
                    pretrain(&cfg, quiet)?;
                }
                cfg.run.out
            }
            (None, None) => unreachable!("validated"),
        };
        let encoder = TrainedEncoder::load(&run, &train_device())?;
        if encoder.spec.in_channels != train.channels {
            return Err(Error::msg(format!(
                "{}: the encoder of `{}` takes {} channels but the study's images have {}",
                run.display(),
                m.name,
                encoder.spec.in_channels,
                train.channels
            )));
        }
        out.push(Method {
            name: m.name.clone(),
            run: Some(run),
            encoder: Some(encoder),
        });
    }
    Ok(out)
}

/// Read a study config file.
pub fn read_study(path: &Path) -> Result<StudyFile, Error> {
    Ok(read_toml(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_round_trip_through_csv_and_torn_lines_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.csv");
        let cell = |seed| Cell {
            method: "rotation".into(),
            mode: "probe".into(),
            budget: 0,
            seed,
            accuracy: 0.5,
            seconds: 1.25,
        };
        append_result(&path, &cell(0)).unwrap();
        append_result(&path, &cell(1)).unwrap();
        assert_eq!(read_results(&path).unwrap(), vec![cell(0), cell(1)]);
        // A kill in the middle of a line leaves a torn row: it is dropped, the rest kept.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text += "rotation,probe,al";
        std::fs::write(&path, text).unwrap();
        assert_eq!(read_results(&path).unwrap(), vec![cell(0), cell(1)]);
        append_result(&path, &cell(2)).unwrap();
        assert_eq!(read_results(&path).unwrap().len(), 3);
        std::fs::write(&path, "something else\n").unwrap();
        assert!(
            read_results(&path)
                .unwrap_err()
                .to_string()
                .contains("not a study results file")
        );
    }

    #[test]
    fn finetuning_takes_the_same_steps_at_every_budget() {
        let cfg = TransferConfig::default();
        for images in [10, 100, 1000, 60_000] {
            let r = finetune_recipe(&cfg, images, 500);
            let per_epoch = (images / cfg.finetune.batch_size).max(1);
            assert!(r.finetune.epochs * per_epoch >= 500, "{images}");
            assert_eq!(r.finetune.max_steps, 500);
            assert!((r.finetune.warmup_epochs * per_epoch as f64 - 25.0).abs() < 1e-9);
        }
    }

    #[test]
    fn bad_study_configs_name_their_key() {
        let mut file = StudyFile::default();
        file.study.methods.push(MethodConfig {
            name: "rotation".into(),
            run: None,
            pretrain: None,
        });
        assert!(
            file.validate()
                .unwrap_err()
                .to_string()
                .contains("exactly one of")
        );
        file.study.methods[0].run = Some("runs/x".into());
        file.study.seeds = 0;
        assert!(
            file.validate()
                .unwrap_err()
                .to_string()
                .contains("study.seeds")
        );
        file.study.seeds = 2;
        file.study.modes = vec![TransferMode::Scratch];
        assert!(
            file.validate()
                .unwrap_err()
                .to_string()
                .contains("study.modes")
        );
    }
}
