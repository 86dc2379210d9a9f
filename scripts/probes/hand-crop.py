#!/usr/bin/env python3
"""Probe (not part of the pipeline): a copy of an 11K Hands folder with every image cropped
to the hand, to measure whether more pixels on the hand help at 32x32.

Each image is squashed to a square (as the pipeline's resize does), the hand's bounding box
is found on the white background in a 100x75 thumbnail (pixels darker than 120 or with
saturation above 0.18; rows and columns with over 3% such pixels), and a square 8% larger
than the box, padded white, is written as PNG. Needs Pillow
(`python3 -m pip install --target .tools/pillow pillow`, then `PYTHONPATH=.tools/pillow`).

    scripts/probes/hand-crop.py ../shared/data/hands-11k /tmp/crop-data
    target/release/hands-search cv --data /tmp/crop-data --size 32 --init-channels 12 \
        --layers 6 --epochs 40 --batch 32 --augment darts --cutout 0 --drop-path 0 --seed 0 \
        --select last --vertical-flip --genotype models/pretrained/genotype.json \
        --out runs/cv32-crop-vflip-probe
"""
import os
import sys

from PIL import Image


def hand_box(thumb):
    w, h = thumb.size
    px = thumb.load()
    rows, cols = [0] * h, [0] * w
    for y in range(h):
        for x in range(w):
            hi, lo = max(px[x, y]), min(px[x, y])
            if hi < 120 or (hi - lo) > 0.18 * hi:
                rows[y] += 1
                cols[x] += 1

    def span(counts, across):
        idx = [i for i, v in enumerate(counts) if v >= max(1, int(0.03 * across))]
        return (idx[0], idx[-1]) if idx else (0, len(counts) - 1)

    (y0, y1), (x0, x1) = span(rows, w), span(cols, h)
    return x0, y0, x1, y1


def main(src, out):
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    with open(os.path.join(src, "HandInfo.csv")) as f, open(os.path.join(out, "HandInfo.csv"), "w") as g:
        g.write(f.read().replace(".jpg", ".png"))
    for name in sorted(os.listdir(os.path.join(src, "images"))):
        im = Image.open(os.path.join(src, "images", name)).convert("RGB")
        im = im.resize((min(im.size), min(im.size)))
        x0, y0, x1, y1 = hand_box(im.resize((100, 75)))
        sx, sy = im.size[0] / 100, im.size[1] / 75
        x0, x1, y0, y1 = x0 * sx, (x1 + 1) * sx, y0 * sy, (y1 + 1) * sy
        side = max(x1 - x0, y1 - y0) * 1.08
        left, top = int((x0 + x1) / 2 - side / 2), int((y0 + y1) / 2 - side / 2)
        square = Image.new("RGB", (int(side), int(side)), (255, 255, 255))
        inner = im.crop(
            (max(left, 0), max(top, 0), min(left + int(side), im.size[0]), min(top + int(side), im.size[1]))
        )
        square.paste(inner, (max(left, 0) - left, max(top, 0) - top))
        square.save(os.path.join(out, "images", os.path.splitext(name)[0] + ".png"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: hand-crop.py DATA_DIR OUT_DIR")
    main(sys.argv[1], sys.argv[2])
