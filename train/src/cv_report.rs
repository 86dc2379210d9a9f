//! What a cross-validation measured: each fold's figures (overall, per side and per image
//! source, with and without the flip), the rows of genotypes over the folds with their mean
//! and spread, the `cv.json` report, the majority-class row, and a finished run's figures
//! read back for the recipe of a training (`train --cross-validation`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hands_models::card::{CrossValidation, MeanStd, SourceFigures};
use hands_models::Genotype;
use serde::{Deserialize, Serialize};

use crate::args::cv::CvArgs;
use crate::args::train::TrainArgs;
use crate::eval::Evaluation;
use crate::kept_predictions::{slots, KeptPredictions};
use crate::resume::{self, changed_settings};
use hands_data::{Dataset, Split};
use hands_reports::run_dir::{RunDir, CONFIG, CV_REPORT, FOLD_RESULT, TEST_PREDICTIONS};

/// The figures of one fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldFigures {
    /// Fraction of test images classified correctly.
    pub accuracy: f64,
    /// Mean per-class accuracy.
    pub mean_class_accuracy: f64,
    /// Accuracy per label.
    pub per_class: BTreeMap<String, f64>,
    /// Accuracy per side of the hand (`dorsal`, `palmar`), where the data records aspects.
    pub per_side: BTreeMap<String, f64>,
    /// The same figures for the test images of each source (`originals`, `copies`), where
    /// the images' sources are known (empty in folds measured before sources were).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_source: BTreeMap<String, FoldFigures>,
}

impl FoldFigures {
    /// The figures of an evaluation.
    pub fn of(evaluation: &Evaluation) -> FoldFigures {
        FoldFigures {
            accuracy: evaluation.accuracy,
            mean_class_accuracy: evaluation.mean_class_accuracy,
            per_class: evaluation
                .per_class
                .iter()
                .map(|(label, g)| (label.clone(), g.accuracy))
                .collect(),
            per_side: evaluation
                .per_side()
                .into_iter()
                .map(|(side, g)| (side, g.accuracy))
                .collect(),
            per_source: evaluation
                .per_source
                .iter()
                .map(|(source, e)| (source.clone(), FoldFigures::of(e)))
                .collect(),
        }
    }
}

/// One fold of one genotype: `fold.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    /// The fold (0-based).
    pub fold: usize,
    /// Test images and subjects.
    pub test_images: usize,
    /// Test subjects.
    pub test_subjects: usize,
    /// The epoch whose weights were kept (0 for the majority class and an ensemble).
    pub selected_epoch: usize,
    /// Learnable parameters of the network (0 for the majority class; an ensemble's
    /// members' together).
    pub parameters: usize,
    /// Training seconds (an ensemble's members' together).
    pub train_seconds: f64,
    /// The plain forward pass.
    pub plain: FoldFigures,
    /// Averaged over the image and its mirror image.
    pub flip: FoldFigures,
}

/// Mean ± std of the figures of one genotype over the folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Accuracy.
    pub accuracy: MeanStd,
    /// Mean per-class accuracy.
    pub mean_class_accuracy: MeanStd,
    /// Per label.
    pub per_class: BTreeMap<String, MeanStd>,
    /// Per side of the hand.
    pub per_side: BTreeMap<String, MeanStd>,
    /// The same for each source of images, over the folds that have images of it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_source: BTreeMap<String, Summary>,
}

impl Summary {
    fn of<'a>(folds: impl Iterator<Item = &'a FoldFigures> + Clone) -> Summary {
        let spread = |f: &dyn Fn(&FoldFigures) -> Option<f64>| {
            MeanStd::of(&folds.clone().filter_map(f).collect::<Vec<f64>>())
        };
        let keys = |f: &dyn Fn(&FoldFigures) -> Vec<String>| -> BTreeSet<String> {
            folds.clone().flat_map(f).collect()
        };
        Summary {
            accuracy: spread(&|f| Some(f.accuracy)),
            mean_class_accuracy: spread(&|f| Some(f.mean_class_accuracy)),
            per_class: keys(&|f| f.per_class.keys().cloned().collect())
                .into_iter()
                .map(|k| {
                    let s = spread(&|f| f.per_class.get(&k).copied());
                    (k, s)
                })
                .collect(),
            per_side: keys(&|f| f.per_side.keys().cloned().collect())
                .into_iter()
                .map(|k| {
                    let s = spread(&|f| f.per_side.get(&k).copied());
                    (k, s)
                })
                .collect(),
            per_source: keys(&|f| f.per_source.keys().cloned().collect())
                .into_iter()
                .map(|k| {
                    let of_source: Vec<&FoldFigures> =
                        folds.clone().filter_map(|f| f.per_source.get(&k)).collect();
                    (k, Summary::of(of_source.iter().copied()))
                })
                .collect(),
        }
    }
}

/// One row of the table: a genotype (or the majority class) on every fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What was measured: the genotype argument, or `majority class`.
    pub name: String,
    /// Learnable parameters of the network (0 for the majority class).
    pub parameters: usize,
    /// Each fold.
    pub folds: Vec<FoldResult>,
    /// The plain forward pass over the folds.
    pub plain: Summary,
    /// With flip averaging.
    pub flip: Summary,
}

impl Row {
    /// The row of `folds`, with its mean ± std over them.
    pub(crate) fn new(name: String, folds: Vec<FoldResult>) -> Row {
        Row {
            parameters: folds.first().map_or(0, |f| f.parameters),
            plain: Summary::of(folds.iter().map(|f| &f.plain)),
            flip: Summary::of(folds.iter().map(|f| &f.flip)),
            name,
            folds,
        }
    }
}

/// `cv.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvReport {
    /// How the figures were made, in words.
    pub protocol: String,
    /// Number of folds.
    pub folds: usize,
    /// The seed of the folds and splits (and of the training, without `train_seed`).
    pub seed: u64,
    /// The seed of the training, where it is not `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seed: Option<u64>,
    /// The data.
    pub data: String,
    /// Images and subjects of the data.
    pub images: usize,
    /// Subjects of the data.
    pub subjects: usize,
    /// The majority class first, then each genotype.
    pub rows: Vec<Row>,
}

impl CvReport {
    /// The table in Markdown: one row per genotype, mean ± std over the folds.
    pub fn table(&self) -> String {
        let labels: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| r.plain.per_class.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let sides: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| r.plain.per_side.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let sources: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| r.plain.per_source.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .rev() // `originals` first: the figure for users' photos
            .collect();
        let mut out = String::new();
        let mut header = vec!["".to_string(), "parameters".into()];
        for source in &sources {
            header.push(format!("{source}: mean per-class"));
            header.extend(sides.iter().map(|side| format!("{source}: {side}")));
        }
        header.extend(["accuracy".into(), "mean per-class".into()]);
        header.extend(labels.iter().cloned());
        header.extend(sides.iter().cloned());
        header.push("mean per-class, flip TTA".into());
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for row in &self.rows {
            let get = |m: &BTreeMap<String, MeanStd>, k: &String| {
                m.get(k).map_or("-".to_string(), MeanStd::to_string)
            };
            let mut cells = vec![row.name.clone(), row.parameters.to_string()];
            for source in &sources {
                match row.plain.per_source.get(source) {
                    Some(figures) => {
                        cells.push(figures.mean_class_accuracy.to_string());
                        cells.extend(sides.iter().map(|side| get(&figures.per_side, side)));
                    }
                    None => cells.extend(std::iter::repeat_n("-".to_string(), 1 + sides.len())),
                }
            }
            cells.extend([
                row.plain.accuracy.to_string(),
                row.plain.mean_class_accuracy.to_string(),
            ]);
            cells.extend(labels.iter().map(|l| get(&row.plain.per_class, l)));
            cells.extend(sides.iter().map(|s| get(&row.plain.per_side, s)));
            cells.push(row.flip.mean_class_accuracy.to_string());
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

impl CvReport {
    /// The row of `genotype` as a model card's cross-validation section (with the
    /// majority class's accuracy on the same folds).
    pub fn card_section(&self, genotype: &str) -> Option<CrossValidation> {
        let row = self.rows.iter().find(|r| r.name == genotype)?;
        let majority = self.rows.iter().find(|r| r.name == MAJORITY)?;
        Some(CrossValidation {
            folds: self.folds,
            protocol: self.protocol.clone(),
            images: self.images,
            subjects: self.subjects,
            accuracy: row.plain.accuracy,
            mean_class_accuracy: row.plain.mean_class_accuracy,
            per_class: row.plain.per_class.clone(),
            per_side: row.plain.per_side.clone(),
            majority_accuracy: majority.plain.accuracy,
            per_source: row
                .plain
                .per_source
                .iter()
                .map(|(source, s)| {
                    let figures = SourceFigures {
                        accuracy: s.accuracy,
                        mean_class_accuracy: s.mean_class_accuracy,
                        per_class: s.per_class.clone(),
                        per_side: s.per_side.clone(),
                    };
                    (source.clone(), figures)
                })
                .collect(),
        })
    }
}

/// The name of the majority-class row.
pub const MAJORITY: &str = "majority class";

impl FoldResult {
    /// The result saved in a fold's run folder, if the fold is done.
    pub(crate) fn read(fold_run: &RunDir) -> Result<Option<FoldResult>> {
        let path = fold_run.file(FOLD_RESULT);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let result = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a fold result", path.display()))?;
        Ok(Some(result))
    }
}

impl FoldResult {
    /// A fold measured before image sources were reported, measured again from its kept
    /// `test_predictions.csv` (`test`: the fold's test images) so that it has the
    /// per-source figures too; as it is when it has them or the images' sources are unknown.
    pub(crate) fn with_sources(
        self,
        dataset: &Dataset,
        test: &[usize],
        fold_run: &RunDir,
    ) -> Result<FoldResult> {
        let known = test
            .iter()
            .any(|&i| dataset.samples()[i].image_source.is_some());
        if !known || !self.plain.per_source.is_empty() {
            return Ok(self);
        }
        let path = fold_run.file(TEST_PREDICTIONS);
        let kept = KeptPredictions::read(&path, dataset.labels(), &slots(dataset, test))
            .with_context(|| format!("{}: measuring it per image source", path.display()))?;
        let figures = |probabilities: &[Vec<f32>]| {
            let rows: Vec<&[f32]> = probabilities.iter().map(Vec::as_slice).collect();
            FoldFigures::of(&Evaluation::from_probabilities(
                "test", dataset, test, &rows,
            ))
        };
        Ok(FoldResult {
            plain: figures(&kept.plain),
            flip: figures(&kept.flip),
            ..self
        })
    }
}

/// The cross-validated figures of a training's recipe: the row of `genotype` in the
/// finished cross-validation run `dir`, whose training settings must be those of `args`
/// (the genotype, run folder, split, seed, device and resume settings aside) on the same
/// data.
pub fn recipe_figures(
    dir: &Path,
    args: &TrainArgs,
    genotype: &Genotype,
) -> Result<CrossValidation> {
    let read = |name: &str| -> Result<String> {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "--cross-validation {}: cannot read {} (is it a finished `hands-search cv` run?)",
                dir.display(),
                path.display()
            )
        })
    };
    let config: CvArgs = serde_json::from_str(&read(CONFIG)?)
        .with_context(|| format!("{}: not a cross-validation config", dir.display()))?;
    let report: CvReport = serde_json::from_str(&read(CV_REPORT)?)
        .with_context(|| format!("{}: not a cross-validation report", dir.display()))?;
    let ignore: Vec<&str> = resume::PER_INVOCATION
        .into_iter()
        .chain([
            "genotype",
            "split_file",
            "test_share",
            "cross_validation",
            "seed",
        ])
        .collect();
    let changes = changed_settings(&config.train, args, None, &ignore)?;
    if !changes.is_empty() {
        let list: Vec<String> = changes.iter().map(ToString::to_string).collect();
        bail!(
            "--cross-validation {}: it measured other settings than this training's: {}",
            dir.display(),
            list.join("; ")
        );
    }
    let row = config
        .genotypes()
        .into_iter()
        .find(|name| Genotype::resolve(name).is_ok_and(|g| g == *genotype))
        .with_context(|| {
            format!(
                "--cross-validation {}: none of its genotypes ({}) is {}",
                dir.display(),
                config.genotypes().join(", "),
                args.genotype
            )
        })?;
    report
        .card_section(&row)
        .with_context(|| format!("{}: cv.json has no row {row}", dir.display()))
}

/// The majority class of each fold's training subjects, answered for every test image.
pub(crate) fn majority_row(dataset: &Dataset, splits: &[(Split, PathBuf)]) -> Row {
    let folds = splits
        .iter()
        .enumerate()
        .map(|(fold, (split, _))| {
            let majority = (0..split.train.label_images.len())
                .max_by_key(|&c| (split.train.label_images[c], std::cmp::Reverse(c)))
                .unwrap_or(0);
            let test = split.test.indices(dataset);
            let evaluation = Evaluation::from_predictions(
                "test",
                dataset,
                &test,
                &vec![majority; test.len()],
                &vec![0.0; test.len()],
            );
            let figures = FoldFigures::of(&evaluation);
            FoldResult {
                fold,
                test_images: evaluation.images,
                test_subjects: evaluation.subjects,
                selected_epoch: 0,
                parameters: 0,
                train_seconds: 0.0,
                plain: figures.clone(),
                flip: figures,
            }
        })
        .collect();
    Row::new(MAJORITY.to_string(), folds)
}
