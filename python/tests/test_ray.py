"""The Ray Data job on a local Ray, against the hands-infer command."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

pyarrow_parquet = pytest.importorskip("pyarrow.parquet", reason="the [ray] extra is not installed")
pytest.importorskip("ray", reason="the [ray] extra is not installed")


@pytest.mark.parametrize(
    "scheme, workers",
    [
        ("", ["--concurrency", "2", "--threads", "1"]),  # files read by the workers
        ("local://", []),  # bytes read by Ray Data, as from s3://; the default worker
    ],
)
def test_the_ray_job_writes_the_command_rows_as_parquet(
    sample_images, command_rows, tmp_path, scheme, workers
):
    output = tmp_path / "predictions"
    result = subprocess.run(
        [
            sys.executable, "-m", "hands_infer.ray", "--input", f"{scheme}{sample_images}",
            "--output", str(output), "--num-cpus", "2", "--batch-size", "32", *workers,
        ],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"{len(command_rows)} rows" in result.stderr
    written = pyarrow_parquet.read_table(output)
    assert written.schema.names == ["path", "label", "p_female", "p_male", "error"]
    assert str(written.schema.field("error").type) == "string"
    table = written.to_pylist()
    assert len(table) == len(command_rows)
    for row in table:
        reference = command_rows[row["path"].removeprefix("local://")]
        assert row["error"] is None and row["label"] == reference["label"]
        for label, p in reference["probabilities"].items():
            assert math.isclose(row[f"p_{label}"], p, abs_tol=1e-6)


def test_the_ray_job_refuses_an_output_folder_that_holds_files(sample_images, tmp_path):
    (tmp_path / "old.parquet").write_bytes(b"earlier results")
    result = subprocess.run(
        [sys.executable, "-m", "hands_infer.ray", "--input", str(sample_images),
         "--output", str(tmp_path), "--num-cpus", "1"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 2
    assert "already holds files" in result.stderr
    assert (tmp_path / "old.parquet").read_bytes() == b"earlier results"


def test_bad_files_are_rows_with_errors(tmp_path, sample_images):
    from hands_infer.ray import HandsPredictor
    import numpy as np

    good = next(sample_images.iterdir()).read_bytes()
    batch = {
        "bytes": np.array([good, b"junk"], dtype=object),
        "path": np.array(["/a/good.jpg", "/a/junk.jpg"], dtype=object),
    }
    rows = HandsPredictor()(batch).to_pylist()
    assert rows[0]["error"] is None and rows[0]["label"] in ("female", "male")
    assert "/a/junk.jpg" in rows[1]["error"]
    assert rows[1]["p_male"] is None and rows[1]["label"] is None


def test_a_missing_model_is_one_clear_error_before_ray_starts(sample_images, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hands_infer.ray", "--input", str(sample_images),
         "--output", str(tmp_path / "out"), "--model", str(tmp_path / "nope.onnx")],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 2
    assert "nope.onnx: model file not found" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
