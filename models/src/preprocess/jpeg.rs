//! The fast JPEG path: libjpeg-turbo's reduced-size decoding (through the `mozjpeg` crate).
//!
//! A JPEG stores 8x8 blocks of DCT coefficients, so it can be decoded at 1/2, 1/4 or 1/8 of
//! its size by running a smaller inverse DCT on each block (at 1/8 only the DC coefficient).
//! For a 1600x1200 photo that the network sees at 64x64 this is several times faster than a
//! full decode followed by a downscale, and the block averaging is a good anti-aliasing
//! filter. libjpeg-turbo's x86 SIMD code is built when `nasm` is on the PATH at build time
//! (mozjpeg-sys feature `nasm_simd`), the C code otherwise; both give the same pixels (the
//! docs/speed.md says how that was checked).

use std::os::raw::c_int;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use image::metadata::Orientation;
use image::RgbImage;
use mozjpeg::decompress::DecompressBuilder;
use mozjpeg::Marker;
use mozjpeg_sys as ffi;

/// Largest message libjpeg formats (`JMSG_LENGTH_MAX`).
const MESSAGE_LENGTH: usize = 200;

/// The panic payload the error handlers unwind with.
struct JpegFailure(String);

/// The DCT scale numerator (of 8) to decode a `width` x `height` JPEG at: the smallest of
/// 1, 2, 4 and 8 whose output is still at least `min_size` on both sides.
pub(super) fn scale_numerator(width: usize, height: usize, min_size: u32) -> u8 {
    let min_size = min_size as usize;
    [1u8, 2, 4]
        .into_iter()
        .find(|&k| {
            let k = k as usize;
            (width * k).div_ceil(8) >= min_size && (height * k).div_ceil(8) >= min_size
        })
        .unwrap_or(8)
}

/// Decodes a JPEG at the smallest DCT scale that keeps both sides at least `min_size`, as
/// 8-bit RGB, with its EXIF orientation applied.
///
/// Returns `Ok(None)` for CMYK / YCCK JPEGs, which the caller decodes the slow way. A
/// truncated file or corrupt entropy-coded data is an error (libjpeg would only warn and
/// fill the rest with grey).
pub(super) fn decode_scaled(bytes: &[u8], min_size: u32) -> Result<Option<RgbImage>, String> {
    let decoded = catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, min_size)));
    match decoded {
        Ok(result) => result,
        Err(payload) => match payload.downcast::<JpegFailure>() {
            Ok(failure) => Err(failure.0),
            Err(other) => resume_unwind(other),
        },
    }
}

fn decode_inner(bytes: &[u8], min_size: u32) -> Result<Option<RgbImage>, String> {
    let io = |e: std::io::Error| format!("cannot decode JPEG: {e}");
    let markers = [Marker::APP(1)];
    let mut decompress = DecompressBuilder::new()
        .with_err(error_manager())
        .with_markers(&markers)
        .from_mem(bytes)
        .map_err(io)?;
    if matches!(
        decompress.color_space(),
        ffi::J_COLOR_SPACE::JCS_CMYK | ffi::J_COLOR_SPACE::JCS_YCCK
    ) {
        return Ok(None);
    }
    let orientation = decompress
        .markers()
        .filter_map(|m| m.data.strip_prefix(b"Exif\0\0"))
        .find_map(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let (width, height) = decompress.size();
    if width == 0 || height == 0 {
        return Err("image has no pixels".into());
    }
    super::check_pixels(width as u64, height as u64)?;
    decompress.scale(scale_numerator(width, height, min_size));
    let mut started = decompress.rgb().map_err(io)?;
    let (out_width, out_height) = (started.width() as u32, started.height() as u32);
    let pixels: Vec<u8> = started.read_scanlines().map_err(io)?;
    started.finish().map_err(io)?;
    let rgb = RgbImage::from_raw(out_width, out_height, pixels)
        .ok_or_else(|| "JPEG decoder returned fewer pixels than its size".to_string())?;
    Ok(Some(super::orient(rgb, orientation)))
}

/// libjpeg's standard error manager with handlers that unwind to [`decode_scaled`] instead
/// of exiting the process.
fn error_manager() -> ffi::jpeg_error_mgr {
    // SAFETY: `jpeg_error_mgr` is a plain C struct for which all-zero is a valid value, and
    // `jpeg_std_error` initialises every field.
    let mut manager: ffi::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { ffi::jpeg_std_error(&mut manager) };
    manager.error_exit = Some(error_exit);
    manager.emit_message = Some(emit_message);
    manager
}

/// libjpeg's text for the current message code.
fn message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    // SAFETY: libjpeg sets `err` before calling any handler.
    let Some(format) = (unsafe { cinfo.err.as_ref() }).and_then(|e| e.format_message) else {
        return "JPEG decoding failed".into();
    };
    let mut buffer = [0u8; MESSAGE_LENGTH];
    // SAFETY: `format_message` writes at most JMSG_LENGTH_MAX bytes, NUL included, to the
    // buffer it is given; the binding declares the buffer as an 80-byte array reference,
    // which has the same ABI as the pointer passed here.
    unsafe {
        let format: unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, *mut u8) =
            std::mem::transmute(format);
        format(cinfo, buffer.as_mut_ptr());
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let text = message(cinfo);
    resume_unwind(Box::new(JpegFailure(text)));
}

/// Warnings that mean the pixels are wrong: the data ends early or is corrupt. Other
/// warnings (e.g. stray bytes between markers, common in camera files) are ignored.
extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    if level >= 0 {
        return;
    }
    // SAFETY: libjpeg sets `err` before calling any handler.
    let code = unsafe { cinfo.err.as_ref() }.map_or(0, |e| e.msg_code);
    let fatal = match code {
        ffi::JWRN_JPEG_EOF => Some("truncated JPEG: the data ends early"),
        ffi::JWRN_HIT_MARKER | ffi::JWRN_HUFF_BAD_CODE => None,
        _ => return,
    };
    let text = match fatal {
        Some(text) => text.to_string(),
        None => format!("corrupt JPEG: {}", message(cinfo)),
    };
    resume_unwind(Box::new(JpegFailure(text)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_keeps_both_sides_at_least_the_input_size() {
        assert_eq!(scale_numerator(1600, 1200, 64), 1); // 200 x 150
        assert_eq!(scale_numerator(1600, 1200, 224), 2); // 400 x 300
        assert_eq!(scale_numerator(1600, 1200, 300), 2);
        assert_eq!(scale_numerator(1600, 1200, 301), 4);
        assert_eq!(scale_numerator(180, 180, 64), 4); // 90 x 90
        assert_eq!(scale_numerator(180, 180, 96), 8);
        assert_eq!(scale_numerator(10, 10, 64), 8);
    }
}
