//! `scripts/cv-ensemble`: the mean per-class accuracy of averaged fold predictions, and its
//! refusal of folders whose folds differ.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HEADER: &str = "path,subject,label,aspect,p_female,p_male,p_female_flip,p_male_flip";

/// Writes a genotype folder of a cross-validation run: per fold, `(path, label, p_female)`.
fn genotype_dir(root: &Path, name: &str, folds: &[&[(&str, &str, f64)]]) -> PathBuf {
    let dir = root.join(name);
    for (fold, rows) in folds.iter().enumerate() {
        let fold_dir = dir.join(format!("fold-{fold}"));
        std::fs::create_dir_all(&fold_dir).unwrap();
        let mut csv = format!("{HEADER}\n");
        for (path, label, p) in rows.iter() {
            csv.push_str(&format!(
                "{path},s,{label},dorsal right,{p},{},{p},{}\n",
                1.0 - p,
                1.0 - p
            ));
        }
        std::fs::write(fold_dir.join("test_predictions.csv"), csv).unwrap();
    }
    dir
}

fn cv_ensemble(dirs: &[&Path]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cv-ensemble");
    Command::new(script).args(dirs).output().unwrap()
}

#[test]
fn averaging_two_runs_can_right_what_each_gets_wrong() {
    let root = tempfile::tempdir().unwrap();
    // Fold 0: each run gets one image of each class wrong, the other run not the same one.
    let a = genotype_dir(
        root.path(),
        "a",
        &[
            &[
                ("f1", "female", 0.9),
                ("f2", "female", 0.4),
                ("m1", "male", 0.2),
                ("m2", "male", 0.6),
            ],
            &[("f3", "female", 0.8), ("m3", "male", 0.3)],
        ],
    );
    let b = genotype_dir(
        root.path(),
        "b",
        &[
            &[
                ("f1", "female", 0.9),
                ("f2", "female", 0.8),
                ("m1", "male", 0.2),
                ("m2", "male", 0.2),
            ],
            &[("f3", "female", 0.7), ("m3", "male", 0.9)],
        ],
    );
    let alone = cv_ensemble(&[&a]);
    assert!(alone.status.success(), "{alone:?}");
    // Run a alone: fold 0 (1/2 + 1/2) / 2 = 0.5, fold 1 1.0.
    assert_eq!(
        String::from_utf8_lossy(&alone.stdout),
        "mean per-class 0.750 ± 0.354 over 2 folds; per fold 0.500 1.000\n"
    );
    let both = cv_ensemble(&[&a, &b]);
    assert!(both.status.success(), "{both:?}");
    // Averaged: fold 0 0.9, 0.6, 0.2, 0.4, all right; fold 1 0.75 and 0.6: the man is wrong.
    assert_eq!(
        String::from_utf8_lossy(&both.stdout),
        "mean per-class 0.750 ± 0.354 over 2 folds; per fold 1.000 0.500\n"
    );
}

#[test]
fn folders_with_other_test_images_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let a = genotype_dir(
        root.path(),
        "a",
        &[&[("f1", "female", 0.9)], &[("m1", "male", 0.1)]],
    );
    let b = genotype_dir(
        root.path(),
        "b",
        &[&[("f2", "female", 0.9)], &[("m1", "male", 0.1)]],
    );
    let out = cv_ensemble(&[&a, &b]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("f2 is not a test image"), "{stderr}");
}
