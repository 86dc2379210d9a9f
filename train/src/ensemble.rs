//! The `ensemble` subcommand: would averaging several networks help? Its members are
//! genotype folders of `hands-search cv` runs on the same folds of the same data; each test
//! image's class probabilities are averaged over the members (read from their kept
//! `test_predictions.csv`) and measured fold by fold as `cv` measures one network, in a
//! table beside the majority class and each member alone. Nothing is trained or written.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cv_genotype::CvGenotype;
use crate::cv_report::{majority_row, CvReport, FoldFigures, FoldResult, Row};
use crate::eval::Evaluation;
use crate::kept_predictions::{slots, KeptPredictions};
use hands_data::{Dataset, Split};
use hands_reports::run_dir::TEST_PREDICTIONS;

/// Settings of `hands-search ensemble`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct EnsembleArgs {
    /// Genotype folders of cross-validation runs (`RUN/GENOTYPE`, the folder holding
    /// fold-0/, fold-1/, ...: e.g. runs/cv32-light40-last/pretrained), every fold finished,
    /// all on the same folds of the same data. One folder alone reproduces its row.
    #[cfg_attr(feature = "cli", arg(required = true, value_name = "GENOTYPE_DIR"))]
    pub members: Vec<PathBuf>,
    /// Print the report as JSON (cv.json's format) instead of the table.
    #[cfg_attr(feature = "cli", arg(long))]
    pub json: bool,
}

/// `hands-search ensemble`.
pub fn run_ensemble(args: &EnsembleArgs) -> Result<()> {
    let report = ensemble(&args.members)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print!("{}", report.table());
    println!("\nmean per-class accuracy per fold:");
    for row in &report.rows {
        let folds: Vec<String> = row
            .folds
            .iter()
            .map(|f| format!("{:.3}", f.plain.mean_class_accuracy))
            .collect();
        println!("- {}: {}", row.name, folds.join(" "));
    }
    Ok(())
}

/// The report of averaging `members` (genotype folders of cross-validation runs on the same
/// folds): the majority class, each member as its run measured it, then the ensemble (the
/// mean of the members' probabilities, with and without their flip averaging).
pub fn ensemble(members: &[PathBuf]) -> Result<CvReport> {
    let members: Vec<CvGenotype> = members
        .iter()
        .map(|dir| CvGenotype::open(dir))
        .collect::<Result<_>>()?;
    let first = members.first().context("no genotype folder given")?;
    let data = &first.config.train.data;
    let (dataset, folds) = first.load_folds()?;
    for member in &members[1..] {
        member.check_same_folds(first, &folds, &dataset, "an ensemble")?;
    }
    let splits = (0..folds.len())
        .map(|fold| {
            let path = first.run.fold_split(fold);
            let split = Split::load(&path)?;
            split.check(&dataset, &path)?;
            Ok((split, path))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut rows = vec![majority_row(&dataset, &splits)];
    for member in &members {
        rows.push(Row::new(
            member.name(),
            member.fold_results(folds.len(), &dataset)?,
        ));
    }
    let averaged = splits
        .iter()
        .enumerate()
        .map(|(fold, (split, _))| {
            let member_folds: Vec<&FoldResult> = rows[1..].iter().map(|r| &r.folds[fold]).collect();
            let averaged = AveragedFold::new(&dataset, fold, split.test.indices(&dataset));
            averaged.measure(&members, &member_folds)
        })
        .collect::<Result<Vec<_>>>()?;
    rows.push(Row::new(format!("ensemble of {}", members.len()), averaged));

    let names: Vec<String> = members.iter().map(CvGenotype::name).collect();
    Ok(CvReport {
        protocol: format!(
            "the class probabilities of {} cross-validation trainings on the same {}-fold \
             split by subject (seed {}) averaged per test image: {}",
            members.len(),
            folds.len(),
            first.config.train.run.seed,
            names.join(", ")
        ),
        folds: folds.len(),
        seed: first.config.train.run.seed,
        train_seed: None,
        data: data.path.display().to_string(),
        images: dataset.len(),
        subjects: dataset.subjects().len(),
        rows,
    })
}

/// One fold's test images, whose probabilities are averaged over the members.
struct AveragedFold<'a> {
    dataset: &'a Dataset,
    fold: usize,
    /// The fold's test images (dataset indices).
    test: Vec<usize>,
    /// The position in `test` of each test image's path, as `test_predictions.csv` writes it.
    slot_of: HashMap<String, usize>,
}

impl<'a> AveragedFold<'a> {
    fn new(dataset: &'a Dataset, fold: usize, test: Vec<usize>) -> Self {
        let slot_of = slots(dataset, &test);
        AveragedFold {
            dataset,
            fold,
            test,
            slot_of,
        }
    }

    /// The fold's figures of the members' mean probabilities (`member_folds`: each member's
    /// own result on the fold, for the parameters and training time they add up to).
    fn measure(&self, members: &[CvGenotype], member_folds: &[&FoldResult]) -> Result<FoldResult> {
        let labels = self.dataset.labels().len();
        let mut plain = vec![vec![0f32; labels]; self.test.len()];
        let mut flip = plain.clone();
        for member in members {
            let path = member.fold(self.fold).file(TEST_PREDICTIONS);
            let kept = KeptPredictions::read(&path, self.dataset.labels(), &self.slot_of)?;
            add_rows(&mut plain, &kept.plain);
            add_rows(&mut flip, &kept.flip);
        }
        let share = 1.0 / members.len() as f32;
        for p in plain.iter_mut().chain(flip.iter_mut()).flatten() {
            *p *= share;
        }
        let evaluate = |probabilities: &[Vec<f32>]| {
            let rows: Vec<&[f32]> = probabilities.iter().map(Vec::as_slice).collect();
            Evaluation::from_probabilities("test", self.dataset, &self.test, &rows)
        };
        let (plain, flip) = (evaluate(&plain), evaluate(&flip));
        Ok(FoldResult {
            fold: self.fold,
            test_images: plain.images,
            test_subjects: plain.subjects,
            selected_epoch: 0,
            parameters: member_folds.iter().map(|f| f.parameters).sum(),
            train_seconds: member_folds.iter().map(|f| f.train_seconds).sum(),
            plain: FoldFigures::of(&plain),
            flip: FoldFigures::of(&flip),
        })
    }
}

/// Adds `rows` of probabilities to `sums`, element by element.
fn add_rows(sums: &mut [Vec<f32>], rows: &[Vec<f32>]) {
    for (sum, row) in sums.iter_mut().zip(rows) {
        sum.iter_mut().zip(row).for_each(|(s, p)| *s += p);
    }
}
