"""Who the originals' palm figure is made of: the test subjects' original palm photos, per person.

Usage: python palm_people.py RUN/GENOTYPE [RUN/GENOTYPE ...]
(e.g. runs/cv32-base/pretrained runs/cv32-origw2/pretrained). For each fold, the share of the
fold's original palm photos that each person holds and the share of them each run reads right,
people with the most photos first; then, per run, the fold by fold accuracy on the original
palms with and without the two people who hold the most. Needs Pillow (in .tools/venv after
scripts/setup-python).
"""

import csv
import sys
from collections import defaultdict
from pathlib import Path

from PIL import Image


def is_original(path, cache={}):
    if path not in cache:
        with Image.open(path) as image:
            width, height = image.size
        cache[path] = width != height
    return cache[path]


def original_palms(folder):
    """(fold, subject, label) -> [right or wrong per original palm photo]."""
    found = defaultdict(list)
    for predictions in sorted(Path(folder).glob("fold-*/test_predictions.csv")):
        with open(predictions, newline="") as f:
            for row in csv.DictReader(f):
                if not row["aspect"].startswith("palmar") or not is_original(row["path"]):
                    continue
                labels = [k[2:] for k in row if k.startswith("p_") and not k.endswith("_flip")]
                predicted = max(labels, key=lambda k: float(row["p_" + k]))
                key = (predictions.parent.name, row["subject"], row["label"])
                found[key].append(predicted == row["label"])
    return found


def accuracy(photos):
    return sum(photos) / len(photos) if photos else float("nan")


runs = {folder: original_palms(folder) for folder in sys.argv[1:]}
first = next(iter(runs.values()))
folds = sorted({fold for fold, _, _ in first})
largest = sorted(first, key=lambda key: -len(first[key]))[:2]

print("fold     subject  label   photos  share  " + "  ".join(Path(f).parent.name for f in runs))
for fold in folds:
    people = sorted((k for k in first if k[0] == fold), key=lambda k: -len(first[k]))
    total = sum(len(first[k]) for k in people)
    for key in people[:3]:
        reads = "  ".join(f"{accuracy(found[key]):.2f}" for found in runs.values())
        print(f"{fold}   {key[1]}  {key[2]:6}  {len(first[key]):6}  {len(first[key]) / total:5.2f}  {reads}")

print()
names = ", ".join(subject for _, subject, _ in largest)
print(f"accuracy on the original palms per fold, all people / without {names}")
for folder, found in runs.items():
    cells = []
    for fold in folds:
        everyone = [r for k, v in found.items() if k[0] == fold for r in v]
        others = [r for k, v in found.items() if k[0] == fold and k not in largest for r in v]
        cells.append(f"{accuracy(everyone):.3f}/{accuracy(others):.3f}")
    print(f"  {folder}: " + "  ".join(cells))
