#!/usr/bin/env python3
"""The hands_infer Python package, timed the way scripts/bench-python compares it.

    python_package.py IMAGE_DIR --mode files|bytes|ray --threads N [--batch 64] [--output PATH]
                      [--worker-threads T]

Timed from the opening of the model to the last row written, like hands-infer's own rate and
bench/python_pipelines.py:
- files: Predictor.predict_files over the folder's JPEG files (one call), rows written as CSV;
- bytes: Predictor.predict_bytes over the files' bytes, read into memory before the clock
  starts (as a job that has them from an object store), rows written as CSV;
- ray: the Ray Data job of hands_infer.ray on a local Ray of N CPUs (its default workers),
  from listing the files to the Parquet written; starting Ray is timed apart.
Prints one JSON line: images, seconds, images_per_s (and ray_start_s for ray).
"""
import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

from hands_infer import Predictor


def write_rows(rows: list, labels: list, output: str) -> None:
    """The rows as hands-infer's CSV (path, label, p_<label>..., error)."""
    with open(output, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "label", *(f"p_{l}" for l in labels), "error"])
        for row in rows:
            p = row["probabilities"] or {}
            writer.writerow([row["path"], row["label"] or "",
                             *(f"{p[l]:.6f}" if p else "" for l in labels), row["error"] or ""])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("images")
    parser.add_argument("--mode", choices=["files", "bytes", "ray"], required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--output", default=os.devnull)
    parser.add_argument("--worker-threads", type=int, help="ray: threads per worker (its default)")
    args = parser.parse_args()
    paths = sorted(str(p) for p in Path(args.images).iterdir() if p.suffix == ".jpg")

    if args.mode == "ray":
        import ray
        from hands_infer.ray import predict_to_parquet

        start = time.perf_counter()
        ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - start
        start = time.perf_counter()
        workers = {"threads": args.worker_threads} if args.worker_threads else {}
        predict_to_parquet(args.images, args.output, batch_size=args.batch, **workers)
        seconds = time.perf_counter() - start
        written = ray.data.read_parquet(args.output).count()
        assert written == len(paths), f"{written} rows for {len(paths)} images"
        print(json.dumps({"images": len(paths), "seconds": seconds,
                          "images_per_s": len(paths) / seconds, "ray_start_s": ray_start}))
        return

    blobs = [Path(p).read_bytes() for p in paths] if args.mode == "bytes" else None
    start = time.perf_counter()
    predictor = Predictor(threads=args.threads, batch=args.batch)
    if blobs is None:
        rows = predictor.predict_files(paths)
    else:
        rows = predictor.predict_bytes(blobs, names=paths)
    write_rows(rows, predictor.labels, args.output)
    seconds = time.perf_counter() - start
    failed = sum(r["error"] is not None for r in rows)
    assert failed == 0, f"{failed} of {len(rows)} images failed"
    print(json.dumps({"images": len(paths), "seconds": seconds,
                      "images_per_s": len(paths) / seconds}))


if __name__ == "__main__":
    sys.exit(main())
