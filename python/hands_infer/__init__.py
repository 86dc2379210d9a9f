"""Gender prediction from hand photographs, with the hands-infer Rust library.

A :class:`Predictor` opens an ONNX model written by ``hands-export`` (by default the shipped
model, which is built into the package), reads its model card, and predicts on image files,
encoded image bytes or RGB pixel arrays, with exactly the decoding, resize and normalisation
the network was trained with (the ``hands-infer`` command's). Images are decoded in parallel
and run through the network in batches with the GIL released, so one predictor can be shared
by several Python threads.

>>> from hands_infer import Predictor
>>> predictor = Predictor()                      # the shipped model, on the CPU
>>> for row in predictor.predict_files(["hand.jpg", "other.png"]):
...     print(row["path"], row["label"], row["probabilities"], row["error"])

A file that cannot be read or decoded gets a row with its ``error`` (the message names it);
the other files are still predicted. ``hands_infer.ray`` runs the same predictor over
millions of photos with Ray Data (``pip install 'hands-infer[ray]'``).

ONNX Runtime is loaded from the ``onnxruntime`` (or ``onnxruntime-gpu``) package installed
beside this one, unless ``ort_library=`` or ``ORT_DYLIB_PATH`` names another library.
"""

from ._native import (
    UNCERTAIN,
    DeviceError,
    HandsError,
    ImageError,
    InferenceError,
    ModelError,
    Predictor,
    RuntimeNotFoundError,
    __version__,
)

__all__ = [
    "UNCERTAIN",
    "DeviceError",
    "HandsError",
    "ImageError",
    "InferenceError",
    "ModelError",
    "Predictor",
    "RuntimeNotFoundError",
    "__version__",
]
