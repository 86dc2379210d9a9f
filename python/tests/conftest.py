"""Shared fixtures: the 11K Hands sample, the hands-infer command's rows on it, a predictor.

Like the Rust tests, a test whose data or command is missing is skipped with a notice, but
fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hands_infer import Predictor

REPOSITORY = Path(__file__).resolve().parents[2]


def _required(what: str) -> None:
    """Skips the test for lack of ``what``, or fails it under ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"SKIPPED: {what} is missing")


@pytest.fixture(scope="session")
def sample_images() -> Path:
    """The sample's image folder (``$HANDS_SAMPLE`` or ``../shared/data/hands-11k-sample``)."""
    root = Path(
        os.environ.get("HANDS_SAMPLE")
        or REPOSITORY.parent / "shared" / "data" / "hands-11k-sample"
    )
    images = root / "images"
    if not images.is_dir():
        _required(f"the 11K Hands sample ({images})")
    return images.resolve()


@pytest.fixture(scope="session")
def sample_files(sample_images: Path) -> list[Path]:
    """The sample's images, in name order."""
    return sorted(p for p in sample_images.iterdir() if p.suffix.lower() == ".jpg")


@pytest.fixture(scope="session")
def predictor() -> Predictor:
    """The shipped model on the CPU, two threads."""
    return Predictor(threads=2)


@pytest.fixture(scope="session")
def command() -> Path:
    """The hands-infer command built by ``cargo test`` or ``cargo build`` (or
    ``$HANDS_INFER_BIN``)."""
    named = os.environ.get("HANDS_INFER_BIN")
    candidates = [Path(named)] if named else [
        REPOSITORY / "target" / profile / "hands-infer" for profile in ("release", "debug")
    ]
    found = [c for c in candidates if c.is_file()]
    if not found:
        _required(f"the hands-infer command ({', '.join(map(str, candidates))})")
    return max(found, key=lambda c: c.stat().st_mtime)


@pytest.fixture(scope="session")
def command_rows(command: Path, sample_images: Path, predictor: Predictor) -> dict[str, dict]:
    """The command's JSON rows on the sample folder (same ONNX Runtime library as the
    predictor), by path."""
    result = subprocess.run(
        [
            str(command), "--quiet", "--format", "jsonl", "--device", "cpu",
            "--ort-lib", predictor.ort_library, str(sample_images),
        ],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {row["path"]: row for row in rows}
