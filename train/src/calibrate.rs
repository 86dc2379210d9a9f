//! The `calibrate` subcommand: fits the temperature of a recipe's probabilities (see
//! [`hands_models::calibration`]) on the out-of-fold predictions of its cross-validation (each
//! fold's test images, predicted by the fold's network that never saw their subjects), reports
//! the expected calibration error before and after with a reliability diagram, and writes a
//! copy of a model file of that recipe whose card carries the temperature (its weights
//! unchanged), so that `hands-export` bakes it into the ONNX graph and `eval`, `hands-infer`
//! and the library all give the calibrated probabilities.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use hands_models::calibration::{
    answer, coverage_curve, expected_calibration_error, fit_temperature, mean_log_probabilities,
    reliability, softmax, threshold_for, ReliabilityBin, ECE_BINS,
};
use hands_models::card::{Calibration, PersonFigures};
use hands_models::nn::model_file::ModelFile;
use plotters::prelude::*;
use serde::Serialize;

use crate::cv_genotype::CvGenotype;
use crate::cv_report::FoldResult;
use crate::eval::{load_model, predict_logits};
use crate::train::write_model;
use hands_data::{ChannelStats, Dataset, ImageCache, Loader, Split};
use hands_reports::outputs::Inputs;
use hands_reports::plot::render_svg;

/// Settings of `hands-search calibrate`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CalibrateArgs {
    /// The genotype folder of a finished cross-validation run of the recipe (`RUN/GENOTYPE`,
    /// the folder holding fold-0/, fold-1/, ...): its fold networks predict their test
    /// subjects, and the temperature is fitted on those predictions.
    #[cfg_attr(feature = "cli", arg(value_name = "GENOTYPE_DIR"))]
    pub cv: PathBuf,
    /// A model file of the same recipe (e.g. the final training on every subject) to write
    /// calibrated to --out: the same weights, its card with the temperature.
    #[cfg_attr(feature = "cli", arg(long, requires = "out"))]
    pub model: Option<PathBuf>,
    /// Where the calibrated model file goes (with --model).
    #[cfg_attr(feature = "cli", arg(long, requires = "model"))]
    pub out: Option<PathBuf>,
    /// Also draw the reliability diagram (before and after) into this SVG file.
    #[cfg_attr(feature = "cli", arg(long))]
    pub diagram: Option<PathBuf>,
    /// Print the report as JSON instead of text.
    #[cfg_attr(feature = "cli", arg(long))]
    pub json: bool,
    /// Images per forward pass (1 to 1024).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 64, value_parser = crate::flags::usize_in(crate::flags::BATCH)))]
    pub batch: usize,
}

/// What a calibration measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationReport {
    /// The card section it gives a model.
    pub calibration: Calibration,
    /// Mean negative log-likelihood of the out-of-fold labels before scaling.
    pub nll_before: f64,
    /// And after.
    pub nll_after: f64,
    /// The reliability bins before scaling.
    pub bins_before: Vec<ReliabilityBin>,
    /// And after.
    pub bins_after: Vec<ReliabilityBin>,
}

impl fmt::Display for CalibrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.calibration;
        writeln!(f, "temperature {:.4} ({})", c.temperature, c.fitted_on)?;
        writeln!(
            f,
            "expected calibration error ({} equal-width bins): {:.4} before, {:.4} after",
            c.bins, c.ece_before, c.ece_after
        )?;
        writeln!(
            f,
            "negative log-likelihood: {:.4} before, {:.4} after",
            self.nll_before, self.nll_after
        )?;
        if let Some(person) = &c.per_person {
            writeln!(
                f,
                "one answer per person ({} people, all of each one's photos combined): \
                 accuracy {:.4}, mean per-class {:.4}; their temperature {:.4}, expected \
                 calibration error {:.4} before, {:.4} after",
                person.people,
                person.accuracy,
                person.mean_class_accuracy,
                person.temperature,
                person.ece_before,
                person.ece_after
            )?;
        }
        for target in [0.90, 0.95, 0.97] {
            match threshold_for(&c.coverage, target) {
                Ok(point) => writeln!(
                    f,
                    "accuracy {target:.2}: answers at least {:.2} sure, {:.1}% of the images \
                     kept, accuracy {:.4}, mean per-class {:.4}",
                    point.threshold,
                    100.0 * point.kept,
                    point.accuracy,
                    point.mean_class_accuracy
                )?,
                Err(best) => writeln!(f, "accuracy {target:.2}: not reached (best {best:.4})")?,
            }
        }
        writeln!(
            f,
            "| confidence | images | accuracy | mean confidence before | after |"
        )?;
        writeln!(f, "|---|---|---|---|---|")?;
        for (before, after) in self.bins_before.iter().zip(&self.bins_after) {
            if before.images == 0 && after.images == 0 {
                continue;
            }
            writeln!(
                f,
                "| ({:.3}, {:.3}] | {} / {} | {:.3} / {:.3} | {:.3} | {:.3} |",
                before.lower,
                before.upper,
                before.images,
                after.images,
                before.accuracy,
                after.accuracy,
                before.confidence,
                after.confidence
            )?;
        }
        Ok(())
    }
}

/// `hands-search calibrate`.
pub fn run_calibrate(args: &CalibrateArgs) -> Result<()> {
    let genotype = CvGenotype::open(&args.cv)?;
    let (dataset, folds) = genotype.load_folds()?;
    let mut inputs = Inputs::of_data(&genotype.config.train.data.path, &dataset);
    inputs.add(&args.cv);
    if let Some(model) = &args.model {
        inputs.add(model);
    }
    inputs.check(args.out.iter().chain(&args.diagram))?;
    let OutOfFold {
        logits,
        labels,
        subjects,
    } = out_of_fold_logits(&genotype, &dataset, folds.len(), args.batch)?;
    let fitted_on = format!(
        "out-of-fold predictions of the {}-fold cross-validation {} ({} images of {} subjects)",
        folds.len(),
        genotype.name(),
        labels.len(),
        dataset.subjects().len()
    );
    let report = calibrate(&logits, &labels, &subjects, fitted_on);
    // The files first: a reader that stops reading the report (`| head`) loses none of them.
    if let Some(path) = &args.diagram {
        hands_models::output::write_atomic(path, reliability_diagram(&report)?.as_bytes())?;
        eprintln!("written: {}", path.display());
    }
    if let (Some(model), Some(out)) = (&args.model, &args.out) {
        write_calibrated(model, out, &genotype, &report.calibration)?;
        eprintln!("written: {}", out.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// Fits the temperature of `logits` (one row per image) against `labels` and measures the
/// calibration before and after, per image and per person (`subjects`: each image's);
/// `fitted_on` says what the logits are.
pub fn calibrate(
    logits: &[Vec<f64>],
    labels: &[usize],
    subjects: &[String],
    fitted_on: String,
) -> CalibrationReport {
    let temperature = fit_temperature(logits, labels);
    let probabilities =
        |t: f64| -> Vec<Vec<f64>> { logits.iter().map(|z| softmax(z, t)).collect() };
    let bins_before = reliability(&probabilities(1.0), labels, ECE_BINS);
    let calibrated = probabilities(temperature);
    let bins_after = reliability(&calibrated, labels, ECE_BINS);
    let nll = |t| hands_models::calibration::negative_log_likelihood(logits, labels, t);
    CalibrationReport {
        calibration: Calibration {
            method: "temperature scaling".into(),
            temperature,
            fitted_on,
            images: labels.len(),
            bins: ECE_BINS,
            ece_before: expected_calibration_error(&bins_before),
            ece_after: expected_calibration_error(&bins_after),
            coverage: coverage_curve(&calibrated, labels),
            per_person: Some(per_person(&calibrated, labels, subjects)),
        },
        nll_before: nll(1.0),
        nll_after: nll(temperature),
        bins_before,
        bins_after,
    }
}

/// The figures of one combined answer per person: each subject's photos combined by
/// [`combine_photos`], at the temperature fitted on these people.
fn per_person(probabilities: &[Vec<f64>], labels: &[usize], subjects: &[String]) -> PersonFigures {
    let mut photos: BTreeMap<&str, (usize, Vec<&[f64]>)> = BTreeMap::new();
    for ((row, &label), subject) in probabilities.iter().zip(labels).zip(subjects) {
        let entry = photos.entry(subject).or_insert((label, Vec::new()));
        entry.1.push(row);
    }
    let (mut mean_logs, mut person_labels) = (Vec::new(), Vec::new());
    for (label, rows) in photos.into_values() {
        mean_logs.push(mean_log_probabilities(&rows).expect("a subject has a photo"));
        person_labels.push(label);
    }
    // The mean log-probabilities are the combined answer's logits: fit their temperature.
    let temperature = fit_temperature(&mean_logs, &person_labels);
    let combined_at =
        |t: f64| -> Vec<Vec<f64>> { mean_logs.iter().map(|l| softmax(l, t)).collect() };
    let ece_at = |t: f64| {
        expected_calibration_error(&reliability(&combined_at(t), &person_labels, ECE_BINS))
    };
    let combined = combined_at(temperature);
    let classes = probabilities.first().map_or(0, Vec::len);
    let mut per_class = vec![(0usize, 0usize); classes];
    for (row, &label) in combined.iter().zip(&person_labels) {
        let (predicted, _) = answer(row);
        per_class[label].0 += 1;
        per_class[label].1 += usize::from(predicted == label);
    }
    let present: Vec<f64> = per_class
        .iter()
        .filter(|c| c.0 > 0)
        .map(|&(n, r)| r as f64 / n as f64)
        .collect();
    let people = person_labels.len();
    PersonFigures {
        people,
        accuracy: per_class.iter().map(|c| c.1).sum::<usize>() as f64 / people.max(1) as f64,
        mean_class_accuracy: present.iter().sum::<f64>() / present.len().max(1) as f64,
        temperature,
        ece_before: ece_at(1.0),
        ece_after: ece_at(temperature),
    }
}

/// The out-of-fold predictions of a cross-validation: one entry per test image of every
/// fold.
struct OutOfFold {
    /// The logits of the fold network that never saw the image's subject.
    logits: Vec<Vec<f64>>,
    /// The image's label.
    labels: Vec<usize>,
    /// The image's subject.
    subjects: Vec<String>,
}

/// Each fold network's logits on its fold's test images, all folds together, with the
/// images' labels and subjects.
fn out_of_fold_logits(
    genotype: &CvGenotype,
    dataset: &Dataset,
    folds: usize,
    batch: usize,
) -> Result<OutOfFold> {
    let device = Device::Cpu;
    let mut cache: Option<ImageCache> = None;
    let (mut logits, mut labels, mut subjects) = (Vec::new(), Vec::new(), Vec::new());
    for fold in 0..folds {
        let fold_run = genotype.fold(fold);
        if FoldResult::read(&fold_run)?.is_none() {
            bail!(
                "{}: fold {fold} is not finished: finish the cross-validation first \
                 (`hands-search cv --resume --out {}`)",
                genotype.name(),
                genotype.run.path().display()
            );
        }
        let model = load_model(&fold_run.model(), &device)?;
        if model.card.temperature() != 1.0 {
            bail!(
                "{}: the fold's network is already calibrated",
                fold_run.model().display()
            );
        }
        let size = model.card.input.size;
        let cache = match &cache {
            Some(cache) if cache.size() == size => cache,
            _ => cache.insert(ImageCache::build(dataset, size)?),
        };
        let stats = ChannelStats {
            mean: model.card.input.mean,
            std: model.card.input.std,
        };
        let loader = Loader::new(cache, stats, batch, &device);
        let split_path = genotype.run.fold_split(fold);
        let split = Split::load(&split_path)?;
        split.check(dataset, &split_path)?;
        let test = split.test.indices(dataset);
        for (index, row) in predict_logits(&model.network, &loader, &test, "test")? {
            logits.push(row.into_iter().map(f64::from).collect());
            labels.push(dataset.samples()[index].label);
            subjects.push(dataset.samples()[index].subject.clone());
        }
    }
    Ok(OutOfFold {
        logits,
        labels,
        subjects,
    })
}

/// Writes `model`'s tensors to `out` with `calibration` in its card, after checking that the
/// cross-validation measured its genotype, input size and labels.
fn write_calibrated(
    model: &Path,
    out: &Path,
    genotype: &CvGenotype,
    calibration: &Calibration,
) -> Result<()> {
    let file = ModelFile::read(model)?;
    let fold = load_model(&genotype.fold(0).model(), &Device::Cpu)?;
    let (card, theirs) = (&file.card, &fold.card);
    if card.genotype != theirs.genotype
        || card.input.size != theirs.input.size
        || card.labels != theirs.labels
        || card.network.init_channels != theirs.network.init_channels
        || card.network.layers != theirs.network.layers
    {
        bail!(
            "{}: not a model of the recipe {} cross-validated (its genotype, input size, \
             labels or network shape differ)",
            model.display(),
            genotype.name()
        );
    }
    let mut card = file.card.clone();
    card.calibration = Some(calibration.clone());
    let mut tensors: Vec<(String, Tensor)> = file.tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_model(out, &tensors, &card)
        .with_context(|| format!("writing the calibrated {}", model.display()))
}

/// The reliability diagram: per confidence bin, the accuracy against the mean confidence,
/// before and after scaling, with the diagonal of perfect calibration.
fn reliability_diagram(report: &CalibrationReport) -> Result<String> {
    let c = &report.calibration;
    render_svg((640, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "reliability: ECE {:.3} before, {:.3} at T = {:.2}",
                    c.ece_before, c.ece_after, c.temperature
                ),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("mean confidence of the bin")
            .y_desc("accuracy of the bin")
            .light_line_style(TRANSPARENT)
            .label_style(("sans-serif", 14))
            .draw()?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4)))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
        for (bins, label, color) in [
            (&report.bins_before, "before", RED),
            (&report.bins_after, "after", BLUE),
        ] {
            let points: Vec<(f64, f64)> = bins
                .iter()
                .filter(|b| b.images > 0)
                .map(|b| (b.confidence, b.accuracy))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)).point_size(4))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        Ok(())
    })
}
