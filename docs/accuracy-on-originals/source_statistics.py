"""What a 32x32 input keeps of each image source: mean colour, border (background) colour and
where the hand lies, per source and side of the hand.

Usage: python source_statistics.py [DATA] (default ../shared/data/hands-11k). The square
copies are mirrored top-bottom first, so that their hands point down like the originals'.
Hand mass: the mean darkness (1 - grey) of every fourth row (top to bottom) and column (left
to right), in percent. Needs Pillow and NumPy (in .tools/venv after scripts/setup-python).
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
        groups[(source, row["aspectOfHand"].split()[0])].append(pixels)

for (source, side), images in sorted(groups.items()):
    images = np.stack(images)
    border = np.concatenate(
        [images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    darkness = 1 - images.mean(axis=(0, 3))
    print(f"{source:16} {side:6} {len(images):4} images: "
          f"mean RGB {np.round(images.mean(axis=(0, 1, 2)), 3)}, "
          f"border RGB {np.round(border.mean(axis=(0, 1)), 3)}, "
          f"hand mass by row {np.round(darkness.mean(1) * 100)[::4]}, "
          f"by column {np.round(darkness.mean(0) * 100)[::4]}")
