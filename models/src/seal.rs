//! Seals: a CRC-32 written into a model file beside its card, so that a card (or tensor)
//! edited after the file was written is told apart from the one the weights were trained
//! with. A label order reversed or a normalisation changed by hand would otherwise turn
//! every answer around without a word.
//!
//! A safetensors model file's seal covers its card and its tensors (the checkpoints'
//! scheme: each tensor's name, dtype, shape and bytes, in name order); an ONNX model's
//! covers its card (ONNX Runtime checks the graph's own encoding, and the graph's input
//! size and label count are checked against the card when it is opened). Files written
//! before seals existed have none: they are read with a warning.

use std::path::Path;

/// Metadata key of a model file's seal (8 lowercase hex digits).
pub const SEAL_METADATA_KEY: &str = "hands.seal_crc32";

/// A seal under construction: the card first, then (for safetensors files) the tensors.
#[derive(Debug, Clone, Default)]
pub struct Seal {
    hasher: crc32fast::Hasher,
}

impl Seal {
    /// A seal over the card as stored (`card_json`, byte for byte).
    pub fn of_card(card_json: &str) -> Seal {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&(card_json.len() as u64).to_le_bytes());
        hasher.update(card_json.as_bytes());
        Seal { hasher }
    }

    /// Adds one tensor: its name, dtype (as named by safetensors), shape and bytes.
    pub fn tensor(&mut self, name: &str, dtype: &str, shape: &[usize], data: &[u8]) {
        let hasher = &mut self.hasher;
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(dtype.as_bytes());
        hasher.update(&(shape.len() as u64).to_le_bytes());
        for &dim in shape {
            hasher.update(&(dim as u64).to_le_bytes());
        }
        hasher.update(data);
    }

    /// The seal as stored: 8 lowercase hex digits.
    pub fn finish(self) -> String {
        format!("{:08x}", self.hasher.finalize())
    }
}

/// Whether a file had a seal to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealCheck {
    /// The seal matched.
    Intact,
    /// The file has no seal (written before seals existed).
    Unsealed,
}

/// Checks the seal `stored` in a file against `computed`: a mismatch is an error saying
/// what it means; no seal at all is [`SealCheck::Unsealed`], which the caller warns about.
pub fn check(stored: Option<&str>, computed: String) -> Result<SealCheck, String> {
    match stored {
        None => Ok(SealCheck::Unsealed),
        Some(stored) if stored == computed => Ok(SealCheck::Intact),
        Some(stored) => Err(format!(
            "its model card or weights were changed after it was written (seal \
             `{SEAL_METADATA_KEY}` is {stored}, its contents give {computed}); export the model \
             again from its training run instead of editing it"
        )),
    }
}

/// The warning for a file without a seal.
pub fn unsealed_warning(file: &Path) -> String {
    format!(
        "{}: the model file has no seal (written before hands 2026-12): its card cannot be \
         checked against its weights; export it again to seal it",
        file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_changes_with_the_card_and_with_each_tensor_byte() {
        let seal = |card: &str, byte: u8| {
            let mut seal = Seal::of_card(card);
            seal.tensor("stem.weight", "F32", &[1, 2], &[0, 0, 0, byte, 0, 0, 0, 0]);
            seal.finish()
        };
        let base = seal(r#"{"labels":["female","male"]}"#, 0);
        assert_eq!(base.len(), 8);
        assert_eq!(base, seal(r#"{"labels":["female","male"]}"#, 0));
        assert_ne!(base, seal(r#"{"labels":["male","female"]}"#, 0));
        assert_ne!(base, seal(r#"{"labels":["female","male"]}"#, 1));

        assert_eq!(check(Some(&base), base.clone()).unwrap(), SealCheck::Intact);
        assert_eq!(check(None, base.clone()).unwrap(), SealCheck::Unsealed);
        let err = check(Some("00000000"), base).unwrap_err();
        assert!(err.contains("changed"), "{err}");
    }
}
