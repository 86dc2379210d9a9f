#!/usr/bin/env python3
"""Probe (not part of the pipeline): would averaging over a top-bottom mirror at test time
help a cross-validation run trained with --vertical-flip?

`copy` writes PNG copies of a data folder, as is and mirrored top-bottom; `score` reads the
fold models' predictions on both (from `hands-search eval`) beside the run's own
test_predictions.csv and prints the mean per-class accuracy (mean ± std over the folds) of
each way of averaging. Needs Pillow for `copy` (see hand-crop.py).

    scripts/probes/mirror-tta.py copy ../shared/data/hands-11k /tmp/png-plain /tmp/png-vflip
    R=runs/cv32-light40-last-vflip
    for d in plain vflip; do for f in 0 1 2 3 4; do
        target/release/hands-search eval --model $R/pretrained/fold-$f/model.safetensors \
            --data /tmp/png-$d --split-file $R/splits/fold-$f.json --split test \
            --predictions /tmp/tta-$d-$f.csv > /dev/null
    done; done
    scripts/probes/mirror-tta.py score $R/pretrained /tmp/tta
"""
import csv
import os
import statistics as st
import sys


def copy(src, plain, flipped):
    from PIL import Image

    for out, mirror in ((plain, False), (flipped, True)):
        os.makedirs(os.path.join(out, "images"), exist_ok=True)
        with open(os.path.join(src, "HandInfo.csv")) as f, open(os.path.join(out, "HandInfo.csv"), "w") as g:
            g.write(f.read().replace(".jpg", ".png"))
        for name in os.listdir(os.path.join(src, "images")):
            im = Image.open(os.path.join(src, "images", name)).convert("RGB")
            if mirror:
                im = im.transpose(Image.FLIP_TOP_BOTTOM)
            im.save(os.path.join(out, "images", os.path.splitext(name)[0] + ".png"))


def read(path):
    return {os.path.splitext(os.path.basename(r["path"]))[0]: r for r in csv.DictReader(open(path))}


def mean_per_class(rows, p_female):
    right = {}
    for key, row in rows.items():
        right.setdefault(row["label"], []).append((p_female(key) >= 0.5) == (row["label"] == "female"))
    return st.mean(st.mean(v) for v in right.values())


def score(genotype_dir, prefix):
    results = {}
    for fold in range(5):
        run = read(f"{genotype_dir}/fold-{fold}/test_predictions.csv")
        plain, flipped = read(f"{prefix}-plain-{fold}.csv"), read(f"{prefix}-vflip-{fold}.csv")
        assert run.keys() == plain.keys() == flipped.keys(), f"fold {fold}: other images"
        p = lambda rows, column: lambda k: float(rows[k][column])
        ways = {
            "JPEG, plain": p(run, "p_female"),
            "JPEG, left-right TTA": p(run, "p_female_flip"),
            "PNG, plain": p(plain, "p_female"),
            "PNG, plain + top-bottom": lambda k: (p(plain, "p_female")(k) + p(flipped, "p_female")(k)) / 2,
            "plain + left-right + top-bottom": lambda k: (2 * p(run, "p_female_flip")(k) + p(flipped, "p_female")(k)) / 3,
        }
        for name, way in ways.items():
            results.setdefault(name, []).append(mean_per_class(run, way))
    for name, folds in results.items():
        print(f"{name:32s} {st.mean(folds):.3f} ± {st.stdev(folds):.3f}  " + " ".join(f"{x:.3f}" for x in folds))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "copy":
        copy(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "score":
        score(*sys.argv[2:])
    else:
        sys.exit("usage: mirror-tta.py copy DATA PLAIN_OUT FLIPPED_OUT | score GENOTYPE_DIR PREDICTIONS_PREFIX")
