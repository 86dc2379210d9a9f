//! Measuring a trained network: accuracy, mean per-class accuracy, per-aspect accuracy and
//! the confusion matrix, and the `eval` subcommand that measures a model file on the test
//! subjects of its run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use hands_models::card::Metrics;
use hands_models::graph::argmax;
use hands_models::nn::model_file::ModelFile;
use hands_models::nn::network::{parameter_count, Network};
use hands_models::ModelCard;
use serde::{Deserialize, Serialize};

use crate::checkpoint::load_varmap;
use crate::device::open_device;
use crate::provenance::{trained_aspects, Selection};
use hands_data::{
    AspectFilter, ChannelStats, Dataset, ImageCache, ImageSource, Loader, PartName, Split,
};
use hands_models::device::DeviceChoice;
use hands_reports::outputs::Inputs;
use hands_reports::run_dir::RunDir;
use hands_reports::runlog::progress_bar;

/// Accuracy of the images of one label or one hand aspect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAccuracy {
    /// Images in the group.
    pub images: usize,
    /// Of which classified correctly.
    pub correct: usize,
    /// `correct / images` (0 for an empty group).
    pub accuracy: f64,
}

impl GroupAccuracy {
    fn new(images: usize, correct: usize) -> Self {
        GroupAccuracy {
            images,
            correct,
            accuracy: if images == 0 {
                0.0
            } else {
                correct as f64 / images as f64
            },
        }
    }
}

/// What a network achieved on a set of images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Which images: `test` (subjects never seen in training), `val`, `train` or `all`.
    pub split: String,
    /// Images measured.
    pub images: usize,
    /// Distinct subjects among them.
    pub subjects: usize,
    /// Mean cross-entropy loss.
    pub loss: f64,
    /// Fraction of images classified correctly.
    pub accuracy: f64,
    /// Mean over the labels present of the per-label recall (Afifi's measure); over fewer
    /// labels than the model has when `absent_classes` is not empty.
    pub mean_class_accuracy: f64,
    /// Labels of the model with no image among those measured: not in `per_class` and not
    /// in the mean class accuracy.
    #[serde(default)]
    pub absent_classes: Vec<String>,
    /// How many of the measured subjects the model was trained or selected on, when its card
    /// records them (only `train` and `all` can include any: `test` and `val` refuse them).
    #[serde(default)]
    pub trained_subjects: Option<usize>,
    /// Share of the most frequent true label: what always answering it would score.
    pub majority_rate: f64,
    /// Label names, in logit order.
    pub labels: Vec<String>,
    /// Per-label recall, by label name, for the labels with images.
    pub per_class: BTreeMap<String, GroupAccuracy>,
    /// Per hand aspect (`dorsal left`, ...), where the data records aspects.
    pub per_aspect: BTreeMap<String, GroupAccuracy>,
    /// `confusion[true][predicted]` image counts.
    pub confusion: Vec<Vec<usize>>,
    /// The same figures for the images of each source (`originals`, `copies`; see
    /// [`ImageSource`]), where the images' sources are known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_source: BTreeMap<String, Evaluation>,
}

impl Evaluation {
    /// Tallies predictions: `indices[i]` (a sample of `dataset`) was predicted `predicted[i]`;
    /// `losses[i]` is that image's cross-entropy. The images of each known source are
    /// tallied again on their own (`per_source`).
    pub fn from_predictions(
        split: &str,
        dataset: &Dataset,
        indices: &[usize],
        predicted: &[usize],
        losses: &[f64],
    ) -> Evaluation {
        assert_eq!(indices.len(), predicted.len(), "one prediction per image");
        assert_eq!(indices.len(), losses.len(), "one loss per image");
        let mut evaluation =
            Evaluation::tally(split, dataset, indices, predicted, losses.iter().sum());
        for source in ImageSource::ALL {
            let of_source: Vec<usize> = (0..indices.len())
                .filter(|&i| dataset.samples()[indices[i]].image_source == Some(source))
                .collect();
            if of_source.is_empty() {
                continue;
            }
            let pick = |values: &[usize]| of_source.iter().map(|&i| values[i]).collect::<Vec<_>>();
            let loss_sum = of_source.iter().map(|&i| losses[i]).sum();
            let figures =
                Evaluation::tally(split, dataset, &pick(indices), &pick(predicted), loss_sum);
            evaluation
                .per_source
                .insert(source.name().to_string(), figures);
        }
        evaluation
    }

    /// The figures of `indices` predicted `predicted`, without the per-source breakdown.
    fn tally(
        split: &str,
        dataset: &Dataset,
        indices: &[usize],
        predicted: &[usize],
        loss_sum: f64,
    ) -> Evaluation {
        let labels = dataset.labels().to_vec();
        let k = labels.len();
        let mut confusion = vec![vec![0usize; k]; k];
        let mut aspects: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut subjects = BTreeSet::new();
        for (&i, &p) in indices.iter().zip(predicted) {
            let sample = &dataset.samples()[i];
            confusion[sample.label][p] += 1;
            subjects.insert(sample.subject.as_str());
            if let Some(aspect) = &sample.aspect {
                let entry = aspects.entry(aspect.clone()).or_default();
                entry.0 += 1;
                entry.1 += usize::from(sample.label == p);
            }
        }
        let n = indices.len();
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let per_class: BTreeMap<String, GroupAccuracy> = (0..k)
            .map(|c| {
                let images = confusion[c].iter().sum();
                (
                    labels[c].clone(),
                    GroupAccuracy::new(images, confusion[c][c]),
                )
            })
            .collect();
        let (per_class, absent): (BTreeMap<_, _>, BTreeMap<_, _>) =
            per_class.into_iter().partition(|(_, g)| g.images > 0);
        let mean_class_accuracy = if per_class.is_empty() {
            0.0
        } else {
            per_class.values().map(|g| g.accuracy).sum::<f64>() / per_class.len() as f64
        };
        let majority = per_class.values().map(|g| g.images).max().unwrap_or(0);
        let ratio = |a: usize| if n == 0 { 0.0 } else { a as f64 / n as f64 };
        Evaluation {
            split: split.to_string(),
            images: n,
            subjects: subjects.len(),
            loss: if n == 0 { 0.0 } else { loss_sum / n as f64 },
            accuracy: ratio(correct),
            mean_class_accuracy,
            absent_classes: absent.into_keys().collect(),
            trained_subjects: None,
            majority_rate: ratio(majority),
            labels,
            per_class,
            per_aspect: aspects
                .into_iter()
                .map(|(a, (images, correct))| (a, GroupAccuracy::new(images, correct)))
                .collect(),
            confusion,
            per_source: BTreeMap::new(),
        }
    }

    /// Accuracy per side of the hand (`dorsal`, `palmar`: the aspects' first words).
    pub fn per_side(&self) -> BTreeMap<String, GroupAccuracy> {
        let mut sides: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (aspect, group) in &self.per_aspect {
            let side = aspect.split_whitespace().next().unwrap_or(aspect);
            let entry = sides.entry(side.to_string()).or_default();
            entry.0 += group.images;
            entry.1 += group.correct;
        }
        sides
            .into_iter()
            .map(|(side, (images, correct))| (side, GroupAccuracy::new(images, correct)))
            .collect()
    }

    /// The figures a model card records; refused when a class had no image (its mean class
    /// accuracy would be over fewer classes than the model has).
    pub fn card_metrics(&self) -> Result<Metrics> {
        if !self.absent_classes.is_empty() {
            bail!(
                "the {} images have no {} image: no mean class accuracy over every class",
                self.split,
                self.absent_classes.join(" or ")
            );
        }
        Ok(Metrics {
            split: self.split.clone(),
            images: self.images,
            subjects: self.subjects,
            accuracy: self.accuracy,
            mean_class_accuracy: self.mean_class_accuracy,
            per_aspect: self
                .per_aspect
                .iter()
                .map(|(a, g)| (a.clone(), g.accuracy))
                .collect(),
        })
    }
}

impl fmt::Display for Evaluation {
    /// A plain-text report: headline figures, per-class and per-aspect accuracy, and the
    /// confusion matrix (rows: true label, columns: predicted label).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} images of {} subjects",
            self.split, self.images, self.subjects
        )?;
        if let Some(n) = self
            .trained_subjects
            .filter(|&n| n > 0 && self.split != "train")
        {
            writeln!(
                f,
                "  WARNING: {n} of these subjects were used to train or select the model"
            )?;
        }
        writeln!(f, "  accuracy             {:.4}", self.accuracy)?;
        if self.absent_classes.is_empty() {
            writeln!(f, "  mean class accuracy  {:.4}", self.mean_class_accuracy)?;
        } else {
            writeln!(
                f,
                "  mean class accuracy  {:.4} over the classes present only (no images of {})",
                self.mean_class_accuracy,
                self.absent_classes.join(", ")
            )?;
        }
        writeln!(f, "  majority-class rate  {:.4}", self.majority_rate)?;
        writeln!(f, "  loss                 {:.4}", self.loss)?;
        let width = self
            .labels
            .iter()
            .map(String::len)
            .chain(self.per_aspect.keys().map(String::len))
            .max()
            .unwrap_or(0)
            .max(9);
        writeln!(f, "  per class:")?;
        for (label, g) in &self.per_class {
            writeln!(
                f,
                "    {label:<width$}  {:.4}  ({}/{})",
                g.accuracy, g.correct, g.images
            )?;
        }
        if !self.per_aspect.is_empty() {
            writeln!(f, "  per aspect:")?;
            for (aspect, g) in &self.per_aspect {
                writeln!(
                    f,
                    "    {aspect:<width$}  {:.4}  ({}/{})",
                    g.accuracy, g.correct, g.images
                )?;
            }
        }
        self.write_per_source(f, width)?;
        self.write_confusion(f, width)
    }
}

impl Evaluation {
    /// The report's per-source lines (none when the sources are unknown).
    fn write_per_source(&self, f: &mut fmt::Formatter<'_>, width: usize) -> fmt::Result {
        if self.per_source.is_empty() {
            return Ok(());
        }
        writeln!(f, "  per source (mean class accuracy, accuracy, per side):")?;
        for (source, e) in &self.per_source {
            let sides: Vec<String> = e
                .per_side()
                .iter()
                .map(|(side, g)| format!("{side} {:.4} ({}/{})", g.accuracy, g.correct, g.images))
                .collect();
            writeln!(
                f,
                "    {source:<width$}  {:.4}  {:.4}  ({} images){}{}",
                e.mean_class_accuracy,
                e.accuracy,
                e.images,
                if sides.is_empty() { "" } else { "  " },
                sides.join(", ")
            )?;
        }
        Ok(())
    }

    /// The report's confusion matrix (rows: true label, columns: predicted label).
    fn write_confusion(&self, f: &mut fmt::Formatter<'_>, width: usize) -> fmt::Result {
        writeln!(f, "  confusion (rows: true, columns: predicted):")?;
        let cell = self
            .labels
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(6);
        write!(f, "    {:<width$}", "")?;
        for label in &self.labels {
            write!(f, "  {label:>cell$}")?;
        }
        writeln!(f)?;
        for (label, row) in self.labels.iter().zip(&self.confusion) {
            write!(f, "    {label:<width$}")?;
            for count in row {
                write!(f, "  {count:>cell$}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Runs `network` in evaluation mode over the images `indices` of `loader`'s cache (in
/// order, no augmentation) and tallies the result. `dataset` is the one the cache was built
/// from.
pub fn evaluate(
    network: &Network,
    loader: &Loader<'_>,
    dataset: &Dataset,
    indices: &[usize],
    split: &str,
) -> Result<Evaluation> {
    let epoch = loader.in_order(indices);
    let bar = progress_bar(epoch.num_batches() as u64, split);
    let mut predicted = Vec::with_capacity(indices.len());
    let mut order = Vec::with_capacity(indices.len());
    let mut losses = Vec::with_capacity(indices.len());
    for batch in epoch {
        let batch = batch?;
        let logits = network.logits(&batch.images)?;
        let (batch_losses, preds) = losses_and_predictions(&logits, &batch.labels)?;
        losses.extend(batch_losses);
        predicted.extend(preds);
        order.extend_from_slice(&batch.indices);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Evaluation::from_predictions(
        split, dataset, &order, &predicted, &losses,
    ))
}

/// Class probabilities of one image: the plain forward pass and, when asked for, the mean
/// of it and the pass over the left-right mirrored image (test-time augmentation).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProbabilities {
    /// The sample index.
    pub index: usize,
    /// Softmax of the logits, in label order.
    pub plain: Vec<f32>,
    /// Mean of `plain` and the softmax over the mirrored image.
    pub flip_mean: Option<Vec<f32>>,
}

/// Runs `network` in evaluation mode over the images `indices` (in order, no
/// augmentation) and returns each image's probabilities at `temperature`
/// (`softmax(logits / temperature)`, 1 for an uncalibrated model: see the card's
/// calibration), with flip averaging too when `flip`.
pub fn predict_probabilities(
    network: &Network,
    loader: &Loader<'_>,
    indices: &[usize],
    label: &str,
    flip: bool,
    temperature: f64,
) -> Result<Vec<ImageProbabilities>> {
    let epoch = loader.in_order(indices);
    let bar = progress_bar(epoch.num_batches() as u64, label);
    let mut out = Vec::with_capacity(indices.len());
    let probabilities =
        |logits: Tensor| candle_nn::ops::softmax(&(logits / temperature)?, D::Minus1);
    for batch in epoch {
        let batch = batch?;
        let plain = probabilities(network.logits(&batch.images)?)?;
        let flip_mean = if flip {
            let mirrored = probabilities(network.logits(&mirror(&batch.images)?)?)?;
            let mean = ((&plain + mirrored)? * 0.5)?;
            mean.to_dtype(DType::F32)?
                .to_vec2::<f32>()?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None; batch.indices.len()]
        };
        let plain = plain.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        for ((index, plain), flip_mean) in batch.indices.iter().zip(plain).zip(flip_mean) {
            out.push(ImageProbabilities {
                index: *index,
                plain,
                flip_mean,
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Runs `network` in evaluation mode over the images `indices` (in order, no augmentation)
/// and returns each image's sample index and logits.
pub fn predict_logits(
    network: &Network,
    loader: &Loader<'_>,
    indices: &[usize],
    label: &str,
) -> Result<Vec<(usize, Vec<f32>)>> {
    let epoch = loader.in_order(indices);
    let bar = progress_bar(epoch.num_batches() as u64, label);
    let mut out = Vec::with_capacity(indices.len());
    for batch in epoch {
        let batch = batch?;
        let logits = network
            .logits(&batch.images)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        out.extend(batch.indices.iter().copied().zip(logits));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Writes one CSV row per image: its path, subject, true label, aspect, and the probability
/// of each label (`p_LABEL`), then with flip averaging (`p_LABEL_flip`) where computed.
pub fn write_predictions(
    path: &Path,
    dataset: &Dataset,
    rows: &[ImageProbabilities],
) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let labels = dataset.labels();
    let flip = rows.first().is_some_and(|r| r.flip_mean.is_some());
    let mut header = vec![
        "path".to_string(),
        "subject".into(),
        "label".into(),
        "aspect".into(),
    ];
    header.extend(labels.iter().map(|l| format!("p_{l}")));
    if flip {
        header.extend(labels.iter().map(|l| format!("p_{l}_flip")));
    }
    writer.write_record(&header)?;
    for row in rows {
        let sample = &dataset.samples()[row.index];
        let mut record = vec![
            sample.path.display().to_string(),
            sample.subject.clone(),
            labels[sample.label].clone(),
            sample.aspect.clone().unwrap_or_default(),
        ];
        record.extend(row.plain.iter().map(|p| format!("{p:.6}")));
        if let Some(flip_mean) = &row.flip_mean {
            record.extend(flip_mean.iter().map(|p| format!("{p:.6}")));
        }
        writer.write_record(&record)?;
    }
    let bytes = writer.into_inner().context("CSV buffer")?;
    hands_models::output::write_atomic(path, &bytes)?;
    Ok(())
}

/// `images` `[B, C, H, W]` mirrored left-right.
pub fn mirror(images: &Tensor) -> Result<Tensor> {
    let width = images.dim(3)?;
    let reversed: Vec<u32> = (0..width as u32).rev().collect();
    let reversed = Tensor::new(reversed.as_slice(), images.device())?;
    Ok(images.index_select(&reversed, 3)?)
}

impl Evaluation {
    /// Tallies probabilities: image `indices[i]` got `probabilities[i]` (in label order);
    /// the prediction is the most probable label (the first on ties), the loss the mean
    /// negative log probability of the true label.
    pub fn from_probabilities(
        split: &str,
        dataset: &Dataset,
        indices: &[usize],
        probabilities: &[&[f32]],
    ) -> Evaluation {
        let losses: Vec<f64> = indices
            .iter()
            .zip(probabilities)
            .map(|(&i, p)| {
                let truth = dataset.samples()[i].label;
                -f64::from(p[truth].max(f32::MIN_POSITIVE)).ln()
            })
            .collect();
        let predicted: Vec<usize> = probabilities.iter().map(|p| argmax(p)).collect();
        Evaluation::from_predictions(split, dataset, indices, &predicted, &losses)
    }
}

/// The cross-entropy of each row of `logits` `[B, K]` against `labels` `[B]` and the argmax
/// prediction of each row.
pub fn losses_and_predictions(logits: &Tensor, labels: &Tensor) -> Result<(Vec<f64>, Vec<usize>)> {
    let logits = logits.to_dtype(DType::F32)?;
    let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let labels = labels.to_dtype(DType::U32)?;
    let losses = log_p
        .gather(&labels.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect();
    let preds = logits
        .argmax(D::Minus1)?
        .to_vec1::<u32>()?
        .into_iter()
        .map(|p| p as usize)
        .collect();
    Ok((losses, preds))
}

/// A trained model read back from its file: the network of its card with the file's
/// weights.
pub struct LoadedModel {
    /// The network, in evaluation configuration (no auxiliary head).
    pub network: Network,
    /// Its parameters (and BatchNorm running statistics).
    pub varmap: VarMap,
    /// The model card.
    pub card: ModelCard,
}

impl fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModel")
            .field("network", &self.network)
            .field("card", &self.card)
            .finish_non_exhaustive()
    }
}

/// Reads a `model.safetensors` written by `hands-search train` ([`ModelFile::read`]: every
/// tensor of its card's network present, of the right shape, finite) and builds that network
/// on `device` with the file's tensors.
pub fn load_model(path: &Path, device: &Device) -> Result<LoadedModel> {
    let file = ModelFile::read(path)?;
    let varmap = VarMap::new();
    let network = Network::new(
        &file.card.genotype,
        &file.config(),
        VarBuilder::from_varmap(&varmap, DType::F32, device),
    )
    .with_context(|| format!("{}: cannot build the network of its card", path.display()))?;
    load_varmap(&varmap, &file.tensors, "", path)?;
    let count = parameter_count(&varmap, false);
    if count != file.card.network.parameters {
        bail!(
            "{}: the card states {} parameters, the network has {count}",
            path.display(),
            file.card.network.parameters
        );
    }
    Ok(LoadedModel {
        network,
        varmap,
        card: file.card,
    })
}

/// Which images `eval` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    /// The run's test subjects (never seen in training or model selection).
    Test,
    /// The run's validation subjects (used for model selection).
    Val,
    /// The run's training subjects.
    Train,
    /// Every image of --data (for data the model has never seen at all).
    All,
}

impl EvalSplit {
    /// The split's name, as `--split` takes it.
    pub fn name(self) -> &'static str {
        match self {
            EvalSplit::Test => "test",
            EvalSplit::Val => "val",
            EvalSplit::Train => "train",
            EvalSplit::All => "all",
        }
    }
}

/// Arguments of `hands-search eval`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct EvalArgs {
    /// The model file written by `hands-search train` (carries its model card).
    #[cfg_attr(feature = "cli", arg(long))]
    pub model: PathBuf,
    /// Dataset folder: 11K Hands (HandInfo.csv + images) or one sub-folder per class.
    #[cfg_attr(feature = "cli", arg(long))]
    pub data: PathBuf,
    /// Which images to measure; test, val and train need the run's split.json.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = EvalSplit::Test))]
    pub split: EvalSplit,
    /// The split file (default: split.json beside the model).
    #[cfg_attr(feature = "cli", arg(long))]
    pub split_file: Option<PathBuf>,
    /// Which hand aspects to load (default: the aspects the model was trained on).
    #[cfg_attr(feature = "cli", arg(long, value_parser = crate::flags::choice::<AspectFilter>()))]
    pub aspect: Option<AspectFilter>,
    /// Also write the result as JSON to this file (`-` prints JSON instead of the table).
    #[cfg_attr(feature = "cli", arg(long))]
    pub json: Option<PathBuf>,
    /// Also write every image's probabilities to this CSV file (path, subject, label,
    /// aspect, p_LABEL...).
    #[cfg_attr(feature = "cli", arg(long))]
    pub predictions: Option<PathBuf>,
    /// Images per forward pass (1 to 1024).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 64, value_parser = crate::flags::usize_in(crate::flags::BATCH)))]
    pub batch: usize,
    /// Compute device: cpu, cuda, cuda:N or auto.
    #[cfg_attr(feature = "cli", arg(long, default_value = "cpu"))]
    pub device: DeviceChoice,
}

/// `hands-search eval`: measures a model file and prints the result.
pub fn run_eval(args: &EvalArgs) -> Result<()> {
    let evaluation = eval_model(args)?;
    match &args.json {
        Some(path) if path.as_os_str() == "-" => {
            println!("{}", serde_json::to_string_pretty(&evaluation)?);
        }
        Some(path) => {
            print!("{evaluation}");
            hands_models::output::write_atomic(
                path,
                (serde_json::to_string_pretty(&evaluation)? + "\n").as_bytes(),
            )?;
            eprintln!("written: {}", path.display());
        }
        None => print!("{evaluation}"),
    }
    Ok(())
}

/// The measurement of [`run_eval`], without printing. Refuses, before measuring, a `--json`
/// file that is one of the inputs, and a test (val) split holding subjects the model was
/// trained (or selected) on.
pub fn eval_model(args: &EvalArgs) -> Result<Evaluation> {
    crate::flags::check_range("batch", args.batch, crate::flags::BATCH)?;
    let device = open_device(args.device)?;
    let model = load_model(&args.model, &device)?;
    let card = &model.card;
    let filter = match args.aspect {
        Some(filter) => filter,
        None => trained_aspects(card)
            .with_context(|| format!("{}: bad aspect in the card", args.model.display()))?,
    };
    let dataset = Dataset::load(&args.data, &filter)?;
    if dataset.labels() != card.labels.as_slice() {
        bail!(
            "{} has labels {:?}, the model {} predicts {:?}",
            args.data.display(),
            dataset.labels(),
            args.model.display(),
            card.labels
        );
    }
    refuse_outputs_on_inputs(args, &dataset)?;
    let seen = Selection::of_card(card)
        .with_context(|| format!("{}: bad card", args.model.display()))?
        .map(|selection| (selection.train_subjects, selection.val_subjects));
    let indices = evaluated_indices(args, &dataset, seen.as_ref())?;
    if indices.is_empty() {
        bail!("no images to evaluate in {}", args.data.display());
    }
    let cache = ImageCache::build(&dataset, card.input.size)?;
    let stats = ChannelStats {
        mean: card.input.mean,
        std: card.input.std,
    };
    let loader = Loader::new(&cache, stats, args.batch, &device);
    let split_name = args.split.name();
    let started = std::time::Instant::now();
    let probabilities = predict_probabilities(
        &model.network,
        &loader,
        &indices,
        split_name,
        false,
        card.temperature(),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let measured: Vec<usize> = probabilities.iter().map(|p| p.index).collect();
    let rows: Vec<&[f32]> = probabilities.iter().map(|p| p.plain.as_slice()).collect();
    let mut evaluation = Evaluation::from_probabilities(split_name, &dataset, &measured, &rows);
    if let Some(path) = &args.predictions {
        write_predictions(path, &dataset, &probabilities)?;
        eprintln!("written: {}", path.display());
    }
    eprintln!(
        "evaluated {} images in {seconds:.2} s: {:.1} images/s (batch {})",
        indices.len(),
        indices.len() as f64 / seconds,
        args.batch
    );
    evaluation.trained_subjects = seen.map(|(train, val)| {
        let measured: BTreeSet<&str> = indices
            .iter()
            .map(|&i| dataset.samples()[i].subject.as_str())
            .collect();
        measured
            .iter()
            .filter(|s| train.contains(**s) || val.contains(**s))
            .count()
    });
    Ok(evaluation)
}

/// Refuses a `--json` or `--predictions` file that is one of eval's inputs (the data, the
/// model, the split file).
fn refuse_outputs_on_inputs(args: &EvalArgs, dataset: &Dataset) -> Result<()> {
    let mut inputs = Inputs::of_data(&args.data, dataset);
    inputs.add(&args.model);
    if let Some(split) = &args.split_file {
        inputs.add(split);
    }
    if let Some(json) = args.json.as_ref().filter(|p| p.as_os_str() != "-") {
        inputs.check([json])?;
    }
    if let Some(predictions) = &args.predictions {
        inputs.check([predictions])?;
    }
    Ok(())
}

/// The images `--split` names: every image, or a part of the run's split (checked against
/// the dataset, and against the subjects the card says the model has seen).
fn evaluated_indices(
    args: &EvalArgs,
    dataset: &Dataset,
    seen: Option<&(BTreeSet<String>, BTreeSet<String>)>,
) -> Result<Vec<usize>> {
    Ok(match args.split {
        EvalSplit::All => dataset.all_indices(),
        part => {
            let path = match &args.split_file {
                Some(path) => path.clone(),
                None => RunDir::new(args.model.parent().unwrap_or(Path::new("."))).split(),
            };
            let split = Split::load(&path).with_context(|| {
                format!(
                    "--split {} needs the run's split (pass --split-file, or use --split all)",
                    part.name()
                )
            })?;
            split.check(dataset, &path)?;
            let name = match part {
                EvalSplit::Test => PartName::Test,
                EvalSplit::Val => PartName::Val,
                _ => PartName::Train,
            };
            match seen {
                Some(seen) => check_unseen(&split, name, seen, &path, &args.model)?,
                None if args.split_file.is_some() => eprintln!(
                    "warning: the card of {} does not record its training subjects: cannot \
                     check that the subjects of {} are unseen",
                    args.model.display(),
                    path.display()
                ),
                None => {}
            }
            split.part(name).indices(dataset)
        }
    })
}

/// Refuses a test split with subjects the model was trained or selected on (`seen`: its
/// training and validation subjects), or a val split with training subjects.
fn check_unseen(
    split: &Split,
    part: PartName,
    (train, val): &(BTreeSet<String>, BTreeSet<String>),
    split_path: &Path,
    model: &Path,
) -> Result<()> {
    let used: Vec<&String> = split
        .part(part)
        .subjects
        .iter()
        .filter(|s| train.contains(*s) || (part == PartName::Test && val.contains(*s)))
        .collect();
    if matches!(part, PartName::Test | PartName::Val) && !used.is_empty() {
        let shown: Vec<&str> = used.iter().take(5).map(|s| s.as_str()).collect();
        bail!(
            "{}: {} of its {:?} subjects ({}{}) were used to train or select {}: the figures \
             would not be on unseen subjects (use the split.json of the model's run)",
            split_path.display(),
            used.len(),
            part,
            shown.join(", "),
            if used.len() > shown.len() {
                ", ..."
            } else {
                ""
            },
            model.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hands_data::{Sample, Source};

    fn dataset() -> Dataset {
        let sample = |i: usize, subject: &str, label: usize, aspect: &str| Sample {
            path: PathBuf::from(format!("{i}.jpg")),
            subject: subject.to_string(),
            label,
            aspect: Some(aspect.to_string()),
            // Images 0 and 3 are originals, 1 a copy, 2 of unknown source.
            image_source: match i {
                0 | 3 => Some(ImageSource::Original),
                1 => Some(ImageSource::SquareCopy),
                _ => None,
            },
        };
        Dataset::from_samples(
            Source::Folder {
                root: PathBuf::from("x"),
            },
            vec!["female".into(), "male".into()],
            vec![
                sample(0, "a", 0, "dorsal left"),
                sample(1, "a", 0, "palmar left"),
                sample(2, "b", 0, "dorsal left"),
                sample(3, "c", 1, "dorsal left"),
            ],
        )
        .unwrap()
    }

    #[test]
    fn tallies_accuracy_mean_class_aspects_and_confusion() {
        let d = dataset();
        // Predictions: female right, female wrong, female right, male right.
        let e = Evaluation::from_predictions(
            "test",
            &d,
            &[0, 1, 2, 3],
            &[0, 1, 0, 1],
            &[0.5, 1.0, 0.25, 0.25],
        );
        assert_eq!(e.images, 4);
        assert_eq!(e.subjects, 3);
        assert_eq!(e.accuracy, 0.75);
        assert!((e.mean_class_accuracy - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        assert_eq!(e.majority_rate, 0.75);
        assert_eq!(e.loss, 0.5);
        assert_eq!(e.confusion, [[2, 1], [0, 1]]);
        assert_eq!(e.per_aspect["dorsal left"].accuracy, 1.0);
        assert_eq!(e.per_aspect["palmar left"].accuracy, 0.0);
        let metrics = e.card_metrics().unwrap();
        assert_eq!(metrics.split, "test");
        assert_eq!(metrics.per_aspect.len(), 2);
        let table = e.to_string();
        assert!(
            table.contains("confusion") && table.contains("dorsal left"),
            "{table}"
        );

        // Per source: originals 0 (female, right) and 3 (male, right); the copy 1 (female,
        // wrong); image 2, of unknown source, in neither.
        assert_eq!(
            e.per_source.keys().collect::<Vec<_>>(),
            ["copies", "originals"]
        );
        let originals = &e.per_source["originals"];
        assert_eq!((originals.images, originals.subjects), (2, 2));
        assert_eq!(originals.mean_class_accuracy, 1.0);
        assert_eq!(originals.loss, 0.375);
        assert_eq!(originals.per_side()["dorsal"].correct, 2);
        assert!(originals.per_source.is_empty());
        let copies = &e.per_source["copies"];
        assert_eq!((copies.images, copies.accuracy, copies.loss), (1, 0.0, 1.0));
        assert_eq!(copies.absent_classes, ["male"]);
        assert!(
            table.contains("per source") && table.contains("1.0000  1.0000  (2 images)"),
            "{table}"
        );
    }
}
