//! Progress display (a bar on a terminal, plain lines otherwise) and the `metrics.jsonl` log.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    quiet: bool,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    start_step: u64,
    /// When a time budget ends the run, if it has one.
    deadline: Option<Instant>,
}

/// Without a bar, a plain progress line at most this often.
const LINE_EVERY: Duration = Duration::from_secs(30);

impl Progress {
    pub fn new(label: &str, total: u64, done: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total).with_position(done);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            label: label.to_string(),
            quiet,
            total,
            done,
            started: now,
            last_line: now,
            start_step: done,
            deadline: None,
        }
    }

    /// A time budget: the plain lines' ETA is then never past its end.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    pub fn step(&mut self, loss: f32, views_per_s: f64) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {loss:.4} {views_per_s:.0} views/s"));
            bar.inc(1);
        } else if !self.quiet && self.last_line.elapsed() >= LINE_EVERY {
            self.last_line = Instant::now();
            let per_step =
                self.started.elapsed().as_secs_f64() / (self.done - self.start_step).max(1) as f64;
            let mut eta = per_step * self.total.saturating_sub(self.done) as f64;
            if let Some(deadline) = self.deadline {
                eta = eta.min(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .as_secs_f64(),
                );
            }
            eprintln!(
                "{} step {}/{} loss {loss:.4} {views_per_s:.0} views/s eta {}",
                self.label,
                self.done,
                self.total,
                indicatif::HumanDuration(Duration::from_secs_f64(eta))
            );
        }
    }

    /// One line per epoch when there is no bar to look at.
    pub fn epoch(&mut self, record: &serde_json::Value) {
        if self.quiet {
            return;
        }
        let mut line = format!(
            "{} epoch {} step {}/{} loss {:.4} acc {:.3} lr {:.4} {:.0} views/s",
            self.label,
            record["epoch"],
            record["step"],
            self.total,
            record["loss"].as_f64().unwrap_or(f64::NAN),
            record["train_acc"].as_f64().unwrap_or(f64::NAN),
            record["lr"].as_f64().unwrap_or(f64::NAN),
            record["views_per_s"].as_f64().unwrap_or(f64::NAN),
        );
        // Monitoring fields, when there are any.
        for (key, name) in [
            ("knn_acc", "knn"),
            ("feature_std", "std"),
            ("effective_rank", "rank"),
            ("heldout_acc", "held-out acc"),
            ("heldout_perplexity", "perplexity"),
        ] {
            if let Some(v) = record[key].as_f64() {
                line.push_str(&format!(" {name} {v:.3}"));
            }
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Appends one JSON object per line.
pub struct MetricsLog {
    file: File,
}

impl MetricsLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            file: OpenOptions::new().create(true).append(true).open(path)?,
        })
    }
    pub fn append(&mut self, record: &serde_json::Value) -> std::io::Result<()> {
        writeln!(self.file, "{record}")?;
        self.file.flush()
    }
}

/// Drop the records of epochs after `last_epoch` from a metrics log, if it exists.
pub fn truncate_after_epoch(path: &Path, last_epoch: usize) -> std::io::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["epoch"].as_u64())
                .is_some_and(|e| e as usize <= last_epoch)
        })
        .collect();
    if kept.len() != text.lines().count() {
        let mut body = kept.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        crate::train::checkpoint::write_atomic(path, body.as_bytes())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}
