"""Batch inference over many photos with Ray Data, on one machine or a cluster.

The job reads the images as bytes (``ray.data.read_binary_files``), predicts them in
batches with :class:`HandsPredictor` held by each worker (``map_batches`` with a callable
class, so each worker opens the model once), and writes Parquet with the columns ``path``,
``label``, ``p_<label>`` (one per label; null for an image that could not be predicted) and
``error`` (null for one that was). Decoding, resize and normalisation
are the library's, so the answers are the ``hands-infer`` command's.

    python -m hands_infer.ray --input DIR --output DIR [--concurrency N] [--batch-size B]

On a cluster, start Ray on every node (``ray start --head`` on one, ``ray start
--address HEAD:6379`` on the others), put the photos where every node can read them (a
shared file system, or ``s3://`` / ``gs://`` paths, which Ray Data reads with pyarrow), and
pass ``--address auto`` (or ``HEAD:6379``) from the head node.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow

import ray  # the Ray package, not this module: absolute import
import ray.data

from . import Predictor

#: File endings the job reads, as the command does (JPEG, PNG, BMP, WebP).
IMAGE_EXTENSIONS = ["jpg", "jpeg", "png", "bmp", "webp"]

#: Reading files and writing Parquet reserve no CPU: they wait on storage, and the workers,
#: one per CPU, would otherwise leave none for them (the job would never start).
LIGHT_TASK = {"num_cpus": 0}


class HandsPredictor:
    """The callable class for ``Dataset.map_batches``: opens a :class:`Predictor` once per
    worker and turns a batch ``{"bytes", "path"}`` into the job's columns.

    Its keyword arguments are :class:`Predictor`'s (``threads`` defaults to 1: one worker
    per CPU Ray gives it).
    """

    def __init__(self, threads: int = 1, **predictor_args: Any) -> None:
        self.predictor = Predictor(threads=threads, **predictor_args)
        self.schema = schema(self.predictor.labels)

    def __call__(self, batch: dict[str, np.ndarray]) -> pyarrow.Table:
        paths = [str(p) for p in batch["path"]]
        rows = self.predictor.predict_bytes(list(batch["bytes"]), names=paths)
        return table(rows, self.schema)


def schema(labels: list[str]) -> pyarrow.Schema:
    """The job's columns: ``path``, ``label``, ``p_<label>`` per label, ``error``; the
    same in every file, whether or not its rows hold errors."""
    fields = [("path", pyarrow.string()), ("label", pyarrow.string())]
    fields += [(f"p_{label}", pyarrow.float64()) for label in labels]
    return pyarrow.schema(fields + [("error", pyarrow.string())])


def table(rows: list[dict[str, Any]], schema: pyarrow.Schema) -> pyarrow.Table:
    """Predictor rows as the job's table: an image that could not be predicted has a null
    label and probabilities, and its ``error``; the others a null ``error``."""
    columns: dict[str, list[Any]] = {
        "path": [r["path"] for r in rows],
        "label": [r["label"] for r in rows],
    }
    for name in schema.names[2:-1]:
        label = name.removeprefix("p_")
        columns[name] = [r["probabilities"][label] if r["probabilities"] else None for r in rows]
    columns["error"] = [r["error"] for r in rows]
    return pyarrow.table(columns, schema=schema)


def predict_dataset(
    source: str | list[str],
    concurrency: Optional[int] = None,
    batch_size: int = 64,
    **predictor_args: Any,
) -> ray.data.Dataset:
    """The job's dataset (lazy): the images under ``source`` (a folder, a file, a list of
    them, local or ``s3://``...) predicted by ``concurrency`` workers (default: one per CPU
    of the Ray cluster), ``batch_size`` images per call."""
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1)))
    images = ray.data.read_binary_files(
        source,
        include_paths=True,
        file_extensions=IMAGE_EXTENSIONS,
        ray_remote_args=LIGHT_TASK,
    )
    return images.map_batches(
        HandsPredictor,
        fn_constructor_kwargs=dict(predictor_args, batch=batch_size),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=concurrency,
        num_cpus=predictor_args.get("threads", 1),
    )


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m hands_infer.ray``: predicts every image under ``--input`` into Parquet
    files under ``--output``; prints the rows written and how many were errors."""
    parser = argparse.ArgumentParser(
        prog="python -m hands_infer.ray",
        description="Predict the hand photos under a folder with Ray Data, into Parquet.",
    )
    parser.add_argument("--input", required=True, nargs="+", help="folders or files (local or s3://...)")
    parser.add_argument("--output", required=True, help="folder for the Parquet files")
    parser.add_argument("--concurrency", type=int, help="workers (default: one per CPU)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (64)")
    parser.add_argument("--threads", type=int, default=1, help="threads (CPUs) per worker (1)")
    parser.add_argument("--model", help="ONNX model (default: the shipped model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--min-confidence", type=float, help="abstain below this probability")
    parser.add_argument(
        "--address", help="a running Ray cluster (`auto`, or HEAD:6379); default: start one here"
    )
    parser.add_argument("--num-cpus", type=int, help="CPUs of the Ray started here (default: all)")
    args = parser.parse_args(argv)
    if "://" not in args.output:
        output = Path(args.output)
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            parser.error(
                f"--output {output} already holds files: give a new or empty folder "
                "(nothing is overwritten)"
            )

    ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False)
    predictor_args: dict[str, Any] = {"device": args.device, "threads": args.threads}
    if args.model:
        predictor_args["model"] = args.model
    if args.min_confidence is not None:
        predictor_args["min_confidence"] = args.min_confidence
    dataset = predict_dataset(
        args.input if len(args.input) > 1 else args.input[0],
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        **predictor_args,
    )
    dataset.write_parquet(args.output, ray_remote_args=LIGHT_TASK)
    written = ray.data.read_parquet(args.output).select_columns(["error"])
    total = errors = 0
    for batch in written.iter_batches(batch_format="pyarrow"):
        total += batch.num_rows
        errors += batch.num_rows - batch["error"].null_count
    print(f"hands_infer.ray: {total} rows in {args.output}, {errors} errors", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
