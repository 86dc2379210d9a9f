//! A failed export leaves no file behind. In its own test binary (its own process), so that
//! ONNX Runtime is never loaded here and the explicit, empty library folder is what is tried.

mod common;

use common::*;
use hands_export::{export, BatchSize, Error, Parity};
use hands_models::Genotype;

#[test]
fn an_export_without_onnx_runtime_fails_before_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = model_file(dir.path(), &Genotype::published("DARTS_V1").unwrap(), 1);
    let out = dir.path().join("dist");
    let no_lib = tempfile::tempdir().unwrap();
    let mut opts = options(BatchSize::Dynamic, true);
    opts.parity = Parity::Check {
        ort_lib: Some(no_lib.path().to_path_buf()),
        images: Vec::new(),
    };
    // ONNX Runtime is looked for before anything is computed or written; it is not there.
    let err = export(&model, &out, &opts).unwrap_err();
    assert!(matches!(err, Error::Runtime(_)), "{err}");
    assert!(
        err.to_string()
            .contains(&no_lib.path().display().to_string()),
        "{err}"
    );
    assert!(files_in(&out).is_empty(), "{:?}", files_in(&out));
}
