//! Atomic checkpoints: one safetensors file holding every tensor of a run (weights, BN
//! statistics, architecture parameters, optimizer state) with the run's JSON state (epoch,
//! RNG, best-so-far, ...) in its `__metadata__`.
//!
//! [`save`] writes through [`hands_models::output::write_atomic`] (a temporary file beside
//! the target, synced and renamed over it), so a process killed at any moment leaves either
//! the previous or the new checkpoint, and a save that fails leaves the previous one
//! untouched. A checkpoint carries a CRC-32 of its tensors (names, dtypes, shapes and bytes)
//! in its metadata, which [`load`] verifies: a file whose tensor bytes were overwritten is
//! refused, not resumed into another run.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use hands_models::nn::model_file;
use hands_models::plan::{is_under, AUXILIARY};
use hands_models::seal::Seal;
use hands_reports::file_error::RunFileError;
use serde::Serialize;

/// Metadata key of the run state JSON in a checkpoint.
pub const STATE_METADATA_KEY: &str = "hands.state";
/// Metadata key of the CRC-32 (8 hex digits) of a checkpoint's tensors.
pub const CHECKSUM_METADATA_KEY: &str = "hands.tensors_crc32";

/// A safetensors file's `__metadata__`: string keys to string values.
pub type Metadata = HashMap<String, String>;

/// Saves `tensors` and the JSON of `state` to `path` atomically, see the module docs.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    state: &impl Serialize,
) -> Result<(), RunFileError> {
    let json = serde_json::to_string(state)
        .map_err(|e| RunFileError::format(path, format!("cannot serialise state: {e}")))?;
    let metadata = HashMap::from([(STATE_METADATA_KEY.to_string(), json)]);
    write_safetensors(path, tensors, metadata, true)
}

/// Loads a checkpoint written by [`save`] onto `device`: its tensors by name and its state.
pub fn load(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, serde_json::Value), RunFileError> {
    let bytes = read_file(path)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| RunFileError::format(path, format!("not a valid safetensors file: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let stored = metadata.get(CHECKSUM_METADATA_KEY).ok_or_else(|| {
        RunFileError::format(
            path,
            format!("no `{CHECKSUM_METADATA_KEY}` metadata: not a checkpoint of this version"),
        )
    })?;
    let parsed = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| RunFileError::format(path, format!("not a valid safetensors file: {e}")))?;
    let tensors = parsed.tensors();
    let actual = checksum(tensors.iter().map(|(name, view)| (name.as_str(), view)));
    if *stored != actual {
        return Err(RunFileError::format(
            path,
            format!(
                "its tensors do not match their checksum (stored {stored}, computed {actual}): \
                 the file is damaged"
            ),
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| RunFileError::format(path, format!("not a valid safetensors file: {e}")))?;
    let json = metadata.get(STATE_METADATA_KEY).ok_or_else(|| {
        RunFileError::format(
            path,
            format!("not a checkpoint: no `{STATE_METADATA_KEY}` metadata"),
        )
    })?;
    let state = serde_json::from_str(json)
        .map_err(|e| RunFileError::format(path, format!("bad state JSON: {e}")))?;
    Ok((tensors, state))
}

/// Writes a safetensors file with `metadata` atomically (see the module docs), adding the
/// tensors' checksum to the metadata when `with_checksum`. On error `path` is untouched.
/// Tensor names must be unique.
fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    mut metadata: HashMap<String, String>,
    with_checksum: bool,
) -> Result<(), RunFileError> {
    let cpu = model_file::serializable(tensors).map_err(|e| RunFileError::format(path, e))?;
    if with_checksum {
        let crc = checksum(cpu.iter().map(|(name, t)| (*name, t)));
        metadata.insert(CHECKSUM_METADATA_KEY.to_string(), crc);
    }
    let bytes =
        safetensors::serialize(cpu, Some(metadata)).map_err(|e| RunFileError::format(path, e))?;
    hands_models::output::write_atomic(path, &bytes)?;
    Ok(())
}

/// CRC-32 of tensors in name order: each one's name, dtype, shape and little-endian bytes
/// (a model file's seal without the card, see [`hands_models::seal`]).
fn checksum<'a, V: safetensors::View>(tensors: impl IntoIterator<Item = (&'a str, V)>) -> String {
    let mut seal = Seal::default();
    model_file::seal_tensors(&mut seal, tensors);
    seal.finish()
}

fn read_file(path: &Path) -> Result<Vec<u8>, RunFileError> {
    std::fs::read(path).map_err(|e| RunFileError::io(path, e))
}

/// Reads a safetensors file: its tensors on `device` and its `__metadata__` (empty when the
/// file has none).
pub fn read_safetensors(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, Metadata), RunFileError> {
    let bytes = read_file(path)?;
    let invalid = |e: &dyn std::fmt::Display| {
        RunFileError::format(path, format!("not a valid safetensors file: {e}"))
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| invalid(&e))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| invalid(&e))?;
    Ok((tensors, metadata))
}

/// The variables of `varmap` for which `keep(name)` holds, as `(prefix + name, value)`
/// pairs sorted by name (values detached from the variables: later updates do not show).
pub fn varmap_tensors(
    varmap: &VarMap,
    prefix: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(String, Tensor)>, candle_core::Error> {
    let vars = varmap.data().lock().expect("varmap lock");
    let mut out = Vec::with_capacity(vars.len());
    for (name, var) in vars.iter().filter(|(name, _)| keep(name)) {
        out.push((format!("{prefix}{name}"), var.as_tensor().copy()?.detach()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Sets every variable of `varmap` from `tensors[prefix + name]` (converted to the
/// variable's dtype). Fails, naming `path` and the tensor, when one is missing or has
/// another shape, or when `tensors` holds a name under `prefix` that is no variable (a file
/// of another network).
pub fn load_varmap(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    path: &Path,
) -> Result<(), RunFileError> {
    let vars = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let key = format!("{prefix}{name}");
        let tensor = tensors.get(&key).ok_or_else(|| {
            RunFileError::format(path, format!("tensor `{key}` of the network is missing"))
        })?;
        if tensor.dims() != var.dims() {
            return Err(RunFileError::format(
                path,
                format!(
                    "tensor `{key}` has shape {:?}, the network expects {:?}",
                    tensor.dims(),
                    var.dims()
                ),
            ));
        }
        tensor
            .to_dtype(var.dtype())
            .and_then(|t| t.to_device(var.device()))
            .and_then(|t| var.set(&t))
            .map_err(|e| RunFileError::format(path, format!("tensor `{key}`: {e}")))?;
    }
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|k| {
            k.strip_prefix(prefix)
                .is_some_and(|name| !vars.contains_key(name))
        })
        .collect();
    if !extra.is_empty() {
        extra.sort();
        return Err(RunFileError::format(
            path,
            format!("tensors {extra:?} are not parameters of the network (another architecture?)"),
        ));
    }
    Ok(())
}

/// The tensors of the inference network (auxiliary head left out), named like its module
/// tree, with `prefix`.
pub fn inference_tensors(
    varmap: &VarMap,
    prefix: &str,
) -> Result<Vec<(String, Tensor)>, candle_core::Error> {
    varmap_tensors(varmap, prefix, |name| !is_under(name, AUXILIARY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn tensors(fill: f32) -> Vec<(String, Tensor)> {
        vec![
            (
                "cells.0.weight".to_string(),
                Tensor::full(fill, (2, 3), &Device::Cpu).unwrap(),
            ),
            (
                "sgd.buf.0".to_string(),
                Tensor::arange(0i64, 4, &Device::Cpu).unwrap(),
            ),
        ]
    }

    #[test]
    fn round_trip_keeps_tensors_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        let state = serde_json::json!({"epoch": 3, "best": {"val_acc": 0.75}});
        save(&path, &tensors(1.5), &state).unwrap();
        let (loaded, got) = load(&path, &Device::Cpu).unwrap();
        assert_eq!(got, state);
        assert_eq!(loaded.len(), 2);
        let w = &loaded["cells.0.weight"];
        assert_eq!((w.dims(), w.dtype()), (&[2usize, 3][..], DType::F32));
        assert_eq!(w.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [1.5; 6]);
        assert_eq!(loaded["sgd.buf.0"].to_vec1::<i64>().unwrap(), [0, 1, 2, 3]);
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_save_leaves_old_checkpoint_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        save(&path, &tensors(1.0), &serde_json::json!({"epoch": 1})).unwrap();

        // A state that cannot be serialised fails before anything is written.
        let bad = HashMap::from([((1, 2), 3)]);
        assert!(save(&path, &tensors(3.0), &bad).is_err());

        // Duplicate names are refused.
        let mut twice = tensors(4.0);
        twice.push(twice[0].clone());
        let err = save(&path, &twice, &serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");

        let (loaded, state) = load(&path, &Device::Cpu).unwrap();
        assert_eq!(state["epoch"], 1);
        let w = loaded["cells.0.weight"].flatten_all().unwrap();
        assert_eq!(w.to_vec1::<f32>().unwrap(), [1.0; 6]);
    }

    #[test]
    fn a_leftover_temporary_file_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.safetensors");
        // A save killed mid-write leaves a torn temporary file beside the target.
        std::fs::write(dir.path().join(".ckpt.safetensors.x1y2z3.tmp"), b"torn").unwrap();
        save(&path, &tensors(1.0), &serde_json::json!({"epoch": 0})).unwrap();
        assert_eq!(load(&path, &Device::Cpu).unwrap().1["epoch"], 0);
    }

    #[test]
    fn bad_files_are_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.safetensors");
        let err = load(&missing, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("missing.safetensors"), "{err}");

        let garbage = dir.path().join("garbage.safetensors");
        std::fs::write(&garbage, b"not a safetensors file").unwrap();
        let err = load(&garbage, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("garbage.safetensors"), "{err}");

        let plain = dir.path().join("plain.safetensors");
        write_safetensors(&plain, &tensors(1.0), HashMap::new(), false).unwrap();
        let err = load(&plain, &Device::Cpu).unwrap_err().to_string();
        assert!(
            err.contains("plain.safetensors") && err.contains("not a checkpoint"),
            "{err}"
        );
    }
}
