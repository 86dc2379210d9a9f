"""Type stubs of the native module (Rust, PyO3)."""

import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str
UNCERTAIN: str
"""The label of a prediction below the predictor's minimum confidence."""

StrPath = Union[str, os.PathLike[str]]
Row = dict[str, Any]
"""``{"path", "label", "probabilities": {label: p}, "error"}``: ``label`` and
``probabilities`` are ``None`` and ``error`` says why when the image could not be
predicted; otherwise ``error`` is ``None``."""

class HandsError(Exception):
    """Base class of the errors raised by hands_infer."""

class ModelError(HandsError):
    """The model file is missing, unreadable, or not what its model card says."""

class RuntimeNotFoundError(HandsError):
    """No ONNX Runtime library could be found or loaded (the message says how to get one)."""

class DeviceError(HandsError):
    """The requested device (execution provider) cannot be used."""

class ImageError(HandsError):
    """An image could not be read, decoded or preprocessed (the message names it)."""

class InferenceError(HandsError):
    """ONNX Runtime failed, or the model's output was not a probability distribution."""

class Predictor:
    """A model opened once, ready to predict; safe to share between threads.

    Args:
        model: an ONNX model written by hands-export; ``None``: the shipped model built into
            the package.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA needs a build with
            the ``cuda`` feature and onnxruntime-gpu).
        threads: threads for decoding and for ONNX Runtime; ``None``: all cores.
        batch: images decoded and run through the network at a time (at most what fits in
            2 GiB for the model; a larger batch raises ``ValueError``).
        min_confidence: abstain below this probability: such an image's label is
            ``"uncertain"`` (its probabilities are kept).
        target_accuracy: abstain so as to reach this accuracy on the answers given, by the
            model card's cross-validated accuracy-coverage curve (a calibrated model).
        ort_library: the libonnxruntime.so to load (a file, or a folder holding one).

    Raises:
        ModelError: the model file is missing or not a model of hands-export.
        RuntimeNotFoundError: no ONNX Runtime library could be loaded.
        ValueError: an argument out of range (unknown device, batch, thresholds).
    """

    def __init__(
        self,
        model: Optional[StrPath] = None,
        device: str = "cpu",
        threads: Optional[int] = None,
        batch: int = 64,
        min_confidence: Optional[float] = None,
        target_accuracy: Optional[float] = None,
        ort_library: Optional[StrPath] = None,
    ) -> None: ...
    @property
    def labels(self) -> list[str]:
        """The labels, in the order of the probabilities."""
    @property
    def card(self) -> dict[str, Any]:
        """The model card: labels, input size and normalisation, network, metrics."""
    @property
    def model(self) -> Optional[str]:
        """The model file, or ``None`` for the built-in shipped model."""
    @property
    def identity(self) -> str:
        """CRC-32 of the model's ONNX bytes (the ``model`` column of hands-infer's rows)."""
    @property
    def input_size(self) -> int:
        """Side of the square network input, in pixels."""
    @property
    def batch(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def min_confidence(self) -> Optional[float]:
        """The probability under which a prediction is ``"uncertain"``, or ``None``."""
    @property
    def device(self) -> str:
        """The execution provider the network runs on: ``"CPUExecutionProvider"`` or
        ``"CUDAExecutionProvider"``."""
    @property
    def ort_library(self) -> str:
        """The ONNX Runtime library in use."""
    def predict_files(self, paths: Sequence[StrPath]) -> list[Row]:
        """One row per image file, in order (JPEG, PNG, BMP, WebP).

        A file that cannot be read or decoded gets a row with its error; the others are
        still predicted. Raises InferenceError only when ONNX Runtime itself fails.
        """
    def predict_bytes(
        self, blobs: Sequence[bytes], names: Optional[Sequence[Any]] = None
    ) -> list[Row]:
        """One row per encoded image (the bytes of a file, as read from an object store).

        ``names`` (one per image) become the rows' ``path`` and name the images in errors.
        """
    def predict_array(
        self, x: Union[npt.NDArray[np.uint8], Sequence[npt.NDArray[np.uint8]]]
    ) -> npt.NDArray[np.float32]:
        """Probabilities ``(N, len(labels))`` of RGB pixels.

        ``x`` is a uint8 array of shape ``(N, H, W, 3)`` or a list of ``(H, W, 3)`` arrays
        (sizes may differ); they get the same resize and normalisation as decoded files.
        Raises TypeError / ValueError naming what is expected for any other type, dtype or
        shape.
        """
    def explain(self, path: StrPath) -> Row:
        """The image's row and ``map``: a float32 ``(input_size, input_size)`` occlusion map,
        how much masking each region lowered the predicted label's probability.

        Raises ImageError when the file cannot be read or decoded.
        """
