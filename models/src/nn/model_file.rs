//! The model file: a safetensors file of the inference network's tensors with its model card
//! in the metadata (`hands-search train` writes `runs/NAME/model.safetensors`, `hands-export`
//! writes the folded `NAME.safetensors`). Its one reader and writer: `train`, `eval` and
//! `hands-export` all go through here, as does the network configuration of a card.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::network::{Network, NetworkConfig};
use crate::card::{ModelCard, CARD_METADATA_KEY};
use crate::plan::{is_under, NETWORK_SCOPES};
use crate::seal::{self, Seal, SealCheck, SEAL_METADATA_KEY};
use crate::Error;

type Result<T> = std::result::Result<T, Error>;

/// Largest model file read, in bytes: a network of the largest size a card allows
/// (C = 128, 32 cells) takes about 300 MB in f32.
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// A trained model file whose tensors fit the network of its card.
#[derive(Debug)]
pub struct ModelFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its model card.
    pub card: ModelCard,
    /// The inference network's tensors (f32, CPU), by name.
    pub tensors: HashMap<String, Tensor>,
    /// Tensors of the file that inference does not use (auxiliary head, optimizer state,
    /// architecture parameters), dropped from the export.
    pub dropped: Vec<String>,
}

impl ModelFile {
    /// Reads `path` (a regular file of at most [`MAX_MODEL_BYTES`]), its card and its
    /// tensors, and checks every tensor the card's network needs is present with the right
    /// shape. Errors name the file and the tensor.
    pub fn read(path: &Path) -> Result<ModelFile> {
        let model_err = |reason: String| Error::ModelFile {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = read_bounded(path).map_err(model_err)?;
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| model_err(format!("not a safetensors file: {e}")))?;
        let card = ModelCard::from_metadata(metadata.metadata().as_ref(), path)?;
        check_seal(
            &bytes,
            metadata.metadata().as_ref().unwrap_or(&HashMap::new()),
            path,
        )?;
        let loaded = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| model_err(format!("cannot read tensors: {e}")))?;

        let expected = expected_shapes(&card)?;
        let mut tensors = HashMap::with_capacity(expected.len());
        for (name, shape) in &expected {
            let tensor = loaded.get(name).ok_or_else(|| Error::MissingTensor {
                path: path.to_path_buf(),
                name: name.clone(),
                expected: shape.clone(),
            })?;
            if tensor.dims() != shape.as_slice() {
                return Err(Error::TensorShape {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    found: tensor.dims().to_vec(),
                    expected: shape.clone(),
                });
            }
            let tensor = tensor.to_dtype(DType::F32)?;
            let finite = tensor
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .all(|v| v.is_finite());
            if !finite {
                return Err(model_err(format!(
                    "tensor `{name}` holds NaN or infinite values"
                )));
            }
            tensors.insert(name.clone(), tensor);
        }
        let mut dropped = Vec::new();
        let mut extra: Vec<&String> = loaded
            .keys()
            .filter(|n| !expected.contains_key(*n))
            .collect();
        extra.sort();
        for name in extra {
            // A tensor under the network's scopes that the card's network does not have
            // means the file holds another architecture.
            if NETWORK_SCOPES.iter().any(|scope| is_under(name, scope)) {
                return Err(model_err(format!(
                    "tensor `{name}` is not a parameter of the network the card describes \
                     (genotype, {} cells, C = {}): the weights come from a different genotype \
                     or network size",
                    card.network.layers, card.network.init_channels
                )));
            }
            dropped.push(name.clone());
        }
        Ok(ModelFile {
            path: path.to_path_buf(),
            card,
            tensors,
            dropped,
        })
    }

    /// The inference network's shape (no auxiliary head).
    pub fn config(&self) -> NetworkConfig {
        inference_config(&self.card)
    }

    /// The candle network (eval mode) on these tensors, on `device`.
    pub fn network(&self, device: &Device) -> Result<Network> {
        build_network(&self.card, self.tensors.clone(), device)
    }
}

/// The bytes of `path`, a regular file of at most [`MAX_MODEL_BYTES`] (a FIFO, a device or
/// an oversized file is refused before it is read).
fn read_bounded(path: &Path) -> std::result::Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_MODEL_BYTES {
        return Err(format!(
            "{} bytes, more than the {MAX_MODEL_BYTES} a model file may take",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_MODEL_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(format!(
            "grew past {MAX_MODEL_BYTES} bytes while being read"
        ));
    }
    Ok(bytes)
}

/// The inference network of `card`: its genotype and size, without auxiliary head.
pub fn inference_config(card: &ModelCard) -> NetworkConfig {
    NetworkConfig {
        init_channels: card.network.init_channels,
        layers: card.network.layers,
        stem_stride: card.network.stem_stride,
        num_classes: card.labels.len(),
        auxiliary: false,
    }
}

/// Builds the candle network of `card` on `tensors` (which must fit it), on `device`.
pub fn build_network(
    card: &ModelCard,
    tensors: HashMap<String, Tensor>,
    device: &Device,
) -> Result<Network> {
    let tensors = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_device(device)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    Ok(Network::new(&card.genotype, &inference_config(card), vb)?)
}

/// The bytes of a model file: `tensors` (brought to the CPU, contiguous) with `card`, which
/// is validated first, in the metadata under [`CARD_METADATA_KEY`], sealed (see
/// [`crate::seal`]).
pub fn serialize(tensors: &[(String, Tensor)], card: &ModelCard) -> Result<Vec<u8>> {
    card.validate()?;
    let card_json = card.to_json();
    let cpu = serializable(tensors)?;
    let mut seal = Seal::of_card(&card_json);
    seal_tensors(&mut seal, cpu.iter().map(|(name, t)| (*name, t)));
    let metadata = HashMap::from([
        (CARD_METADATA_KEY.to_string(), card_json),
        (SEAL_METADATA_KEY.to_string(), seal.finish()),
    ]);
    safetensors::serialize(cpu, Some(metadata))
        .map_err(|e| Error::Weights(format!("cannot serialise the tensors: {e}")))
}

/// Adds `tensors` to `seal` in name order (each one's name, dtype, shape and bytes).
pub fn seal_tensors<'a, V: safetensors::View>(
    seal: &mut Seal,
    tensors: impl IntoIterator<Item = (&'a str, V)>,
) {
    let mut tensors: Vec<(&str, V)> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    for (name, view) in &tensors {
        let dtype = format!("{:?}", view.dtype());
        seal.tensor(name, &dtype, view.shape(), &view.data());
    }
}

/// Checks the seal of the model file `bytes` (read from `path`, whose `__metadata__` is
/// `metadata`); warns when it has none.
fn check_seal(bytes: &[u8], metadata: &HashMap<String, String>, path: &Path) -> Result<()> {
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::ModelFile {
        path: path.to_path_buf(),
        reason: format!("not a safetensors file: {e}"),
    })?;
    let card_json = metadata.get(CARD_METADATA_KEY).map_or("", String::as_str);
    let mut seal = Seal::of_card(card_json);
    let tensors = file.tensors();
    seal_tensors(
        &mut seal,
        tensors.iter().map(|(name, view)| (name.as_str(), view)),
    );
    let stored = metadata.get(SEAL_METADATA_KEY).map(String::as_str);
    let checked = seal::check(stored, seal.finish()).map_err(|reason| Error::ModelFile {
        path: path.to_path_buf(),
        reason,
    })?;
    if checked == SealCheck::Unsealed {
        tracing::warn!("{}", seal::unsealed_warning(path));
    }
    Ok(())
}

/// `tensors` ready for `safetensors::serialize`: names checked unique, each tensor on the
/// CPU and contiguous. (safetensors' `View` for candle tensors cannot report conversion
/// errors, so they are made here, where errors can be returned, naming the tensor.)
pub fn serializable(tensors: &[(String, Tensor)]) -> Result<Vec<(&str, Tensor)>> {
    let mut names = std::collections::HashSet::new();
    if let Some((name, _)) = tensors.iter().find(|(name, _)| !names.insert(name)) {
        return Err(Error::Weights(format!("tensor name `{name}` given twice")));
    }
    tensors
        .iter()
        .map(|(name, t)| {
            let cpu = t.to_device(&Device::Cpu).and_then(|t| t.contiguous());
            let cpu = cpu.map_err(|e| Error::Weights(format!("tensor `{name}`: {e}")))?;
            Ok((name.as_str(), cpu))
        })
        .collect()
}

/// Names and shapes of every tensor of the inference network described by `card`.
pub fn expected_shapes(card: &ModelCard) -> Result<BTreeMap<String, Vec<usize>>> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    Network::new(&card.genotype, &inference_config(card), vb)?;
    let vars = varmap.data().lock().expect("varmap lock");
    Ok(vars
        .iter()
        .map(|(name, var)| (name.clone(), var.dims().to_vec()))
        .collect())
}
