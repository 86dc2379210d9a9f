//! Pixel arrays from Python: NumPy `uint8` arrays of shape `(N, H, W, 3)`, or a list of
//! `(H, W, 3)` arrays, as images for the same resize and normalisation as decoded files.

use image::{DynamicImage, RgbImage};
use numpy::ndarray::ArrayView3;
use numpy::PyUntypedArrayMethods;
use numpy::{PyArrayDescrMethods, PyReadonlyArray3, PyReadonlyArray4, PyUntypedArray};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

/// What `predict_array` takes, for messages.
const EXPECTED: &str =
    "a uint8 numpy array of shape (N, H, W, 3) (RGB) or a list of uint8 arrays of shape (H, W, 3)";

/// The images in `x`, copied out of Python (so that the work on them can run without the
/// GIL). A wrong type, dtype or shape is a `TypeError` or `ValueError` that says what is
/// expected and what was given.
pub fn images(x: &Bound<'_, PyAny>) -> PyResult<Vec<DynamicImage>> {
    if x.is_instance_of::<PyList>() || x.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for (index, item) in x.try_iter()?.enumerate() {
            let item = item?;
            let array = checked(&item, 3, &format!("x[{index}]"))?;
            let pixels: PyReadonlyArray3<'_, u8> = array.extract()?;
            out.push(image(pixels.as_array()));
        }
        return Ok(out);
    }
    let array = checked(x, 4, "x")?;
    let pixels: PyReadonlyArray4<'_, u8> = array.extract()?;
    Ok(pixels.as_array().outer_iter().map(image).collect())
}

/// `x` as an array of `ndim` dimensions of `uint8` whose last is 3 and others non-zero.
fn checked<'py>(x: &Bound<'py, PyAny>, ndim: usize, what: &str) -> PyResult<Bound<'py, PyAny>> {
    let array = x.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected {EXPECTED}; {what} is of type {}",
            type_name(x)
        ))
    })?;
    let shape = array.shape();
    let dtype = array.dtype();
    if !dtype.is_equiv_to(&numpy::dtype::<u8>(x.py())) {
        return Err(PyValueError::new_err(format!(
            "expected {EXPECTED}; {what} has dtype {dtype}"
        )));
    }
    let spatial = &shape[shape.len().saturating_sub(3)..];
    if shape.len() != ndim || shape[ndim - 1] != 3 || spatial[..2].contains(&0) {
        return Err(PyValueError::new_err(format!(
            "expected {EXPECTED}; {what} has shape {}",
            shape_text(shape)
        )));
    }
    Ok(array.clone().into_any())
}

/// One `(H, W, 3)` view as an RGB image (any strides).
fn image(pixels: ArrayView3<'_, u8>) -> DynamicImage {
    let (height, width, _) = pixels.dim();
    let raw = match pixels.as_slice() {
        Some(contiguous) => contiguous.to_vec(),
        None => pixels.iter().copied().collect(),
    };
    let rgb = RgbImage::from_raw(width as u32, height as u32, raw)
        .expect("an (H, W, 3) array holds H * W * 3 bytes");
    DynamicImage::ImageRgb8(rgb)
}

/// `(2, 3, 4)` as Python writes a shape.
fn shape_text(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
    match parts.len() {
        1 => format!("({},)", parts[0]),
        _ => format!("({})", parts.join(", ")),
    }
}

/// The Python type name of `x`, for messages.
fn type_name(x: &Bound<'_, PyAny>) -> String {
    x.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "value of unknown type".into())
}
