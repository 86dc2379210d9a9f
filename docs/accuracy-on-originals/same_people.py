"""Originals against square copies of the same people, from a cv run's test predictions.

Usage: python same_people.py RUN/GENOTYPE [RUN/GENOTYPE ...]
(e.g. runs/cv32-base/pretrained). For each genotype folder: over the test subjects that have
both originals (images that are not square) and square copies, the mean per-class accuracy
and the accuracy per side of the hand, on their originals and on their copies; the same on
everyone for comparison. Needs Pillow (in .tools/venv after scripts/setup-python).
"""

import csv
import sys
from collections import defaultdict
from pathlib import Path

from PIL import Image


def source(path, cache={}):
    if path not in cache:
        with Image.open(path) as image:
            width, height = image.size
        cache[path] = "copies" if width == height else "originals"
    return cache[path]


def mean_per_class(rows):
    by_label = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row["right"])
    return sum(sum(v) / len(v) for v in by_label.values()) / len(by_label)


def report(folder):
    rows = []
    for predictions in sorted(Path(folder).glob("fold-*/test_predictions.csv")):
        with open(predictions, newline="") as f:
            for row in csv.DictReader(f):
                labels = [k[2:] for k in row if k.startswith("p_") and not k.endswith("_flip")]
                predicted = max(labels, key=lambda k: float(row["p_" + k]))
                row["right"] = predicted == row["label"]
                row["source"] = source(row["path"])
                row["side"] = row["aspect"].split()[0] if row["aspect"] else "-"
                rows.append(row)
    sources = defaultdict(set)
    for row in rows:
        sources[row["subject"]].add(row["source"])
    both = {s for s, found in sources.items() if len(found) == 2}
    print(f"{folder}: {len(rows)} test images of {len(sources)} subjects; "
          f"{len(both)} subjects have both sources")
    for people, keep in [("people with both", lambda r: r["subject"] in both),
                         ("everyone", lambda r: True)]:
        for name in ["originals", "copies"]:
            part = [r for r in rows if keep(r) and r["source"] == name]
            sides = " ".join(
                f"{side} {sum(r['right'] for r in group) / len(group):.3f} ({len(group)})"
                for side in ["dorsal", "palmar"]
                if (group := [r for r in part if r["side"] == side]))
            print(f"  {people:16} {name:9} {len(part):4} images, "
                  f"{len({r['subject'] for r in part}):3} subjects: "
                  f"mean per-class {mean_per_class(part):.3f}; {sides}")


for folder in sys.argv[1:]:
    report(folder)
