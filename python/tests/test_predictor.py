"""The Predictor against the hands-infer command, and on every kind of input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hands_infer
from hands_infer import Predictor

TOLERANCE = 1e-6


def assert_rows_match(row: dict, reference: dict) -> None:
    """``row`` (the package's) says what ``reference`` (the command's JSON row) says."""
    assert row["error"] is None, row["error"]
    assert row["label"] == reference["label"], row["path"]
    for label, p in reference["probabilities"].items():
        assert abs(row["probabilities"][label] - p) <= TOLERANCE, (row["path"], label)


def test_predict_files_matches_the_command(predictor, sample_files, command_rows):
    rows = predictor.predict_files([str(p) for p in sample_files])
    assert len(rows) == len(sample_files) == len(command_rows)
    for path, row in zip(sample_files, rows):
        assert row["path"] == str(path)
        assert_rows_match(row, command_rows[str(path)])
    assert {r["model"] for r in command_rows.values()} == {predictor.identity}


def test_predict_bytes_matches_the_command(predictor, sample_files, command_rows):
    files = sample_files[:100]
    rows = predictor.predict_bytes([p.read_bytes() for p in files], names=[str(p) for p in files])
    for path, row in zip(files, rows):
        assert row["path"] == str(path)
        assert_rows_match(row, command_rows[str(path)])


def test_path_objects_are_taken_and_given_back(predictor, sample_files):
    rows = predictor.predict_files(sample_files[:3])
    assert [r["path"] for r in rows] == sample_files[:3]


def test_predict_array_equals_predict_files_on_the_same_pixels(predictor, sample_files, tmp_path):
    arrays, files = [], []
    for i, source in enumerate(sample_files[:12]):
        pixels = np.asarray(Image.open(source).convert("RGB"))
        if i % 3 == 1:
            pixels = pixels[::2, 1::2]  # a view with strides, and another size
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp_path / f"{i}.png")
        arrays.append(pixels)
        files.append(tmp_path / f"{i}.png")
    from_files = predictor.predict_files(files)
    from_arrays = predictor.predict_array(arrays)
    assert from_arrays.dtype == np.float32 and from_arrays.shape == (12, 2)
    for row, probabilities in zip(from_files, from_arrays):
        expected = [row["probabilities"][label] for label in predictor.labels]
        np.testing.assert_allclose(probabilities, expected, atol=TOLERANCE, rtol=0)
    same_size = np.stack([a for a in arrays if a.shape == arrays[0].shape])
    np.testing.assert_allclose(
        predictor.predict_array(same_size),
        predictor.predict_array(list(same_size)),
        atol=0, rtol=0,
    )


def test_empty_inputs_give_empty_answers(predictor):
    assert predictor.predict_files([]) == []
    assert predictor.predict_bytes([]) == []
    assert predictor.predict_array([]).shape == (0, 2)
    assert predictor.predict_array(np.zeros((0, 4, 4, 3), np.uint8)).shape == (0, 2)


def test_a_bad_file_is_a_row_with_its_error_and_the_rest_are_predicted(
    predictor, sample_files, tmp_path
):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(sample_files[0].read_bytes()[:200])
    missing = tmp_path / "missing.jpg"
    rows = predictor.predict_files([corrupt, sample_files[0], cut, missing, tmp_path])
    assert [r["error"] is None for r in rows] == [False, True, False, False, False]
    for row in rows[:1] + rows[2:]:
        assert str(row["path"]) in row["error"]
        assert row["label"] is None and row["probabilities"] is None
    assert rows[1]["label"] in predictor.labels


def test_corrupt_bytes_are_an_error_entry_naming_the_image(predictor, sample_files):
    good = sample_files[0].read_bytes()
    rows = predictor.predict_bytes([b"", b"garbage", good], names=["empty", "junk", "good"])
    assert "empty" in rows[0]["error"] and "junk" in rows[1]["error"]
    assert rows[2]["error"] is None
    unnamed = predictor.predict_bytes([b"garbage"])
    assert unnamed[0]["path"] is None and "<bytes #0>" in unnamed[0]["error"]


@pytest.mark.parametrize(
    "x, error, words",
    [
        (np.zeros((2, 8, 8), np.uint8), ValueError, "has shape (2, 8, 8)"),
        (np.zeros((2, 8, 8, 4), np.uint8), ValueError, "has shape (2, 8, 8, 4)"),
        (np.zeros((2, 0, 8, 3), np.uint8), ValueError, "has shape (2, 0, 8, 3)"),
        (np.zeros((2, 8, 8, 3), np.float32), ValueError, "has dtype float32"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)], ValueError, "x[1] has shape (8, 8)"),
        ([np.zeros((8, 8, 3), np.uint8), "hand.jpg"], TypeError, "x[1] is of type str"),
        ("hand.jpg", TypeError, "x is of type str"),
    ],
)
def test_predict_array_refuses_what_it_cannot_use_saying_what_it_expects(
    predictor, x, error, words
):
    with pytest.raises(error) as raised:
        predictor.predict_array(x)
    message = str(raised.value)
    assert words in message
    assert "uint8 numpy array of shape (N, H, W, 3)" in message


def test_a_missing_model_file_is_a_model_error_naming_it(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(hands_infer.ModelError, match="nope.onnx: model file not found"):
        Predictor(missing)
    not_a_model = tmp_path / "text.onnx"
    not_a_model.write_text("hello")
    with pytest.raises(hands_infer.ModelError, match="text.onnx"):
        Predictor(not_a_model)
    assert issubclass(hands_infer.ModelError, hands_infer.HandsError)


@pytest.mark.parametrize(
    "arguments, words",
    [
        ({"device": "tpu"}, "unknown device `tpu`"),
        ({"batch": 0}, "batch size 0"),
        ({"batch": 100_000}, "batch size 100000"),
        ({"threads": 0}, "threads must be at least 1"),
        ({"min_confidence": 1.5}, "not a probability"),
        ({"min_confidence": 0.6, "target_accuracy": 0.9}, "give one"),
    ],
)
def test_arguments_out_of_range_are_value_errors(arguments, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        Predictor(**arguments)


def test_a_wrong_ort_library_is_refused_saying_how_to_get_one(tmp_path):
    fake = tmp_path / "libonnxruntime.so"
    fake.write_text("not a library")
    # ONNX Runtime is loaded once per process: only a process that has none yet can tell.
    import subprocess
    import sys

    code = (
        "import hands_infer\n"
        "try:\n"
        f"    hands_infer.Predictor(ort_library={str(fake)!r})\n"
        "except hands_infer.RuntimeNotFoundError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert str(fake) in out.stdout and "pip install onnxruntime" in out.stdout


def test_min_confidence_abstains_and_keeps_the_probabilities(sample_files):
    strict = Predictor(min_confidence=0.999, threads=1)
    rows = strict.predict_files(sample_files[:40])
    uncertain = [r for r in rows if r["label"] == hands_infer.UNCERTAIN]
    assert uncertain, "some of 40 photos are below 0.999"
    for row in uncertain:
        assert max(row["probabilities"].values()) < 0.999


def test_the_card_labels_and_explanation(predictor, sample_files):
    card = predictor.card
    assert card["labels"] == predictor.labels == ["female", "male"]
    assert card["input"]["size"] == predictor.input_size
    assert predictor.model is None and Path(predictor.ort_library).is_file()
    explained = predictor.explain(sample_files[0])
    row = predictor.predict_files([sample_files[0]])[0]
    assert explained["label"] == row["label"]
    assert explained["map"].shape == (predictor.input_size, predictor.input_size)
    assert explained["map"].dtype == np.float32 and np.isfinite(explained["map"]).all()
    with pytest.raises(hands_infer.ImageError, match="missing.jpg"):
        predictor.explain("missing.jpg")


def test_a_model_file_opens_like_the_shipped_one(sample_files):
    shipped = Path(__file__).resolve().parents[2] / "models" / "pretrained" / "hands.onnx"
    from_file = Predictor(shipped, threads=1)
    assert from_file.model == str(shipped)
    built_in = Predictor(threads=1)
    assert from_file.identity == built_in.identity
    assert from_file.predict_files(sample_files[:5]) == built_in.predict_files(sample_files[:5])
