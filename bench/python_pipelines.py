#!/usr/bin/env python3
"""The two Python pipelines hands-infer is compared with (run by scripts/bench-infer).

    python_pipelines.py MODEL IMAGE_DIR --threads N [--batch 64] [--mode plain|draft]

Both read the model card from the ONNX metadata (input size, mean, std), decode the images
on a pool of N threads (Pillow releases the GIL while decoding and resizing), stack batches
of 64 and run them with onnxruntime using N intra-op threads, then write one CSV row per
image, like hands-infer. `plain` is Pillow open + convert + resize; `draft` first asks
libjpeg for a reduced-size decode with Image.draft() (1/2 .. 1/8 scale in the DCT domain),
the fastest thing a Python user would write. Prints one JSON line with images/s.
"""
import argparse
import concurrent.futures as futures
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("images")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--mode", choices=["plain", "draft"], required=True)
    parser.add_argument("--output", default=os.devnull)
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    card = json.loads(session.get_modelmeta().custom_metadata_map["hands.card"])
    size = card["input"]["size"]
    mean = np.array(card["input"]["mean"], np.float32).reshape(3, 1, 1)
    std = np.array(card["input"]["std"], np.float32).reshape(3, 1, 1)
    labels = card["labels"]

    def load(path: str) -> np.ndarray:
        with Image.open(path) as image:
            if args.mode == "draft":
                image.draft("RGB", (size, size))
            image = ImageOps.exif_transpose(image).convert("RGB")
            image = image.resize((size, size), Image.BILINEAR)
        x = np.asarray(image, np.float32).transpose(2, 0, 1) / 255.0
        return (x - mean) / std

    paths = sorted(
        os.path.join(args.images, f)
        for f in os.listdir(args.images)
        if f.lower().endswith((".jpg", ".jpeg", ".png"))
    )
    start = time.perf_counter()
    with futures.ThreadPoolExecutor(args.threads) as pool, open(args.output, "w") as out:
        out.write("path,label," + ",".join(f"p_{l}" for l in labels) + "\n")
        # Decode the next batch while the current one runs (pool.map is lazy per batch).
        batches = [paths[i:i + args.batch] for i in range(0, len(paths), args.batch)]
        pending = pool.map(load, batches[0]) if batches else None
        for i, batch in enumerate(batches):
            inputs = np.stack(list(pending))
            if i + 1 < len(batches):
                pending = pool.map(load, batches[i + 1])
            probabilities = session.run(["probabilities"], {"image": inputs})[0]
            for path, p in zip(batch, probabilities):
                out.write(f"{path},{labels[int(p.argmax())]}," + ",".join(f"{v:.6f}" for v in p) + "\n")
    seconds = time.perf_counter() - start
    print(json.dumps({"pipeline": f"python-{args.mode}", "images": len(paths),
                      "seconds": seconds, "images_per_s": len(paths) / seconds}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
