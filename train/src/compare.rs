//! The `compare` subcommand: is one recipe better than another? Two genotype folders of
//! `hands-search cv` runs on the same folds of the same data are paired fold by fold, over
//! the folds both have finished (so a probe stopped after a few folds reads against a
//! finished run): each fold's mean per-class accuracy of both and the difference, with the
//! difference per side of the hand, then the mean ± std of the difference and how many
//! folds each is ahead on. Nothing is trained or written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hands_models::card::MeanStd;
use serde::Serialize;

use crate::cv_genotype::CvGenotype;
use crate::cv_report::FoldFigures;

/// Settings of `hands-search compare`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CompareArgs {
    /// The reference: a genotype folder of a cross-validation run (`RUN/GENOTYPE`, the folder
    /// holding fold-0/, fold-1/, ...: e.g. runs/cv32-light40-last-vflip/pretrained).
    #[cfg_attr(feature = "cli", arg(value_name = "BASE_DIR"))]
    pub base: PathBuf,
    /// The genotype folder measured against it, of a run on the same folds of the same data.
    #[cfg_attr(feature = "cli", arg(value_name = "CANDIDATE_DIR"))]
    pub candidate: PathBuf,
    /// Pair the figures of one source's test images only: `originals` (photos as shot, like
    /// a user's) or `copies` (the square copies).
    #[cfg_attr(feature = "cli", arg(long, value_name = "SOURCE"))]
    pub source: Option<String>,
    /// Print the comparison as JSON instead of the table.
    #[cfg_attr(feature = "cli", arg(long))]
    pub json: bool,
}

/// `hands-search compare`.
pub fn run_compare(args: &CompareArgs) -> Result<()> {
    let comparison = compare(&args.base, &args.candidate, args.source.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", comparison.table());
    }
    Ok(())
}

/// One fold finished by both.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedFold {
    /// The fold's index.
    pub fold: usize,
    /// The reference's figures on it (without flip averaging).
    pub base: FoldFigures,
    /// The candidate's figures on it.
    pub candidate: FoldFigures,
    /// Candidate minus reference, mean per-class accuracy.
    pub difference: f64,
    /// Candidate minus reference, accuracy per side of the hand (those both measured).
    pub side_differences: BTreeMap<String, f64>,
}

/// Two cross-validations of the same folds, paired fold by fold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The reference's genotype folder.
    pub base: String,
    /// The candidate's genotype folder.
    pub candidate: String,
    /// The source whose test images alone were paired, if one was chosen.
    pub source: Option<String>,
    /// The folds both have finished, in order.
    pub paired: Vec<PairedFold>,
    /// The folds one or both have not finished.
    pub unpaired: Vec<usize>,
    /// Mean ± std over the paired folds of the difference in mean per-class accuracy
    /// (candidate minus reference); absent without paired folds.
    pub difference: Option<MeanStd>,
    /// Paired folds on which the candidate is ahead.
    pub candidate_ahead: usize,
    /// Paired folds on which the reference is ahead.
    pub base_ahead: usize,
}

/// Pairs the folds of the genotype folders `base` and `candidate` (refused unless their
/// runs measured the same data on the same folds), on all their test images or on those of
/// `source` (`originals`, `copies`) only.
pub fn compare(base: &Path, candidate: &Path, source: Option<&str>) -> Result<Comparison> {
    let base = CvGenotype::open(base)?;
    let candidate = CvGenotype::open(candidate)?;
    let (dataset, folds) = base.load_folds()?;
    candidate.check_same_folds(&base, &folds, &dataset, "a comparison")?;
    let mut paired = Vec::new();
    let mut unpaired = Vec::new();
    for fold in 0..folds.len() {
        match (
            base.finished_fold(fold, &dataset)?,
            candidate.finished_fold(fold, &dataset)?,
        ) {
            (Some(b), Some(c)) => paired.push(PairedFold::new(
                fold,
                of_source(b.plain, source, &base, fold)?,
                of_source(c.plain, source, &candidate, fold)?,
            )),
            _ => unpaired.push(fold),
        }
    }
    let differences: Vec<f64> = paired.iter().map(|p| p.difference).collect();
    Ok(Comparison {
        base: base.name(),
        candidate: candidate.name(),
        source: source.map(str::to_string),
        difference: (!differences.is_empty()).then(|| MeanStd::of(&differences)),
        candidate_ahead: differences.iter().filter(|&&d| d > 0.0).count(),
        base_ahead: differences.iter().filter(|&&d| d < 0.0).count(),
        paired,
        unpaired,
    })
}

/// A fold's figures, or those of its `source` images (refused, naming the sources it has,
/// when it has none of that source).
fn of_source(
    figures: FoldFigures,
    source: Option<&str>,
    run: &CvGenotype,
    fold: usize,
) -> Result<FoldFigures> {
    let Some(source) = source else {
        return Ok(figures);
    };
    let known: Vec<String> = figures.per_source.keys().cloned().collect();
    let mut per_source = figures.per_source;
    per_source.remove(source).with_context(|| {
        format!(
            "{}, fold {fold}: no test images of source `{source}` (it has {})",
            run.name(),
            if known.is_empty() {
                "no known sources".to_string()
            } else {
                known.join(", ")
            }
        )
    })
}

impl PairedFold {
    fn new(fold: usize, base: FoldFigures, candidate: FoldFigures) -> PairedFold {
        let side_differences = base
            .per_side
            .iter()
            .filter_map(|(side, b)| Some((side.clone(), candidate.per_side.get(side)? - b)))
            .collect();
        PairedFold {
            fold,
            difference: candidate.mean_class_accuracy - base.mean_class_accuracy,
            side_differences,
            base,
            candidate,
        }
    }
}

impl Comparison {
    /// The comparison in Markdown: a row per paired fold, then the summary.
    pub fn table(&self) -> String {
        let sides: Vec<&String> = self
            .paired
            .first()
            .map(|p| p.side_differences.keys().collect())
            .unwrap_or_default();
        let mut out = format!("base: {}\ncandidate: {}\n", self.base, self.candidate);
        if let Some(source) = &self.source {
            let _ = writeln!(out, "test images: {source} only");
        }
        out.push_str("\n| fold | base | candidate | difference |");
        for side in &sides {
            let _ = write!(out, " {side} accuracy difference |");
        }
        out.push_str("\n|---|---|---|---|");
        out.push_str(&"---|".repeat(sides.len()));
        out.push('\n');
        for p in &self.paired {
            let _ = write!(
                out,
                "| {} | {:.3} | {:.3} | {:+.3} |",
                p.fold, p.base.mean_class_accuracy, p.candidate.mean_class_accuracy, p.difference
            );
            for side in &sides {
                match p.side_differences.get(*side) {
                    Some(d) => {
                        let _ = write!(out, " {d:+.3} |");
                    }
                    None => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
        out.push('\n');
        match &self.difference {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "mean per-class accuracy, candidate minus base over {} paired folds: \
                     {:+.3} ± {:.3}; candidate ahead on {}, base on {}",
                    self.paired.len(),
                    d.mean,
                    d.std,
                    self.candidate_ahead,
                    self.base_ahead
                );
            }
            None => out.push_str("no fold finished by both\n"),
        }
        if !self.unpaired.is_empty() {
            let folds: Vec<String> = self.unpaired.iter().map(usize::to_string).collect();
            let _ = writeln!(out, "not finished by both: fold {}", folds.join(", "));
        }
        out
    }
}
