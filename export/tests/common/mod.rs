//! Shared helpers of the export tests: seeded random model files and ONNX Runtime presence.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use hands_export::onnx::proto::ModelProto;
use hands_export::{BatchSize, ExportOptions, OnnxOptions, Parity};
use hands_models::card::{
    ColourOrder, InputSpec, NetworkSpec, Provenance, ResizeRule, TensorLayout, CARD_METADATA_KEY,
    CARD_SCHEMA_VERSION,
};
use hands_models::nn::network::{parameter_count, Network, NetworkConfig};
use hands_models::{Genotype, ModelCard};
use hands_tests::{named_tensors, SeededTensors};
use prost::Message;

pub const C: usize = 8;
pub const LAYERS: usize = 5;
pub const SIZE: u32 = 32;

pub fn card(genotype: &Genotype, auxiliary: bool, parameters: usize) -> ModelCard {
    ModelCard {
        schema_version: CARD_SCHEMA_VERSION,
        labels: vec!["female".into(), "male".into()],
        input: InputSpec {
            size: SIZE,
            layout: TensorLayout::Nchw,
            colour: ColourOrder::Rgb,
            resize: ResizeRule::StretchBilinear,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        },
        genotype: genotype.clone(),
        network: NetworkSpec {
            multiply_adds: None,
            latency: Vec::new(),
            init_channels: C,
            layers: LAYERS,
            stem_stride: 1,
            auxiliary,
            parameters,
        },
        metrics: None,
        cross_validation: None,
        calibration: None,
        provenance: Provenance {
            data: "synthetic".into(),
            genotype_source: "test".into(),
            train: serde_json::json!({}),
            seed: 7,
            tool_version: "test".into(),
        },
    }
}

/// A genotype that puts every operation on stride-2 edges (reduce cell, inputs 0 and 1)
/// and on stride-1 edges (normal cell, and intermediate nodes of the reduce cell).
pub fn all_ops() -> Genotype {
    Genotype::from_json(
        r#"{
        "normal": [["max_pool_3x3", 0], ["avg_pool_3x3", 1], ["skip_connect", 0], ["sep_conv_3x3", 1],
                   ["sep_conv_5x5", 2], ["dil_conv_3x3", 3], ["dil_conv_5x5", 4], ["skip_connect", 2]],
        "normal_concat": [2, 3, 4, 5],
        "reduce": [["max_pool_3x3", 0], ["avg_pool_3x3", 1], ["skip_connect", 0], ["sep_conv_3x3", 1],
                   ["sep_conv_5x5", 0], ["dil_conv_3x3", 1], ["dil_conv_5x5", 0], ["skip_connect", 1]],
        "reduce_concat": [2, 3, 4, 5]
    }"#,
    )
    .unwrap()
}

/// Tensors of a seeded network with auxiliary head; BN parameters and statistics random.
pub fn random_tensors(genotype: &Genotype, seed: u64) -> (BTreeMap<String, Tensor>, usize) {
    random_tensors_with_stem(genotype, seed, 1)
}

/// [`random_tensors`] of a network whose stem convolves at `stem_stride`.
pub fn random_tensors_with_stem(
    genotype: &Genotype,
    seed: u64,
    stem_stride: usize,
) -> (BTreeMap<String, Tensor>, usize) {
    let config = NetworkConfig {
        init_channels: C,
        layers: LAYERS,
        stem_stride,
        num_classes: 2,
        auxiliary: true,
    };
    let (_, varmap): (Network, VarMap) =
        Network::seeded(genotype, &config, seed, DType::F32, &Device::Cpu).unwrap();
    let params = parameter_count(&varmap, false);
    // The tensors in name order, so that the seeded stream gives each the same values on
    // every run.
    let mut random = SeededTensors::new(seed);
    let mut out = BTreeMap::new();
    for (name, t) in named_tensors(&varmap) {
        let n = t.dims().to_vec();
        let t = if name == "classifier.weight" {
            // Logits of a few units, as after training, so parity errors are not hidden.
            (t * 10.0).unwrap()
        } else if name.ends_with("running_mean") || name.ends_with(".bias") {
            random.normal(0.0, 0.2, n)
        } else if name.ends_with("running_var") || (name.ends_with(".weight") && n.len() == 1) {
            random.uniform(0.5, 1.5, n)
        } else {
            t
        };
        out.insert(name, t);
    }
    (out, params)
}

pub fn write_model(path: &Path, tensors: &BTreeMap<String, Tensor>, card: Option<&ModelCard>) {
    let metadata = card.map(|c| HashMap::from([(CARD_METADATA_KEY.to_string(), c.to_json())]));
    let bytes = safetensors::serialize(tensors.iter(), metadata).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A model file for `genotype` in `dir`, with its card.
pub fn model_file(dir: &Path, genotype: &Genotype, seed: u64) -> (PathBuf, ModelCard) {
    let (tensors, params) = random_tensors(genotype, seed);
    let card = card(genotype, true, params);
    let path = dir.join("model.safetensors");
    write_model(&path, &tensors, Some(&card));
    (path, card)
}

/// Whether ONNX Runtime is here; without it, a notice (or a failure under CI=true).
pub fn ort_available(test: &str) -> bool {
    hands_tests::available(test, "ONNX Runtime", hands_infer::runtime::runtime(None))
}

pub fn options(batch: BatchSize, with_ort: bool) -> ExportOptions {
    ExportOptions {
        name: "hands".into(),
        onnx: OnnxOptions { opset: 17, batch },
        parity: if with_ort {
            Parity::Check {
                ort_lib: None,
                images: Vec::new(),
            }
        } else {
            Parity::Skip
        },
        latency_threads: None,
    }
}

pub fn read_onnx(path: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

pub fn onnx_card(model: &ModelProto) -> ModelCard {
    let entry = model
        .metadata_props
        .iter()
        .find(|e| e.key.as_deref() == Some(CARD_METADATA_KEY))
        .expect("card in metadata_props");
    ModelCard::from_json(entry.value.as_deref().unwrap()).unwrap()
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
