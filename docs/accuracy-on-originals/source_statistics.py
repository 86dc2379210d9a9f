"""What a 32x32 input keeps of each image source: mean colour, border (background) colour and
where the hand lies, per source and side of the hand.

Usage: python source_statistics.py [DATA] (default ../shared/data/hands-11k). The square
copies are mirrored top-bottom first, so that their hands point down like the originals'.
Hand mass: the mean darkness (1 - grey) of every fourth row (top to bottom) and column (left
to right), in percent. Hand area: the share of pixels whose darkest channel is below 0.75;
sharpness: the mean absolute Laplacian of grey inside the hand; skew: the mean skewness of
the hand's columns in rows 5 to 20 (where the thumb is), its sign telling the thumb's side. Needs Pillow and NumPy (in .tools/venv after scripts/setup-python).
"""

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/hands-11k")
groups = defaultdict(list)
with open(data / "HandInfo.csv", newline="") as f:
    for row in csv.DictReader(f):
        with Image.open(data / "images" / row["imageName"]) as image:
            width, height = image.size
            pixels = np.asarray(image.convert("RGB").resize((32, 32), Image.BILINEAR)) / 255.0
        source = "originals" if width != height else f"copies {width}x{height}"
        if width == height:
            pixels = pixels[::-1]
        groups[(source, row["aspectOfHand"])].append(pixels)


def hand_shape(image):
    """Hand area, sharpness inside the hand and the thumb rows' skewness of one image."""
    hand = image.min(axis=2) < 0.75
    grey = image.mean(axis=2)
    laplacian = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1]
                       - grey[1:-1, :-2] - grey[1:-1, 2:])
    inside = hand[1:-1, 1:-1]
    columns = hand[5:20].sum(axis=0).astype(float)
    x = np.arange(len(columns))
    mean = (columns * x).sum() / max(columns.sum(), 1)
    spread = np.sqrt((columns * (x - mean) ** 2).sum() / max(columns.sum(), 1))
    skew = (columns * (x - mean) ** 3).sum() / max(columns.sum(), 1) / max(spread, 1e-9) ** 3
    return hand.mean(), laplacian[inside].mean() if inside.any() else 0.0, skew


for (source, side), images in sorted(groups.items()):
    images = np.stack(images)
    border = np.concatenate(
        [images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    darkness = 1 - images.mean(axis=(0, 3))
    print(f"{source:16} {side:12} {len(images):4} images: "
          f"mean RGB {np.round(images.mean(axis=(0, 1, 2)), 3)}, "
          f"border RGB {np.round(border.mean(axis=(0, 1)), 3)}, "
          f"hand mass by row {np.round(darkness.mean(1) * 100)[::4]}, "
          f"by column {np.round(darkness.mean(0) * 100)[::4]}")
    area, sharpness, skew = np.mean([hand_shape(image) for image in images], axis=0)
    print(f"{'':16} {'':12} hand area {area:.3f}, sharpness {sharpness:.4f}, skew {skew:+.2f}")
