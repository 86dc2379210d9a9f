"""Batch inference over many photos with Ray Data, on one machine or a cluster.

The job lists the images, predicts them in batches with :class:`HandsPredictor` held by each
worker (``map_batches`` with a callable class, so each worker opens the model once), and
writes Parquet with the columns ``path``, ``label``, ``p_<label>`` (one per label; null for
an image that could not be predicted) and ``error`` (null for one that was). Decoding,
resize and normalisation are the library's, so the answers are the ``hands-infer``
command's. Local files (a file system every node sees) are listed by the driver and read by
the workers themselves; ``s3://``, ``gs://`` and other remote sources are read as bytes by
Ray Data (``ray.data.read_binary_files``) and handed to the workers.

    python -m hands_infer.ray --input DIR --output DIR [--concurrency N] [--batch-size B]

On a cluster, start Ray on every node (``ray start --head`` on one, ``ray start
--address HEAD:6379`` on the others), put the photos where every node can read them (a
shared file system, or ``s3://`` / ``gs://`` paths, which Ray Data reads with pyarrow), and
pass ``--address auto`` (or ``HEAD:6379``) from the head node.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow

import ray  # the Ray package, not this module: absolute import
import ray.data

from . import HandsError, Predictor

#: File endings the job reads, as the command does (JPEG, PNG, BMP, WebP).
IMAGE_EXTENSIONS = ["jpg", "jpeg", "png", "bmp", "webp"]

#: Reading files and writing Parquet reserve no CPU: they wait on storage, and the workers,
#: one per CPU, would otherwise leave none for them (the job would never start). Tasks that
#: reserve nothing are not bounded by the CPUs either, so their number is bounded instead
#: (as many as the workers): unbounded, a read of 2,048 photos started 165 processes at once.
LIGHT_TASK = {"num_cpus": 0}

#: CPUs (threads) per worker unless told: one thread decodes while the other runs the
#: network. On 2 cores and 2,048 full-size photos, one worker of 2 threads predicted 375
#: images/s, two workers of 1 thread 262 (docs/python.md has the command).
THREADS_PER_WORKER = 2


class HandsPredictor:
    """The callable class for ``Dataset.map_batches``: opens a :class:`Predictor` once per
    worker and turns a batch ``{"path"}`` (files it reads) or ``{"path", "bytes"}`` (images
    read by Ray Data) into the job's columns.

    Its keyword arguments are :class:`Predictor`'s; ``threads`` (default
    :data:`THREADS_PER_WORKER`) should be the CPUs Ray gives the worker.
    """

    def __init__(self, threads: int = THREADS_PER_WORKER, **predictor_args: Any) -> None:
        self.predictor = Predictor(threads=threads, **predictor_args)
        self.schema = schema(self.predictor.labels)

    def __call__(self, batch: dict[str, np.ndarray]) -> pyarrow.Table:
        paths = [str(p) for p in batch["path"]]
        if "bytes" in batch:
            rows = self.predictor.predict_bytes(list(batch["bytes"]), names=paths)
        else:
            rows = self.predictor.predict_files(paths)
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


def image_files(sources: list[str]) -> list[str]:
    """The images of local ``sources``: a file as it is named, a folder's files with an image
    ending (any case) in all its sub-folders, in name order. A missing source is refused."""
    found: list[str] = []
    for source in sources:
        if os.path.isfile(source):
            found.append(source)
        elif os.path.isdir(source):
            for folder, subfolders, files in os.walk(source):
                subfolders.sort()
                found += [
                    os.path.join(folder, name)
                    for name in sorted(files)
                    if name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS
                ]
        else:
            raise FileNotFoundError(f"{source}: no such file or folder")
    return found


def workers(threads: int) -> int:
    """Workers of ``threads`` CPUs each that the Ray cluster's CPUs hold (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)


def predict_dataset(
    source: str | list[str],
    concurrency: Optional[int] = None,
    batch_size: int = 64,
    **predictor_args: Any,
) -> ray.data.Dataset:
    """The job's dataset (lazy): the images under ``source`` (a folder, a file, a list of
    them, local or ``s3://``...) predicted by ``concurrency`` workers of ``threads`` CPUs each
    (default: as many as the Ray cluster's CPUs hold), ``batch_size`` images per call."""
    threads = predictor_args.setdefault("threads", THREADS_PER_WORKER)
    concurrency = concurrency or workers(threads)
    sources = [source] if isinstance(source, str) else list(source)
    if any("://" in s for s in sources):
        images = ray.data.read_binary_files(
            sources,
            include_paths=True,
            file_extensions=IMAGE_EXTENSIONS,
            ray_remote_args=LIGHT_TASK,
            concurrency=concurrency,
        )
    else:
        # Paths only: the workers read the files, which saves copying every photo through
        # Ray's object store.
        paths = image_files(sources)
        images = ray.data.from_arrow(pyarrow.table({"path": pyarrow.array(paths, pyarrow.string())}))
    return images.map_batches(
        HandsPredictor,
        fn_constructor_kwargs=dict(predictor_args, batch=batch_size),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=threads,
    )


def predict_to_parquet(
    source: str | list[str],
    output: str,
    concurrency: Optional[int] = None,
    batch_size: int = 64,
    **predictor_args: Any,
) -> None:
    """Runs the job: the images under ``source`` predicted into Parquet files under
    ``output`` (see :func:`predict_dataset` for the arguments)."""
    concurrency = concurrency or workers(predictor_args.get("threads", THREADS_PER_WORKER))
    dataset = predict_dataset(source, concurrency, batch_size, **predictor_args)
    dataset.write_parquet(output, ray_remote_args=LIGHT_TASK, concurrency=concurrency)


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m hands_infer.ray``: predicts every image under ``--input`` into Parquet
    files under ``--output``; prints the rows written and how many were errors."""
    parser = argparse.ArgumentParser(
        prog="python -m hands_infer.ray",
        description="Predict the hand photos under a folder with Ray Data, into Parquet.",
    )
    parser.add_argument("--input", required=True, nargs="+", help="folders or files (local or s3://...)")
    parser.add_argument("--output", required=True, help="folder for the Parquet files")
    parser.add_argument(
        "--concurrency", type=int, help="workers (default: the cluster's CPUs / --threads)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (64)")
    parser.add_argument(
        "--threads", type=int, default=THREADS_PER_WORKER,
        help=f"threads (CPUs) per worker ({THREADS_PER_WORKER})",
    )
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

    predictor_args: dict[str, Any] = {"device": args.device, "threads": args.threads}
    if args.model:
        predictor_args["model"] = args.model
    if args.min_confidence is not None:
        predictor_args["min_confidence"] = args.min_confidence
    try:  # here, once, so that a bad model or argument is one message and not one per worker
        Predictor(**predictor_args)
    except (HandsError, ValueError) as error:
        parser.error(str(error))

    ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False)
    predict_to_parquet(
        args.input if len(args.input) > 1 else args.input[0],
        args.output,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        **predictor_args,
    )
    written = ray.data.read_parquet(args.output).select_columns(["error"])
    total = errors = 0
    for batch in written.iter_batches(batch_format="pyarrow"):
        total += batch.num_rows
        errors += batch.num_rows - batch["error"].null_count
    print(f"hands_infer.ray: {total} rows in {args.output}, {errors} errors", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
