//! `pretext demo`: the whole pipeline on the synthetic data, sized for a laptop CPU.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::Error;
use crate::config::{PretrainConfig, TransferConfig};
use crate::pipeline::{EncoderSource, PretrainSummary, pretrain, transfer};
use crate::train::checkpoint::write_atomic;
use crate::transfer::TransferResults;

/// What the demo did.
pub struct DemoOutcome {
    pub pretrain: PretrainSummary,
    pub transfer: TransferResults,
    /// The few-label study's `report.md`.
    pub report: PathBuf,
    pub seconds: f64,
}

pub fn demo_configs(out: &Path) -> (PretrainConfig, TransferConfig) {
    let mut pre = PretrainConfig::default();
    // 16x16 images and a narrow network keep the whole demo within a few minutes on 2 cores.
    pre.data.synthetic_train = 5_000;
    pre.data.synthetic_test = 2_000;
    pre.data.synthetic_size = 16;
    pre.model.width = 16;
    pre.train.epochs = 12;
    pre.train.batch_size = 64;
    pre.train.lr = 0.05;
    pre.train.augment.crop_padding = 2;
    pre.run.out = out.join("pretrain");
    let mut tr = TransferConfig::default();
    tr.labels_per_class = 10;
    tr.seeds = 3;
    tr.finetune.epochs = 40;
    tr.finetune.batch_size = 25;
    tr.finetune.augment.crop_padding = 2;
    (pre, tr)
}

/// The demo's closing study: the rotation encoder against scratch at 2, 10 and 50 labels per
/// class, 2 seeds.
pub fn demo_study(
    out: &Path,
    pre: &PretrainConfig,
    tr: &TransferConfig,
) -> crate::study::StudyFile {
    use crate::study::{MethodConfig, StudyConfig, StudyFile};
    StudyFile {
        data: pre.data.clone(),
        study: StudyConfig {
            out: out.join("study"),
            budgets: vec![2, 10, 50],
            seeds: 2,
            finetune_steps: 150,
            embedding_points: 1000,
            methods: vec![MethodConfig {
                name: "rotation".into(),
                run: Some(pre.run.out.clone()),
                pretrain: None,
            }],
            ..StudyConfig::default()
        },
        transfer: tr.clone(),
    }
}

pub fn demo(out: &Path, quiet: bool) -> Result<DemoOutcome, Error> {
    let started = Instant::now();
    let (pre, tr) = demo_configs(out);
    let pretrain = pretrain(&pre, quiet)?;
    let transfer = transfer(EncoderSource::Run(&pre.run.out), &pre.data, &tr, out, quiet)?;
    write_atomic(&out.join("summary.txt"), transfer.table().as_bytes())?;
    let study = crate::study::run_study(&demo_study(out, &pre, &tr), quiet)?;
    Ok(DemoOutcome {
        pretrain,
        transfer,
        report: study.report,
        seconds: started.elapsed().as_secs_f64(),
    })
}
