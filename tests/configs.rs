//! Every ready-made config in configs/ parses and passes validation.

use pretext::config::{PretrainConfig, read_toml};
use pretext::study::read_study;

#[test]
fn every_shipped_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("study-") {
            let study = read_study(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            study.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            for m in &study.study.methods {
                let config = m
                    .pretrain
                    .as_ref()
                    .expect("shipped studies pretrain their methods");
                assert!(
                    dir.parent().unwrap().join(config).exists(),
                    "{name}: {}",
                    config.display()
                );
            }
        } else {
            let cfg: PretrainConfig = read_toml(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        checked += 1;
    }
    assert!(checked >= 14, "{checked} configs");
}
