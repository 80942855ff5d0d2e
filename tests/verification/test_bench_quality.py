"""bench/verification_quality.py's own arithmetic: AUROC against a pairwise count, the seeded record changes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench import verification_quality as vq


def pairwise_auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """The definition: P(score of a positive > score of a negative), ties half; O(n^2), independent of ranks."""
    pos, neg = scores[positives], scores[~positives]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_the_pairwise_definition_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=60).astype(float) / 5  # many ties
    positives = rng.random(60) < 0.4
    assert vq.auroc(scores, positives) == pytest.approx(pairwise_auroc(scores, positives))


def test_auroc_extremes() -> None:
    positives = np.array([True, True, False, False])
    assert vq.auroc(np.array([0.9, 0.8, 0.1, 0.2]), positives) == 1.0
    assert vq.auroc(np.array([0.1, 0.2, 0.9, 0.8]), positives) == 0.0
    assert vq.auroc(np.array([0.5, 0.5, 0.5, 0.5]), positives) == 0.5


def test_half_the_records_change_by_one_or_two_within_the_classes() -> None:
    classes = [1, 2, 3, 4, 5]
    truth = [1 + i % 5 for i in range(101)]
    records, wrong, deltas = vq.corrupt_records(truth, classes, seed=13)
    assert wrong.sum() == 50
    for t, r, w, d in zip(truth, records, wrong, deltas, strict=True):
        assert r in classes
        assert (r != t) == bool(w) and abs(r - t) == d and d in ((1, 2) if w else (0,))
    again = vq.corrupt_records(truth, classes, seed=13)
    assert again[0] == records  # seeded: the same records every run
    assert vq.corrupt_records(truth, classes, seed=14)[0] != records
