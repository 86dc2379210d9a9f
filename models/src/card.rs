//! The model card: everything needed to use a trained network correctly, stored inside
//! its safetensors and ONNX files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Genotype};

/// Version of the card schema written by this crate.
pub const CARD_SCHEMA_VERSION: u32 = 1;
/// Metadata key under which the card JSON is stored (safetensors `__metadata__`, ONNX
/// `metadata_props`).
pub const CARD_METADATA_KEY: &str = "hands.card";

/// How an image becomes the network's input tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Square side length in pixels.
    pub size: u32,
    /// Tensor layout, always `NCHW`.
    pub layout: String,
    /// Colour order of the channels, always `RGB`.
    pub colour: String,
    /// How the photo is brought to `size` x `size`.
    pub resize: ResizeRule,
    /// Per-channel mean subtracted after scaling pixels to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
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
pub struct NetworkSpec {
    /// Channels of the first cell (C).
    pub init_channels: usize,
    /// Number of cells.
    pub layers: usize,
    /// Whether the file holds an auxiliary head (training checkpoints only).
    pub auxiliary: bool,
    /// Number of learnable parameters of the inference network.
    pub parameters: usize,
}

/// Accuracy figures with the split they were measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// Where the model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Measured accuracy, if the model was evaluated.
    pub metrics: Option<Metrics>,
    /// Data and settings provenance.
    pub provenance: Provenance,
}

impl ModelCard {
    /// Parses and checks a card read from a model file's metadata.
    pub fn from_json(json: &str) -> Result<ModelCard, Error> {
        let card: ModelCard =
            serde_json::from_str(json).map_err(|e| Error::InvalidCard(e.to_string()))?;
        card.validate()?;
        Ok(card)
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

    /// Checks the fields a consumer relies on.
    pub fn validate(&self) -> Result<(), Error> {
        if self.schema_version != CARD_SCHEMA_VERSION {
            return Err(Error::InvalidCard(format!(
                "schema version {} is not supported (expected {CARD_SCHEMA_VERSION})",
                self.schema_version
            )));
        }
        if self.labels.len() < 2 {
            return Err(Error::InvalidCard("fewer than two labels".into()));
        }
        if self.input.size == 0 || self.input.std.iter().any(|&s| s <= 0.0) {
            return Err(Error::InvalidCard(
                "input size must be positive and std > 0".into(),
            ));
        }
        if self.input.layout != "NCHW" || self.input.colour != "RGB" {
            return Err(Error::InvalidCard(format!(
                "unsupported input layout {} / colour {}",
                self.input.layout, self.input.colour
            )));
        }
        self.genotype.validate()
    }
}
