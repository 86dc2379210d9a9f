"""One Predictor shared by Python threads, and memory over many calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np


def test_four_threads_sharing_one_predictor_get_the_same_answers(predictor, sample_files):
    files = sample_files[:96]
    expected = predictor.predict_files(files)
    blobs = [p.read_bytes() for p in files]

    def work(turn: int):
        if turn % 2 == 0:
            return predictor.predict_files(files)
        return predictor.predict_bytes(blobs, names=files)

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(work, range(8)))
    for rows in answers:
        assert rows == expected


def resident_megabytes() -> float:
    """This process's resident memory (VmRSS), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_memory_does_not_grow_over_twenty_thousand_small_calls(predictor, sample_files):
    small = np.random.default_rng(7).integers(0, 256, (1, 24, 20, 3), dtype=np.uint8)
    blob = sample_files[0].read_bytes()

    def call(i: int) -> None:
        if i % 2 == 0:
            predictor.predict_array(small)
        else:
            predictor.predict_bytes([blob])

    for i in range(1_000):
        call(i)
    after_first = resident_megabytes()
    for i in range(1_000, 20_000):
        call(i)
    growth = resident_megabytes() - after_first
    assert growth < 50, f"resident memory grew by {growth:.1f} MB between call 1,000 and 20,000"
