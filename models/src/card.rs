//! The model card: everything needed to use a trained network correctly, stored inside
//! its safetensors and ONNX files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::{default_stem_stride, DEFAULT_STEM_STRIDE, STEM_STRIDES};
use crate::{Error, Genotype};

/// Version of the card schema written by this crate.
pub const CARD_SCHEMA_VERSION: u32 = 1;
/// Metadata key under which the card JSON is stored (safetensors `__metadata__`, ONNX
/// `metadata_props`).
pub const CARD_METADATA_KEY: &str = "hands.card";
/// Largest card JSON read, in bytes (a card takes about 2 KB).
pub const MAX_CARD_BYTES: usize = 1024 * 1024;
/// Most output labels a card may declare (the classifier has one row per label).
pub const MAX_LABELS: usize = 1000;
/// Longest label, in bytes.
pub const MAX_LABEL_BYTES: usize = 100;
/// Input sizes a card may declare (side of the square input, in pixels). Below 8 the two
/// reduction cells leave less than one pixel; at 1024, one image is 12 MiB of input.
pub const INPUT_SIZES: std::ops::RangeInclusive<u32> = 8..=1024;
/// Smallest per-channel standard deviation: pixels in [0, 1] divided by less would blow
/// up to values the network never saw.
pub const MIN_STD: f32 = 1e-6;
/// Channel counts (C) a card may declare. At C = 128 and 32 cells the network holds about
/// 67 million values (270 MB in f32, P-DARTS cells); every tensor is sized from C.
pub const INIT_CHANNELS: std::ops::RangeInclusive<usize> = 1..=128;
/// Cell counts a card may declare.
pub const LAYERS: std::ops::RangeInclusive<usize> = 1..=32;

/// How an image becomes the network's input tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Square side length in pixels.
    pub size: u32,
    /// Tensor layout.
    pub layout: TensorLayout,
    /// Colour order of the channels.
    pub colour: ColourOrder,
    /// How the photo is brought to `size` x `size`.
    pub resize: ResizeRule,
    /// Per-channel mean subtracted after scaling pixels to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
}

/// The layout of the input tensor of [`InputSpec`]; a card naming another is refused when
/// it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TensorLayout {
    /// Batch, channels, height, width.
    #[serde(rename = "NCHW")]
    Nchw,
}

/// The channel order of [`InputSpec`]; a card naming another is refused when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColourOrder {
    /// Red, green, blue.
    #[serde(rename = "RGB")]
    Rgb,
}

/// The resize rule of [`InputSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeRule {
    /// The whole photo is resized to a square (aspect ratio not kept), with a bilinear
    /// (triangle) filter after any reduced-scale JPEG decoding.
    StretchBilinear,
}

/// Shape of the discrete network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Channels of the first cell (C).
    pub init_channels: usize,
    /// Number of cells.
    pub layers: usize,
    /// Stride of the stem's convolution ([`crate::plan::STEM_STRIDES`]; cards written before
    /// it was recorded had 1).
    #[serde(
        default = "default_stem_stride",
        skip_serializing_if = "is_default_stem_stride"
    )]
    pub stem_stride: usize,
    /// Whether the file holds an auxiliary head (training checkpoints only).
    pub auxiliary: bool,
    /// Number of learnable parameters of the inference network.
    pub parameters: usize,
    /// Multiply-adds of one image's forward pass ([`crate::cost::network_cost`]; absent from
    /// cards written before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiply_adds: Option<u64>,
    /// The exported ONNX graph's latency, measured by `hands-export` on the machine it ran on
    /// (empty when not measured): a figure of that machine, not of every machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<MeasuredLatency>,
}

fn is_default_stem_stride(stride: &usize) -> bool {
    *stride == DEFAULT_STEM_STRIDE
}

/// One latency of the exported graph: the median wall time of an ONNX Runtime CPU run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredLatency {
    /// The CPU it was measured on (its model name).
    pub cpu: String,
    /// ONNX Runtime's intra-op threads.
    pub threads: usize,
    /// Images per run.
    pub batch: usize,
    /// Median milliseconds of one run.
    pub median_ms: f64,
}

/// Accuracy figures with the split they were measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Which subjects were measured: `test` means subjects never seen in training.
    pub split: String,
    /// Images measured.
    pub images: usize,
    /// Subjects measured.
    pub subjects: usize,
    /// Fraction of images classified correctly.
    pub accuracy: f64,
    /// Mean over labels of the per-label recall.
    pub mean_class_accuracy: f64,
    /// Accuracy per aspect of hand (e.g. `dorsal right`), where known.
    #[serde(default)]
    pub per_aspect: BTreeMap<String, f64>,
}

/// Mean and sample standard deviation of a figure over cross-validation folds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanStd {
    /// The mean over the folds.
    pub mean: f64,
    /// The sample standard deviation over the folds (n - 1; 0 for one fold).
    pub std: f64,
}

impl MeanStd {
    /// The mean and sample standard deviation of `values` (NaN for none).
    pub fn of(values: &[f64]) -> MeanStd {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        MeanStd {
            mean,
            std: var.sqrt(),
        }
    }
}

impl std::fmt::Display for MeanStd {
    /// `0.912 ± 0.031`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} ± {:.3}", self.mean, self.std)
    }
}

/// Folds a card's cross-validation may record.
pub const CV_FOLDS: std::ops::RangeInclusive<usize> = 2..=20;
/// Longest cross-validation protocol text, in bytes.
pub const MAX_PROTOCOL_BYTES: usize = 4096;

/// The figures of the model's training recipe (genotype and settings) cross-validated by
/// subject: each fold trained from scratch and measured on subjects it never saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossValidation {
    /// Number of folds (K).
    pub folds: usize,
    /// How the folds were drawn, trained and measured, in words.
    pub protocol: String,
    /// Images of the cross-validated data.
    pub images: usize,
    /// Subjects of the cross-validated data.
    pub subjects: usize,
    /// Accuracy over the folds.
    pub accuracy: MeanStd,
    /// Mean per-class accuracy over the folds.
    pub mean_class_accuracy: MeanStd,
    /// Accuracy per label.
    pub per_class: BTreeMap<String, MeanStd>,
    /// Accuracy per side of the hand (`dorsal`, `palmar`).
    pub per_side: BTreeMap<String, MeanStd>,
    /// Accuracy of always answering the training folds' majority class, on the same folds.
    pub majority_accuracy: MeanStd,
    /// The same figures on the test images of each source: `originals` (photos as shot, 4:3,
    /// like a user's own: the figure that stands for them) and `copies` (square copies).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_source: BTreeMap<String, SourceFigures>,
}

/// Cross-validated figures on the test images of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFigures {
    /// Accuracy over the folds.
    pub accuracy: MeanStd,
    /// Mean per-class accuracy over the folds.
    pub mean_class_accuracy: MeanStd,
    /// Accuracy per label.
    pub per_class: BTreeMap<String, MeanStd>,
    /// Accuracy per side of the hand (`dorsal`, `palmar`).
    pub per_side: BTreeMap<String, MeanStd>,
}

impl CrossValidation {
    fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidCard(reason));
        if !CV_FOLDS.contains(&self.folds) {
            return invalid(format!(
                "cross-validation folds {} is outside {}..={}",
                self.folds,
                CV_FOLDS.start(),
                CV_FOLDS.end()
            ));
        }
        if self.protocol.len() > MAX_PROTOCOL_BYTES {
            return invalid(format!(
                "cross-validation protocol of {} bytes (at most {MAX_PROTOCOL_BYTES})",
                self.protocol.len()
            ));
        }
        let figures = [
            ("accuracy", &self.accuracy),
            ("mean_class_accuracy", &self.mean_class_accuracy),
            ("majority_accuracy", &self.majority_accuracy),
        ]
        .into_iter()
        .chain(self.per_class.iter().map(|(k, v)| (k.as_str(), v)))
        .chain(self.per_side.iter().map(|(k, v)| (k.as_str(), v)))
        .chain(self.per_source.iter().flat_map(|(source, f)| {
            [
                (source.as_str(), &f.accuracy),
                (source.as_str(), &f.mean_class_accuracy),
            ]
            .into_iter()
            .chain(f.per_class.iter().map(|(k, v)| (k.as_str(), v)))
            .chain(f.per_side.iter().map(|(k, v)| (k.as_str(), v)))
        }));
        for (name, figure) in figures {
            if !(0.0..=1.0).contains(&figure.mean) || !(0.0..=1.0).contains(&figure.std) {
                return invalid(format!(
                    "cross-validated {name} = {} ± {} is not in [0, 1]",
                    figure.mean, figure.std
                ));
            }
        }
        Ok(())
    }
}

/// Where the model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The data folder trained on.
    pub data: String,
    /// The genotype's origin: a published name or a search run folder.
    pub genotype_source: String,
    /// The training settings, as given on the command line.
    pub train: serde_json::Value,
    /// Random seed of training.
    pub seed: u64,
    /// Version of the tool that wrote the card.
    pub tool_version: String,
}

/// The model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Schema version, [`CARD_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Output labels in logit order.
    pub labels: Vec<String>,
    /// Input preprocessing.
    pub input: InputSpec,
    /// The cell architecture.
    pub genotype: Genotype,
    /// Network shape.
    pub network: NetworkSpec,
    /// Measured accuracy on the held-out subjects of its own training, if it had any.
    pub metrics: Option<Metrics>,
    /// The cross-validated figures of its training recipe, when it was trained with them:
    /// the headline figures of a model trained on every subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<CrossValidation>,
    /// Temperature scaling of the probabilities, when the model was calibrated after
    /// training: its probabilities are `softmax(logits / temperature)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Data and settings provenance.
    pub provenance: Provenance,
}

/// How a model's probabilities were calibrated (see [`crate::calibration`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// The method: `temperature scaling`.
    pub method: String,
    /// The temperature the logits are divided by, in [`crate::calibration::TEMPERATURES`].
    pub temperature: f64,
    /// What it was fitted on, in words (the cross-validation run whose out-of-fold
    /// predictions were used).
    pub fitted_on: String,
    /// Images of that fit.
    pub images: usize,
    /// Equal-width confidence bins of the expected calibration errors.
    pub bins: usize,
    /// Expected calibration error of those predictions before scaling.
    pub ece_before: f64,
    /// And after.
    pub ece_after: f64,
    /// The accuracy-coverage curve of the same predictions, calibrated: for each confidence
    /// threshold, the share of images whose answer is kept and the accuracy of those.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coverage: Vec<crate::calibration::CoveragePoint>,
    /// One answer per person: all of a test subject's photos combined (see
    /// [`crate::calibration::combine_photos`]), over the same predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_person: Option<PersonFigures>,
}

/// The figures of one combined answer per person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonFigures {
    /// People (subjects) measured.
    pub people: usize,
    /// The share of them whose combined answer is right.
    pub accuracy: f64,
    /// The mean over labels of the share of that label's people answered right.
    pub mean_class_accuracy: f64,
    /// The temperature of the combined answers (see
    /// [`crate::calibration::combine_photos`]), fitted on these people.
    pub temperature: f64,
    /// The expected calibration error of the combined probabilities (same bins) at
    /// temperature 1.
    pub ece_before: f64,
    /// And at `temperature`.
    pub ece_after: f64,
}

impl Calibration {
    fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidCard(reason));
        let temperatures = self
            .per_person
            .iter()
            .map(|p| ("per_person temperature", p.temperature));
        for (name, t) in [("calibration temperature", self.temperature)]
            .into_iter()
            .chain(temperatures)
        {
            if !crate::calibration::TEMPERATURES.contains(&t) {
                return invalid(format!(
                    "{name} {t} is outside {}..={}",
                    crate::calibration::TEMPERATURES.start(),
                    crate::calibration::TEMPERATURES.end()
                ));
            }
        }
        if self.method.len() > MAX_PROTOCOL_BYTES || self.fitted_on.len() > MAX_PROTOCOL_BYTES {
            return invalid(format!(
                "calibration method or fitted_on longer than {MAX_PROTOCOL_BYTES} bytes"
            ));
        }
        if !(1..=1000).contains(&self.bins) {
            return invalid(format!(
                "calibration bins {} is outside 1..=1000",
                self.bins
            ));
        }
        if self.coverage.len() > 1000 {
            return invalid(format!(
                "calibration coverage of {} points (at most 1000)",
                self.coverage.len()
            ));
        }
        let coverage = self.coverage.iter().flat_map(|p| {
            [
                ("coverage threshold", p.threshold),
                ("coverage kept", p.kept),
                ("coverage accuracy", p.accuracy),
                ("coverage mean_class_accuracy", p.mean_class_accuracy),
            ]
        });
        let person = self.per_person.iter().flat_map(|p| {
            [
                ("per_person accuracy", p.accuracy),
                ("per_person mean_class_accuracy", p.mean_class_accuracy),
                ("per_person ece_before", p.ece_before),
                ("per_person ece_after", p.ece_after),
            ]
        });
        let fractions = [
            ("ece_before", self.ece_before),
            ("ece_after", self.ece_after),
        ]
        .into_iter()
        .chain(person);
        for (name, value) in fractions.chain(coverage) {
            if !(0.0..=1.0).contains(&value) {
                return invalid(format!("calibration {name} = {value} is not in [0, 1]"));
            }
        }
        Ok(())
    }
}

impl ModelCard {
    /// Parses and checks a card read from a model file's metadata: the whole text is one
    /// card of at most [`MAX_CARD_BYTES`], and it passes [`ModelCard::validate`].
    pub fn from_json(json: &str) -> Result<ModelCard, Error> {
        if json.len() > MAX_CARD_BYTES {
            return Err(Error::InvalidCard(format!(
                "{} bytes of JSON, more than the {MAX_CARD_BYTES} a card may take",
                json.len()
            )));
        }
        let card: ModelCard =
            serde_json::from_str(json).map_err(|e| Error::InvalidCard(e.to_string()))?;
        card.validate()?;
        Ok(card)
    }

    /// The temperature a person's combined photos are scaled by (1 without a per-person
    /// calibration), see [`crate::calibration::combine_photos`].
    pub fn group_temperature(&self) -> f64 {
        self.calibration
            .as_ref()
            .and_then(|c| c.per_person.as_ref())
            .map_or(1.0, |p| p.temperature)
    }

    /// The temperature the logits are divided by before the softmax (1 without
    /// calibration).
    pub fn temperature(&self) -> f64 {
        self.calibration.as_ref().map_or(1.0, |c| c.temperature)
    }

    /// The compact JSON stored in model files.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("card serialises")
    }

    /// Reads the card out of a metadata map, naming the file when it is missing.
    pub fn from_metadata(
        metadata: Option<&std::collections::HashMap<String, String>>,
        file: &std::path::Path,
    ) -> Result<ModelCard, Error> {
        let json = metadata
            .and_then(|m| m.get(CARD_METADATA_KEY))
            .ok_or_else(|| {
                Error::InvalidCard(format!(
                    "{} has no model card (metadata key `{CARD_METADATA_KEY}`)",
                    file.display()
                ))
            })?;
        ModelCard::from_json(json)
            .map_err(|e| Error::InvalidCard(format!("{}: {e}", file.display())))
    }

    /// Checks every field a consumer relies on, before anything is sized from it: the
    /// schema version; two to [`MAX_LABELS`] distinct, non-empty labels without control
    /// characters; the input size within [`INPUT_SIZES`] (layout and colour are typed),
    /// means in [0, 1] and standard deviations in [[`MIN_STD`], 1]; C within
    /// [`INIT_CHANNELS`] and the cell count within [`LAYERS`]; accuracies in [0, 1]; and
    /// the genotype. The number of classes is the number of labels.
    pub fn validate(&self) -> Result<(), Error> {
        if self.schema_version != CARD_SCHEMA_VERSION {
            return Err(Error::InvalidCard(format!(
                "schema version {} is not supported (expected {CARD_SCHEMA_VERSION})",
                self.schema_version
            )));
        }
        validate_labels(&self.labels)?;
        self.input.validate()?;
        self.network.validate()?;
        if let Some(metrics) = &self.metrics {
            metrics.validate()?;
        }
        if let Some(cv) = &self.cross_validation {
            cv.validate()?;
        }
        if let Some(calibration) = &self.calibration {
            calibration.validate()?;
        }
        self.genotype
            .validate()
            .map_err(|e| Error::InvalidCard(e.to_string()))?;
        self.check_multiply_adds()
    }

    /// The multiply-adds of one image through the network the card describes (its genotype,
    /// width, cells, stem stride, input size and labels), counted.
    pub fn counted_multiply_adds(&self) -> u64 {
        let network = &self.network;
        crate::cost::network_cost(
            &self.genotype,
            network.init_channels,
            network.layers,
            network.stem_stride,
            self.input.size as usize,
            self.labels.len(),
        )
        .total
        .multiply_adds
    }

    /// Refuses a recorded multiply-add count that is not the one of the network the card
    /// describes (a changed input size, genotype or width).
    fn check_multiply_adds(&self) -> Result<(), Error> {
        let Some(recorded) = self.network.multiply_adds else {
            return Ok(());
        };
        let counted = self.counted_multiply_adds();
        if recorded != counted {
            return Err(Error::InvalidCard(format!(
                "network multiply_adds {recorded} is not its network's {counted}"
            )));
        }
        Ok(())
    }
}

impl InputSpec {
    /// The input size within [`INPUT_SIZES`], means in [0, 1], standard deviations in
    /// [[`MIN_STD`], 1].
    fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidCard(reason));
        if !INPUT_SIZES.contains(&self.size) {
            return invalid(format!(
                "input size {} is outside {}..={}",
                self.size,
                INPUT_SIZES.start(),
                INPUT_SIZES.end()
            ));
        }
        if !self.mean.iter().all(|m| (0.0..=1.0).contains(m)) {
            return invalid(format!(
                "input mean {:?} must lie in [0, 1] (pixels are scaled to [0, 1])",
                self.mean
            ));
        }
        if !self.std.iter().all(|s| (MIN_STD..=1.0).contains(s)) {
            return invalid(format!(
                "input std {:?} must lie in [{MIN_STD:e}, 1]",
                self.std
            ));
        }
        Ok(())
    }
}

impl NetworkSpec {
    /// C within [`INIT_CHANNELS`], the cell count within [`LAYERS`], a known stem stride,
    /// and measured latencies with positive threads, batch and time.
    fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidCard(reason));
        if !INIT_CHANNELS.contains(&self.init_channels) {
            return invalid(format!(
                "network init_channels {} is outside {}..={}",
                self.init_channels,
                INIT_CHANNELS.start(),
                INIT_CHANNELS.end()
            ));
        }
        if !LAYERS.contains(&self.layers) {
            return invalid(format!(
                "network layers {} is outside {}..={}",
                self.layers,
                LAYERS.start(),
                LAYERS.end()
            ));
        }
        if !STEM_STRIDES.contains(&self.stem_stride) {
            return invalid(format!(
                "network stem_stride {} is not one of {STEM_STRIDES:?}",
                self.stem_stride
            ));
        }
        for latency in &self.latency {
            let MeasuredLatency {
                threads,
                batch,
                median_ms,
                ..
            } = latency;
            if *threads == 0 || *batch == 0 || !(median_ms.is_finite() && *median_ms > 0.0) {
                return invalid(format!(
                    "network latency {median_ms} ms at batch {batch} with {threads} threads: \
                     threads and batch must be positive, the time finite and positive"
                ));
            }
        }
        Ok(())
    }
}

impl Metrics {
    /// Every accuracy in [0, 1].
    fn validate(&self) -> Result<(), Error> {
        let fractions = [
            ("accuracy", &self.accuracy),
            ("mean_class_accuracy", &self.mean_class_accuracy),
        ]
        .into_iter()
        .chain(self.per_aspect.iter().map(|(k, v)| (k.as_str(), v)));
        for (name, value) in fractions {
            if !(0.0..=1.0).contains(value) {
                return Err(Error::InvalidCard(format!(
                    "metric {name} = {value} is not in [0, 1]"
                )));
            }
        }
        Ok(())
    }
}

/// Two to [`MAX_LABELS`] labels, each non-empty, at most [`MAX_LABEL_BYTES`] long, free of
/// control characters and different from the others.
fn validate_labels(labels: &[String]) -> Result<(), Error> {
    let invalid = |reason: String| Err(Error::InvalidCard(reason));
    if !(2..=MAX_LABELS).contains(&labels.len()) {
        return invalid(format!(
            "{} labels: a card needs 2 to {MAX_LABELS}",
            labels.len()
        ));
    }
    for (i, label) in labels.iter().enumerate() {
        if label.trim().is_empty() || label.len() > MAX_LABEL_BYTES {
            return invalid(format!(
                "label {i} {label:?} must be non-blank and at most {MAX_LABEL_BYTES} bytes"
            ));
        }
        if label.chars().any(char::is_control) {
            return invalid(format!("label {i} {label:?} holds a control character"));
        }
        if labels[..i].contains(label) {
            return invalid(format!("label {label:?} is given twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn card() -> ModelCard {
        ModelCard {
            schema_version: CARD_SCHEMA_VERSION,
            labels: vec!["female".into(), "male".into()],
            input: InputSpec {
                size: 32,
                layout: TensorLayout::Nchw,
                colour: ColourOrder::Rgb,
                resize: ResizeRule::StretchBilinear,
                mean: [0.5, 0.45, 0.4],
                std: [0.25, 0.2, 0.2],
            },
            genotype: Genotype::published("DARTS_V2").unwrap(),
            network: NetworkSpec {
                init_channels: 8,
                layers: 5,
                stem_stride: 1,
                auxiliary: false,
                parameters: 1000,
                multiply_adds: None,
                latency: Vec::new(),
            },
            metrics: Some(Metrics {
                split: "test".into(),
                images: 96,
                subjects: 18,
                accuracy: 0.95,
                mean_class_accuracy: 0.94,
                per_aspect: BTreeMap::from([("dorsal left".into(), 0.9)]),
            }),
            cross_validation: None,
            calibration: None,
            provenance: Provenance {
                data: "data".into(),
                genotype_source: "DARTS_V2".into(),
                train: serde_json::json!({"epochs": 3}),
                seed: 1,
                tool_version: "test".into(),
            },
        }
    }

    /// The error of `card` after `edit`, which must name `needle`.
    fn refused(edit: impl FnOnce(&mut ModelCard), needle: &str) {
        let mut c = card();
        edit(&mut c);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in {err}");
        // The JSON form is refused the same way.
        let err = ModelCard::from_json(&c.to_json()).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }

    #[test]
    fn labels_are_two_or_more_distinct_names() {
        card().validate().unwrap();
        refused(|c| c.labels.truncate(1), "1 labels");
        refused(|c| c.labels.clear(), "0 labels");
        refused(
            |c| c.labels = (0..=MAX_LABELS).map(|i| i.to_string()).collect(),
            "1001 labels",
        );
        refused(|c| c.labels[1] = " ".into(), "non-blank");
        refused(
            |c| c.labels[1] = "x".repeat(MAX_LABEL_BYTES + 1),
            "non-blank",
        );
        refused(|c| c.labels[1] = "ma\nle".into(), "control character");
        refused(
            |c| c.labels[1] = "female".into(),
            "\"female\" is given twice",
        );
    }

    #[test]
    fn input_and_statistics_are_bounded_and_finite() {
        refused(|c| c.input.size = 0, "input size 0");
        refused(|c| c.input.size = 4, "input size 4");
        refused(|c| c.input.size = 100_000, "input size 100000");
        for (known, unknown) in [("\"NCHW\"", "\"NHWC\""), ("\"RGB\"", "\"BGR\"")] {
            let json = card().to_json().replace(known, unknown);
            let err = ModelCard::from_json(&json).unwrap_err().to_string();
            assert!(err.contains(&unknown[1..4]), "{unknown} not in {err}");
        }
        refused(|c| c.input.std[1] = 0.0, "input std");
        refused(|c| c.input.std[2] = -0.2, "input std");
        refused(|c| c.input.std[0] = 1e-30, "input std");
        refused(|c| c.input.mean[0] = 7.0, "input mean");
        // NaN and infinity cannot be written as JSON; validate sees them in memory.
        for bad in [f32::NAN, f32::INFINITY] {
            let mut c = card();
            c.input.mean[0] = bad;
            assert!(c.validate().is_err());
            let mut c = card();
            c.input.std[0] = bad;
            assert!(c.validate().is_err());
        }
    }

    #[test]
    fn network_size_and_metrics_are_bounded() {
        refused(|c| c.network.init_channels = 0, "init_channels 0");
        refused(
            |c| c.network.init_channels = 1 << 40,
            "init_channels 1099511627776",
        );
        refused(|c| c.network.layers = 0, "layers 0");
        refused(|c| c.network.layers = 10_000, "layers 10000");
        refused(|c| c.network.multiply_adds = Some(12), "multiply_adds 12");
        let mut counted = card();
        counted.network.multiply_adds = Some(counted.counted_multiply_adds());
        counted.validate().unwrap();
        assert_eq!(ModelCard::from_json(&counted.to_json()).unwrap(), counted);
        // A strided stem is recorded; a card without the field has stride 1.
        refused(|c| c.network.stem_stride = 3, "stem_stride 3");
        let mut strided = card();
        strided.network.stem_stride = 2;
        assert!(strided.to_json().contains("\"stem_stride\":2"));
        assert_eq!(ModelCard::from_json(&strided.to_json()).unwrap(), strided);
        assert!(!card().to_json().contains("stem_stride"));
        let measured = MeasuredLatency {
            cpu: "AMD EPYC".into(),
            threads: 2,
            batch: 64,
            median_ms: 60.5,
        };
        let mut timed = card();
        timed.network.latency = vec![measured.clone()];
        timed.validate().unwrap();
        assert_eq!(ModelCard::from_json(&timed.to_json()).unwrap(), timed);
        let with = |edit: fn(&mut MeasuredLatency)| {
            let mut latency = measured.clone();
            edit(&mut latency);
            move |c: &mut ModelCard| c.network.latency = vec![latency]
        };
        refused(with(|l| l.median_ms = 0.0), "network latency 0 ms");
        refused(with(|l| l.median_ms = -1.0), "network latency -1 ms");
        refused(with(|l| l.threads = 0), "with 0 threads");
        refused(with(|l| l.batch = 0), "at batch 0");
        let mut not_a_time = card();
        not_a_time.network.latency = vec![MeasuredLatency {
            median_ms: f64::NAN,
            ..measured
        }];
        assert!(not_a_time.validate().is_err());
        refused(
            |c| c.metrics.as_mut().unwrap().accuracy = 1.5,
            "accuracy = 1.5",
        );
        refused(|c| c.genotype.normal_concat = vec![2, 2], "twice");
        refused(|c| c.schema_version = 2, "schema version 2");
    }

    fn cross_validation() -> CrossValidation {
        let figure = MeanStd {
            mean: 0.9,
            std: 0.03,
        };
        CrossValidation {
            folds: 5,
            protocol: "5-fold by subject".into(),
            images: 1923,
            subjects: 123,
            accuracy: figure,
            mean_class_accuracy: figure,
            per_class: BTreeMap::from([("female".into(), figure), ("male".into(), figure)]),
            per_side: BTreeMap::from([("dorsal".into(), figure)]),
            majority_accuracy: figure,
            per_source: BTreeMap::from([(
                "originals".into(),
                SourceFigures {
                    accuracy: figure,
                    mean_class_accuracy: figure,
                    per_class: BTreeMap::from([("female".into(), figure)]),
                    per_side: BTreeMap::from([("palmar".into(), figure)]),
                },
            )]),
        }
    }

    #[test]
    fn cross_validated_figures_round_trip_and_are_bounded() {
        let mut c = card();
        c.cross_validation = Some(cross_validation());
        assert_eq!(ModelCard::from_json(&c.to_json()).unwrap(), c);
        // A card without the section reads back without it, and writes none.
        assert!(!card().to_json().contains("cross_validation"));
        let set = |edit: fn(&mut CrossValidation)| {
            move |c: &mut ModelCard| {
                let mut cv = cross_validation();
                edit(&mut cv);
                c.cross_validation = Some(cv);
            }
        };
        refused(set(|cv| cv.folds = 1), "folds 1");
        refused(
            set(|cv| cv.mean_class_accuracy.mean = 1.2),
            "mean_class_accuracy = 1.2",
        );
        refused(
            set(|cv| cv.per_side.get_mut("dorsal").unwrap().std = -0.1),
            "dorsal",
        );
        refused(
            set(|cv| {
                let originals = cv.per_source.get_mut("originals").unwrap();
                originals.per_side.get_mut("palmar").unwrap().mean = 1.5;
            }),
            "palmar",
        );
        refused(
            set(|cv| cv.protocol = "x".repeat(5000)),
            "protocol of 5000 bytes",
        );
    }

    #[test]
    fn a_calibration_round_trips_sets_the_temperature_and_is_bounded() {
        let mut c = card();
        assert_eq!(c.temperature(), 1.0);
        c.calibration = Some(Calibration {
            method: "temperature scaling".into(),
            temperature: 1.7,
            fitted_on: "out-of-fold predictions".into(),
            images: 1923,
            bins: 15,
            ece_before: 0.07,
            ece_after: 0.02,
            coverage: vec![crate::calibration::CoveragePoint {
                threshold: 0.9,
                kept: 0.7,
                accuracy: 0.95,
                mean_class_accuracy: 0.94,
            }],
            per_person: Some(PersonFigures {
                people: 123,
                accuracy: 0.95,
                mean_class_accuracy: 0.94,
                temperature: 0.7,
                ece_before: 0.06,
                ece_after: 0.04,
            }),
        });
        assert_eq!(c.temperature(), 1.7);
        assert_eq!(ModelCard::from_json(&c.to_json()).unwrap(), c);
        assert!(
            !card().to_json().contains("calibration"),
            "older cards unchanged"
        );
        let set = |edit: fn(&mut Calibration)| {
            move |card: &mut ModelCard| {
                let mut calibration = c_calibration();
                edit(&mut calibration);
                card.calibration = Some(calibration);
            }
        };
        fn c_calibration() -> Calibration {
            Calibration {
                method: "temperature scaling".into(),
                temperature: 1.7,
                fitted_on: "x".into(),
                images: 10,
                bins: 15,
                ece_before: 0.1,
                ece_after: 0.05,
                coverage: Vec::new(),
                per_person: None,
            }
        }
        refused(set(|c| c.temperature = 0.0), "temperature 0");
        refused(set(|c| c.bins = 0), "bins 0");
        refused(set(|c| c.ece_after = 1.5), "ece_after = 1.5");
        refused(
            set(|c| {
                c.coverage = vec![crate::calibration::CoveragePoint {
                    threshold: 0.9,
                    kept: 1.2,
                    accuracy: 0.9,
                    mean_class_accuracy: 0.9,
                }]
            }),
            "coverage kept = 1.2",
        );
    }

    #[test]
    fn mean_std_is_the_sample_deviation() {
        let s = MeanStd::of(&[0.8, 0.9, 1.0]);
        assert!((s.mean - 0.9).abs() < 1e-12 && (s.std - 0.1).abs() < 1e-12);
        assert_eq!(MeanStd::of(&[0.5]).std, 0.0);
        assert_eq!(s.to_string(), "0.900 ± 0.100");
    }

    #[test]
    fn the_whole_json_is_one_card_or_it_is_refused() {
        let json = card().to_json();
        let err = ModelCard::from_json(&json.replacen('{', "{\"labelz\": [], ", 1)).unwrap_err();
        assert!(err.to_string().contains("unknown field `labelz`"), "{err}");
        let err = ModelCard::from_json(&format!("{json}{json}")).unwrap_err();
        assert!(err.to_string().contains("trailing characters"), "{err}");
        let padded = format!("{json}{}", " ".repeat(MAX_CARD_BYTES));
        let err = ModelCard::from_json(&padded).unwrap_err();
        assert!(err.to_string().contains("more than the"), "{err}");
        let err = ModelCard::from_json(&json.replace("\"size\":32,", "")).unwrap_err();
        assert!(err.to_string().contains("missing field `size`"), "{err}");
    }

    /// A valid card with every field drawn at random within the bounds. (Over 80 lines: one
    /// strategy per field of the card, kept together so that it reads as the card it draws.)
    fn valid_card() -> impl Strategy<Value = ModelCard> {
        let labels = proptest::collection::btree_set("[a-z][a-z _-]{0,11}", 2..6)
            .prop_map(|set| set.into_iter().collect::<Vec<String>>())
            .prop_shuffle();
        let unit = 0.0f32..=1.0;
        let std = MIN_STD..=1.0f32;
        let input = (
            INPUT_SIZES,
            [unit.clone(), unit.clone(), unit],
            [std.clone(), std.clone(), std],
        )
            .prop_map(|(size, mean, std)| InputSpec {
                size,
                layout: TensorLayout::Nchw,
                colour: ColourOrder::Rgb,
                resize: ResizeRule::StretchBilinear,
                mean,
                std,
            });
        let network = (
            INIT_CHANNELS,
            LAYERS,
            proptest::sample::select(STEM_STRIDES.to_vec()),
            any::<bool>(),
            any::<usize>(),
        )
            .prop_map(
                |(init_channels, layers, stem_stride, auxiliary, parameters)| NetworkSpec {
                    multiply_adds: None,
                    latency: Vec::new(),
                    init_channels,
                    layers,
                    stem_stride,
                    auxiliary,
                    parameters,
                },
            );
        let metrics = proptest::option::of(
            (
                "[a-z]{1,8}",
                any::<usize>(),
                any::<usize>(),
                0.0f64..=1.0,
                0.0f64..=1.0,
                proptest::collection::btree_map("\\PC{1,12}", 0.0f64..=1.0, 0..4),
            )
                .prop_map(
                    |(split, images, subjects, accuracy, mean_class_accuracy, per_aspect)| {
                        Metrics {
                            split,
                            images,
                            subjects,
                            accuracy,
                            mean_class_accuracy,
                            per_aspect,
                        }
                    },
                ),
        );
        let provenance = ("\\PC{0,20}", "\\PC{0,20}", any::<i64>(), any::<u64>()).prop_map(
            |(data, genotype_source, epochs, seed)| Provenance {
                data,
                genotype_source,
                train: serde_json::json!({ "epochs": epochs, "note": "x" }),
                seed,
                tool_version: "hands-search 0.1.0".into(),
            },
        );
        let genotype = proptest::sample::select(crate::genotype::PUBLISHED.to_vec())
            .prop_map(|name| Genotype::published(name).unwrap());
        (labels, input, genotype, network, metrics, provenance).prop_map(
            |(labels, input, genotype, network, metrics, provenance)| ModelCard {
                schema_version: CARD_SCHEMA_VERSION,
                labels,
                input,
                genotype,
                network,
                metrics,
                cross_validation: None,
                provenance,
                calibration: None,
            },
        )
    }

    proptest! {
        #[test]
        fn round_trips_through_json(c in valid_card()) {
            c.validate().unwrap();
            prop_assert_eq!(&ModelCard::from_json(&c.to_json()).unwrap(), &c);
            let pretty = serde_json::to_string_pretty(&c).unwrap();
            prop_assert_eq!(&ModelCard::from_json(&pretty).unwrap(), &c);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Ok(c) = ModelCard::from_json(&text) {
                c.validate().unwrap();
            }
        }

        #[test]
        fn edited_cards_never_panic(
            c in valid_card(),
            at in any::<proptest::sample::Index>(),
            cut in 0usize..12,
            insert in "[\\PC0-9.e\\-\\[\\]{},:\"]{0,6}",
        ) {
            let json = c.to_json();
            let chars: Vec<char> = json.chars().collect();
            let i = at.index(chars.len());
            let end = (i + cut).min(chars.len());
            let edited: String = chars[..i]
                .iter()
                .copied()
                .chain(insert.chars())
                .chain(chars[end..].iter().copied())
                .collect();
            if let Ok(parsed) = ModelCard::from_json(&edited) {
                parsed.validate().unwrap();
            }
        }
    }
}
