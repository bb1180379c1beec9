//! `pretext transfer` with a chosen labelled set (`--labels-file`) and with random ones
//! (`--random N`), end to end on tiny synthetic data.

mod common;
use common::*;

#[test]
fn transfer_labels_a_listed_set_or_a_random_one_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let run = dir.path().join("run");
    let o = pretext(&[
        "pretrain",
        "--config",
        cfg.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let transfer = |subset: &[&str], out: &str| {
        let out = dir.path().join(out);
        let mut args = vec![
            "transfer",
            "--run",
            run.to_str().unwrap(),
            "--mode",
            "probe",
        ];
        args.extend_from_slice(subset);
        args.extend(["--out", out.to_str().unwrap()]);
        (pretext(&args), out)
    };

    // Twelve rows without a path (a list made by hand), one naming the image at its row.
    let list = dir.path().join("sel.csv");
    let mut text = String::from("path,split,index,label,reason\n");
    for i in 0..12 {
        text += &format!(",train,{},,hand-picked\n", i * 7);
    }
    text += "synthetic#5,train,5,,named\n";
    std::fs::write(&list, text).unwrap();
    let (o, out) = transfer(&["--labels-file", list.to_str().unwrap()], "listed");
    assert!(o.status.success(), "{}", stderr(&o));
    let results = json(&out.join("results.json"));
    assert_eq!(results["subset"], "13 images listed in sel.csv");
    assert_eq!(results["labelled_images"], 13);
    assert!(results["labels_per_class"].is_null());
    assert!(
        stdout(&o).contains("13 images listed in sel.csv"),
        "{}",
        stdout(&o)
    );
    let per_seed = results["results"][0]["per_seed"].as_array().unwrap();
    assert_eq!(per_seed.len(), 2, "the tiny config's two seeds");

    let (o, out) = transfer(&["--random", "20", "--unstratified"], "random");
    assert!(o.status.success(), "{}", stderr(&o));
    let results = json(&out.join("results.json"));
    assert_eq!(results["subset"], "20 random images, unstratified");
    assert_eq!(results["labelled_images"], 20);

    // A list made for another data set names other files: refused, naming the line.
    std::fs::write(
        &list,
        "path,split,index,label,reason\nphotos/cat.jpg,train,3,,\n",
    )
    .unwrap();
    let (o, _) = transfer(&["--labels-file", list.to_str().unwrap()], "mismatch");
    assert_clean_failure(&o, "sel.csv:2");
    assert!(stderr(&o).contains("synthetic#3"), "{}", stderr(&o));
}
