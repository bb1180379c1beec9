//! Cluster transfer and `pretext kmeans` from the command line.

mod common;
use common::*;

#[test]
fn cluster_transfer_trains_a_student_on_teacher_clusters() {
    let root = tempfile::tempdir().unwrap();
    let (o, teacher) = pretrain_tiny(root.path(), "teacher", None);
    assert!(o.status.success(), "{}", stderr(&o));
    let student = root.path().join("student");
    let args = [
        "cluster-transfer",
        "--teacher",
        teacher.to_str().unwrap(),
        "--k",
        "8",
        "--no-l2",
        "--epochs",
        "4",
        "--out",
        student.to_str().unwrap(),
    ];
    let o = pretext(&args);
    assert!(o.status.success(), "{}", stderr(&o));

    let results = json(&student.join("results.json"));
    assert_eq!(results["task"], "cluster");
    let clustering = &results["clustering"];
    assert_eq!(clustering["k"], 8);
    let nmi = clustering["train_quality"]["nmi"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&nmi), "{nmi}");
    let labels = pretext::npy::read_labels(&student.join("pseudo_labels.npy")).unwrap();
    assert_eq!(labels.len(), 400);
    assert!(labels.iter().all(|&l| l < 8));

    // The pseudo-labels are exactly k-means (same seed and settings) of the teacher's features,
    // and their NMI is the one `pretext kmeans` reports against the true labels.
    let emb = root.path().join("emb");
    let o = pretext(&[
        "embed",
        "--run",
        teacher.to_str().unwrap(),
        "--out",
        emb.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again = root.path().join("again.npy");
    let o = pretext(&[
        "kmeans",
        emb.join("train_features.npy").to_str().unwrap(),
        "--k",
        "8",
        "--max-iter",
        "100",
        "--out",
        again.to_str().unwrap(),
        "--labels",
        emb.join("train_labels.npy").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pretext::npy::read_labels(&again).unwrap(), labels);
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(report["quality"]["nmi"].as_f64().unwrap(), nmi);
    // The student learns the teacher's clusters on held-out images, well above 1/8 chance.
    let acc = results["pretext_test_acc"].as_f64().unwrap();
    assert!(
        acc > 0.3,
        "student agreement with the teacher's clusters: {acc}"
    );

    // The finished run is not redone: the saved pseudo-labels are reused.
    let before = std::fs::metadata(student.join("clusters.json"))
        .unwrap()
        .modified()
        .unwrap();
    let o = pretext(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = std::fs::metadata(student.join("clusters.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);

    // The student transfers like any pretrained encoder, to the true labels.
    let out = root.path().join("transfer");
    let o = pretext(&[
        "transfer",
        "--run",
        student.to_str().unwrap(),
        "--mode",
        "probe,scratch",
        "--seeds",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        json(&out.join("results.json"))["results"][0]["mean"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    // A student can teach the next one (DeepCluster-style rounds), here through whitened PCA of
    // its stage 3 (16 channels at width 4) pooled to a 2x2 grid.
    let second = root.path().join("second");
    let o = pretext(&[
        "cluster-transfer",
        "--teacher",
        student.to_str().unwrap(),
        "--teacher-stage",
        "3",
        "--teacher-grid",
        "2",
        "--k",
        "6",
        "--pca",
        "4",
        "--whiten",
        "--epochs",
        "1",
        "--out",
        second.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = std::fs::read_to_string(second.join("config.toml")).unwrap();
    assert!(config.contains("whiten = true"), "{config}");
    let clustering = &json(&second.join("results.json"))["clustering"];
    assert_eq!(clustering["k"], 6);
    assert_eq!(clustering["teacher_grid"], 2);
    assert_eq!(clustering["feature_dim"], 64);
    assert_eq!(clustering["clustered_dim"], 4);
    let o = pretext(&[
        "cluster-transfer",
        "--teacher",
        student.to_str().unwrap(),
        "--whiten",
        "--out",
        root.path().join("unwhitened").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "task.cluster.whiten");
}

#[test]
fn kmeans_command_writes_labels_and_scores_them() {
    let dir = tempfile::tempdir().unwrap();
    // Three tight, far-apart groups of 4-D points.
    let mut values = Vec::new();
    let mut truth = Vec::new();
    for i in 0..300 {
        let c = i % 3;
        let jitter = ((i * 37 % 11) as f32 - 5.0) * 0.01;
        values.extend([c as f32 * 10.0 + jitter, -(c as f32) * 5.0, jitter, 1.0]);
        truth.push(c as i64);
    }
    let features = dir.path().join("f.npy");
    let truth_path = dir.path().join("truth.npy");
    let out = dir.path().join("labels.npy");
    pretext::npy::write(&features, &values, &[300, 4]).unwrap();
    pretext::npy::write(&truth_path, &truth, &[300]).unwrap();
    let o = pretext(&[
        "kmeans",
        features.to_str().unwrap(),
        "--k",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--labels",
        truth_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    for key in ["k", "inertia", "iterations", "seconds"] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    assert_eq!(report["quality"]["nmi"].as_f64().unwrap(), 1.0);
    let labels = pretext::npy::read_labels(&out).unwrap();
    assert_eq!(labels.len(), 300);
}

#[test]
fn kmeans_and_cluster_transfer_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("l.npy");
    let out = out.to_str().unwrap();
    let vector = d.join("vector.npy");
    pretext::npy::write(&vector, &[1.0f32, 2.0], &[2]).unwrap();
    let o = pretext(&["kmeans", vector.to_str().unwrap(), "--k", "2", "--out", out]);
    assert_clean_failure(&o, "vector.npy: expected a 2-D array");
    let small = d.join("small.npy");
    pretext::npy::write(&small, &[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let o = pretext(&["kmeans", small.to_str().unwrap(), "--k", "5", "--out", out]);
    assert_clean_failure(&o, "k = 5 is more clusters than the 2 points");
    let nan = d.join("nan.npy");
    pretext::npy::write(&nan, &[1.0f32, f32::NAN], &[1, 2]).unwrap();
    let o = pretext(&["kmeans", nan.to_str().unwrap(), "--k", "1", "--out", out]);
    assert_clean_failure(&o, "nan.npy: row 0 column 1 is NaN");
    let o = pretext(&[
        "kmeans",
        d.join("missing.npy").to_str().unwrap(),
        "--k",
        "1",
        "--out",
        out,
    ]);
    assert_clean_failure(&o, "missing.npy");

    let missing = d.join("no-teacher");
    let o = pretext(&[
        "cluster-transfer",
        "--data",
        "synthetic",
        "--teacher",
        missing.to_str().unwrap(),
        "--out",
        d.join("s").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "no-teacher");
    let o = pretext(&[
        "cluster-transfer",
        "--data",
        "synthetic",
        "--out",
        d.join("s").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "task.cluster.teacher");
}
