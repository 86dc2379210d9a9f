#!/usr/bin/env python3
"""Makes the benchmark's full-size photos: every sample image upscaled to 1600x1200 (the
11K Hands originals' size) and saved as a quality-90 JPEG, cycling through the sample until
COUNT files exist. Idempotent.

    make_images.py SAMPLE_IMAGES OUT_DIR COUNT
"""
import os
import sys

from PIL import Image


def main() -> None:
    source, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    sources = sorted(f for f in os.listdir(source) if f.lower().endswith(".jpg"))
    if not sources:
        sys.exit(f"no JPEGs in {source}")
    for i in range(count):
        target = os.path.join(out, f"hand-{i:05d}.jpg")
        if os.path.exists(target):
            continue
        with Image.open(os.path.join(source, sources[i % len(sources)])) as image:
            image.convert("RGB").resize((1600, 1200), Image.BICUBIC).save(target, quality=90)
    print(f"{count} 1600x1200 JPEGs in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
