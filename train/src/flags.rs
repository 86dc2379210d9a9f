//! Range-checked command-line values: the bounds every numeric flag of the subcommands is
//! held to at parse time (and again when a resumed run reads its settings back), so that no
//! flag value can panic, allocate without bound or train nothing.

use std::ops::RangeInclusive;

use anyhow::{bail, Result};
use hands_models::plan::STEM_STRIDES;

/// Side of the square images (the image cache holds `images x 3 x size^2` bytes).
pub const SIZE: RangeInclusive<u64> = 8..=512;
/// Images per batch (an activation of the paper-setting search is about 50 MB per image
/// at 64x64, so 1024 is already far beyond a GPU's memory).
pub const BATCH: RangeInclusive<u64> = 1..=1024;
/// Epochs (per stage for P-DARTS).
pub const EPOCHS: RangeInclusive<u64> = 1..=100_000;
/// Channels of the first cell.
pub const INIT_CHANNELS: RangeInclusive<u64> = 1..=256;
/// Stride of the stem's convolution: `hands_models::plan::STEM_STRIDES`, which are 1 and 2.
pub const STEM_STRIDE: RangeInclusive<u64> = STEM_STRIDES[0] as u64..=STEM_STRIDES[1] as u64;
/// Cells of a search supernet or P-DARTS stage.
pub const SEARCH_LAYERS: RangeInclusive<u64> = 1..=64;
/// Cells of a trained network (the auxiliary head sits after cell 2/3 of them).
pub const TRAIN_LAYERS: RangeInclusive<u64> = 3..=64;
/// PC-DARTS channel sampling factor.
pub const PARTIAL_K: RangeInclusive<u64> = 1..=64;

/// A clap parser for a flag whose values are the names of a [`hands_data::Choice`] (the help lists
/// them with their descriptions): for the data crate's enums, which are kept free of clap.
#[cfg(feature = "cli")]
pub fn choice<T: hands_data::Choice + Send + Sync>(
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let values = T::ALL
        .iter()
        .map(|&value| PossibleValue::new(value.name()).help(value.about()));
    PossibleValuesParser::new(values)
        .map(|chosen| T::parse(&chosen).expect("clap accepts listed names only"))
}

/// A clap parser for a `usize` flag within `range`.
#[cfg(feature = "cli")]
pub fn usize_in(range: RangeInclusive<u64>) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(range)
}

/// A clap parser for a `u32` flag within `range`.
#[cfg(feature = "cli")]
pub fn u32_in(range: RangeInclusive<u64>) -> clap::builder::RangedU64ValueParser<u32> {
    clap::builder::RangedU64ValueParser::<u32>::new().range(range)
}

/// Parses a finite number greater than zero.
pub fn positive(text: &str) -> Result<f64, String> {
    let value = finite(text)?;
    if value > 0.0 {
        Ok(value)
    } else {
        Err(format!("{value} is not greater than 0"))
    }
}

/// Parses a finite number that is at least zero.
pub fn non_negative(text: &str) -> Result<f64, String> {
    let value = finite(text)?;
    if value >= 0.0 {
        Ok(value)
    } else {
        Err(format!("{value} is negative"))
    }
}

/// Parses a test share: a number in `[0, 0.5]`.
pub fn test_share(text: &str) -> Result<f64, String> {
    let value = finite(text)?;
    if (0.0..=0.5).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not in [0, 0.5]"))
    }
}

/// Parses a number in `[0, 1)` (probabilities that must leave something, momentum).
pub fn fraction(text: &str) -> Result<f64, String> {
    let value = finite(text)?;
    if (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not in [0, 1)"))
    }
}

/// Parses a number in `(0, 1)` (a share that leaves something on either side).
pub fn open_fraction(text: &str) -> Result<f64, String> {
    let value = finite(text)?;
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(format!("{value} is not in (0, 1)"))
    }
}

fn finite(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(value) => Err(format!("{value} is not a finite number")),
        Err(e) => Err(format!("`{text}`: {e}")),
    }
}

/// Checks a value read back from a run (or set by a library caller) against the range
/// its flag has on the command line.
pub fn check_range(flag: &str, value: usize, range: RangeInclusive<u64>) -> Result<()> {
    if !range.contains(&(value as u64)) {
        bail!(
            "--{flag} {value} is out of range ({}..={})",
            range.start(),
            range.end()
        );
    }
    Ok(())
}

/// Checks a floating-point setting with the parser its flag uses on the command line.
pub fn check_value(flag: &str, value: f64, parse: fn(&str) -> Result<f64, String>) -> Result<()> {
    if let Err(reason) = parse(&value.to_string()) {
        bail!("--{flag}: {reason}");
    }
    Ok(())
}
