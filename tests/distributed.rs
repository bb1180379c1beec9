//! Training across processes on MPI. The tests that start ranks need a build with the `mpi`
//! feature and OpenMPI's `mpirun` (`.ci/run` installs it):
//! `cargo test --release --features mpi --test distributed`. They run 2 ranks on this machine,
//! over shared memory and loopback.

mod common;

use std::process::Command;

use common::tiny_config;

/// A process that a launcher started as one of several refuses to train alone when the build
/// has no MPI (each rank would otherwise write the same run directory).
#[cfg(not(feature = "mpi"))]
#[test]
fn a_rank_of_a_build_without_mpi_refuses_to_train_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args(["pretrain", "--config", cfg.to_str().unwrap(), "--quiet"])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    common::assert_clean_failure(&out, "without the 'mpi' feature");
    assert!(!dir.path().join("run").exists(), "nothing may be written");
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use super::*;
    use common::stderr;
    use std::path::Path;
    use std::process::Output;
    use std::time::{Duration, Instant};

    /// `mpirun` with `ranks` ranks of pretext on this machine (root in containers, more ranks
    /// than cores allowed, loopback only). `apps` are the ranks' arguments, one group per rank
    /// when they differ.
    fn mpirun(ranks: usize, args: &[&str]) -> Command {
        let mut c = Command::new("mpirun");
        c.args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            &ranks.to_string(),
        ])
        .args([
            "--mca",
            "btl_tcp_if_include",
            "lo",
            "--mca",
            "oob_tcp_if_include",
            "lo",
        ])
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .arg(env!("CARGO_BIN_EXE_pretext"))
        .args(args)
        .args(["--quiet", "--threads", "1"]);
        c
    }

    fn run(mut c: Command) -> Output {
        c.output()
            .expect("mpirun runs (Debian: apt-get install openmpi-bin libopenmpi-dev)")
    }

    /// `tiny_config` with `line` added to its `[section]` (which it has).
    fn tiny_config_with(dir: &Path, section: &str, line: &str) -> std::path::PathBuf {
        let cfg = tiny_config(dir, "");
        let header = format!("[{section}]\n");
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(text.contains(&header), "tiny_config has no [{section}]");
        std::fs::write(
            &cfg,
            text.replacen(&header, &format!("{header}{line}\n"), 1),
        )
        .unwrap();
        cfg
    }

    /// The trained parameters of a run's encoder, by name (BatchNorm's running statistics left
    /// out: each rank keeps its own, and rank 0's are saved).
    fn trained_parameters(run: &Path) -> Vec<(String, Vec<f32>)> {
        encoder_tensors(run, |name| {
            !name.contains("running") && !name.contains("num_batches")
        })
    }

    /// The float tensors of a run's encoder whose names `keep` accepts, by name.
    fn encoder_tensors(run: &Path, keep: impl Fn(&str) -> bool) -> Vec<(String, Vec<f32>)> {
        let bytes = std::fs::read(run.join("encoder.safetensors")).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut out: Vec<(String, Vec<f32>)> = tensors
            .tensors()
            .into_iter()
            .filter(|(name, view)| keep(name) && view.dtype() == safetensors::Dtype::F32)
            .map(|(name, view)| {
                let values = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                (name, values)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn largest_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .flat_map(|((na, va), (nb, vb))| {
                assert_eq!(na, nb);
                va.iter().zip(vb).map(|(x, y)| (x - y).abs())
            })
            .fold(0.0, f32::max)
    }

    /// 2 ranks with half the batch each end where 1 process ends with the whole batch on as
    /// many devices in all, whose BatchNorm normalises each device's share separately: the
    /// gradients are all-reduced by each rank's share, and SimCLR's negatives are gathered from
    /// every device of every rank. `per_rank` devices on each rank (`--devices`), twice as
    /// many in the one process.
    fn two_ranks_train_like_one_process(task: &str, per_rank: usize) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny_config(dir.path(), "");
        let cfg = cfg.to_str().unwrap();
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        let devices = |n: usize| vec!["cpu"; n].join(",");
        let args = |out: &Path, devices: String| {
            let out = out.to_str().unwrap();
            [
                "--devices",
                &devices,
                "pretrain",
                "--config",
                cfg,
                "--task",
                task,
            ]
            .into_iter()
            .chain(["--max-steps", "6", "--out", out])
            .map(String::from)
            .collect::<Vec<_>>()
        };
        let single = Command::new(env!("CARGO_BIN_EXE_pretext"))
            .args(args(&one, devices(2 * per_rank)))
            .args(["--quiet", "--threads", "1"])
            .output()
            .unwrap();
        assert!(single.status.success(), "{}", stderr(&single));
        let args = args(&two, devices(per_rank));
        let ranks = run(mpirun(
            2,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        assert!(ranks.status.success(), "{}", stderr(&ranks));
        let summaries = String::from_utf8_lossy(&ranks.stdout);
        assert_eq!(
            summaries.lines().count(),
            1,
            "rank 0 alone prints: {summaries}"
        );
        let (a, b) = (trained_parameters(&one), trained_parameters(&two));
        let worst = largest_difference(&a, &b);
        assert!(worst < 1e-5, "{task}: parameters differ by {worst}");
        let results = common::json(&two.join("results.json"));
        assert_eq!(results["steps"], 6, "{results}");
        let metrics = std::fs::read_to_string(two.join("metrics.jsonl")).unwrap();
        assert!(metrics.contains("\"ranks\":2"), "{metrics}");
    }

    #[test]
    fn two_ranks_train_a_classifier_task_like_one_process_of_two_devices() {
        two_ranks_train_like_one_process("rotation", 1);
    }

    #[test]
    fn two_ranks_train_simclr_with_gathered_negatives_like_one_process_of_two_devices() {
        two_ranks_train_like_one_process("simclr", 1);
    }

    /// `--devices` inside each rank: one data-parallel path over devices and ranks.
    #[test]
    fn two_ranks_of_two_devices_train_simclr_like_one_process_of_four_devices() {
        two_ranks_train_like_one_process("simclr", 2);
    }

    /// With `train.sync_batchnorm`, 2 ranks normalise by the global batch's statistics, so
    /// they end where 1 process ends with the whole batch on one device: the parameters and
    /// BatchNorm's running statistics alike (SimCLR: the projector's BatchNorm is synchronised
    /// too).
    #[test]
    fn two_ranks_with_synchronised_batchnorm_train_like_one_process_with_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny_config_with(dir.path(), "train", "sync_batchnorm = true");
        let cfg = cfg.to_str().unwrap();
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        let args = |out: &Path| {
            let out = out.to_str().unwrap();
            [
                "pretrain",
                "--config",
                cfg,
                "--task",
                "simclr",
                "--max-steps",
                "6",
                "--out",
                out,
            ]
            .map(String::from)
        };
        let single = Command::new(env!("CARGO_BIN_EXE_pretext"))
            .args(args(&one))
            .args(["--quiet", "--threads", "1"])
            .output()
            .unwrap();
        assert!(single.status.success(), "{}", stderr(&single));
        let args = args(&two);
        let ranks = run(mpirun(
            2,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        assert!(ranks.status.success(), "{}", stderr(&ranks));
        let everything = |_: &str| true;
        let (a, b) = (
            encoder_tensors(&one, everything),
            encoder_tensors(&two, everything),
        );
        assert!(a.iter().any(|(name, _)| name.contains("running_var")));
        let worst = largest_difference(&a, &b);
        assert!(
            worst < 1e-5,
            "parameters and running statistics differ by {worst}"
        );
    }

    #[test]
    fn ranks_with_different_configs_are_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny_config(dir.path(), "");
        let cfg = cfg.to_str().unwrap();
        let binary = env!("CARGO_BIN_EXE_pretext");
        // MPMD: rank 0 and rank 1 start with different learning rates.
        let out = run({
            let mut c = mpirun(1, &["pretrain", "--config", cfg, "--lr", "0.1"]);
            c.args([
                ":", "-np", "1", binary, "pretrain", "--config", cfg, "--lr", "0.2",
            ])
            .args(["--quiet", "--threads", "1"]);
            c
        });
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("rank 1 of 2 has another config than rank 0"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(!dir.path().join("run/checkpoint").exists());
    }

    /// A file that one rank cannot decode stops that rank with the file's name, and the other
    /// with a line saying another rank failed, instead of leaving it waiting; the work done is
    /// checkpointed.
    #[test]
    fn a_bad_file_in_one_ranks_share_stops_every_rank_with_the_work_kept() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        for i in 0..64u8 {
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                image::Rgb([x as u8 * 15, y as u8 * 15, i.wrapping_mul(37)])
            });
            img.save(images.join(format!("{i:03}.png"))).unwrap();
        }
        let bad = images.join("040.png");
        std::fs::write(&bad, b"\x89PNG\r\n\x1a\n not a png").unwrap();
        let run_dir = dir.path().join("run");
        let (images, out) = (images.to_str().unwrap(), run_dir.to_str().unwrap());
        let args = format!(
            "pretrain --data {images} --stream always --image-size 16 --task rotation \
             --model convnet4 --width 4 --epochs 2 --batch-size 16 --out {out}"
        );
        let out = run(mpirun(2, &args.split_whitespace().collect::<Vec<_>>()));
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("040.png: cannot decode image"), "{err}");
        assert!(
            err.contains("another rank could not make its share of batch"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            run_dir.join("checkpoint").exists(),
            "the work is kept: {err}"
        );
    }

    /// The process id of rank `rank` of the pretext ranks started with a path under `dir`.
    fn rank_pid(dir: &Path, rank: usize) -> Option<u32> {
        let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
        let dir = dir.to_str().unwrap().as_bytes();
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let environ = std::fs::read(entry.path().join("environ")).ok()?;
                let has =
                    |bytes: &[u8], s: &str| bytes.split(|&b| b == 0).any(|a| a == s.as_bytes());
                let ours = cmdline.split(|&b| b == 0).any(|a| a.starts_with(dir))
                    && cmdline.starts_with(env!("CARGO_BIN_EXE_pretext").as_bytes());
                (ours && has(&environ, &wanted)).then_some(pid)
            })
    }

    fn signal(pid: u32, name: &str) {
        let _ = Command::new("kill").args([name, &pid.to_string()]).status();
    }

    /// A hung rank (stopped with SIGSTOP: `mpirun` does not notice) makes the other exit with
    /// one clear line through pretext's collective timeout; the run then resumes on 2 ranks,
    /// and not on 1.
    #[test]
    fn a_hung_rank_stops_the_run_within_the_timeout_and_it_resumes_on_as_many_ranks() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny_config_with(dir.path(), "run", "collective_timeout_s = 10");
        let run_dir = dir.path().join("run");
        let cfg = cfg.to_str().unwrap();
        let mut child = mpirun(2, &["pretrain", "--config", cfg, "--epochs", "60"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !run_dir.join("checkpoint").exists() {
            assert!(Instant::now() < deadline, "no checkpoint was written");
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid = rank_pid(dir.path(), 1).expect("rank 1 is running");
        signal(pid, "-STOP");
        let stopped = Instant::now();
        let out = loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            if stopped.elapsed() > Duration::from_secs(90) {
                signal(pid, "-KILL");
                let _ = child.kill();
                panic!("the run did not stop within 90 s of a rank hanging");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let waited = stopped.elapsed();
        signal(pid, "-KILL");
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(waited < Duration::from_secs(60), "took {waited:?}: {err}");
        let line = err
            .lines()
            .find(|l| l.contains("no answer from the other ranks"))
            .unwrap_or_else(|| panic!("no timeout line: {err}"));
        assert!(line.starts_with("error: rank 0 of 2"), "{line}");
        assert!(line.contains("10 s"), "{line}");

        let alone = common::pretext(&["resume", run_dir.to_str().unwrap()]);
        common::assert_clean_failure(&alone, "written by a run on 2 rank(s)");

        let resumed = run(mpirun(2, &["resume", run_dir.to_str().unwrap()]));
        assert!(resumed.status.success(), "{}", stderr(&resumed));
        let results = common::json(&run_dir.join("results.json"));
        let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), 60, "every epoch recorded once");
        assert!(results["steps"].as_u64().unwrap() > 0);
    }
}
