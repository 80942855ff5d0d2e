"""bench.ensemble's dump and score against the pipeline's own Evaluate step (real train.py model, real test split)."""

from __future__ import annotations

import json
from pathlib import Path

import evaluate
import numpy as np
import pytest

from bench import ensemble


def test_a_dumped_member_scores_what_evaluate_reports(trained: Path, prepared: Path, tmp_path: Path) -> None:
    dump = tmp_path / "probs.npz"
    ensemble.dump([trained / "model"], prepared / "test", dump)
    report = evaluate.evaluate_model(trained / "model", prepared / "test", tmp_path / "evaluation")
    with np.load(dump) as npz:
        probabilities, targets = npz[ensemble.member_name(trained / "model")], npz["_targets"]
        ids = list(npz["_ids"])
    assert ids == json.loads((prepared / "test" / "labels.json").read_text())["ids"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    figures = ensemble.score(probabilities, targets, report["classes"])
    assert figures["accuracy"] == pytest.approx(report["accuracy"])
    assert figures["rmse"] == pytest.approx(report["rmse"], abs=1e-6)
    assert figures["rmse_expected"] == pytest.approx(report["rmse_expected"], abs=1e-4)
    assert figures["ece"] == pytest.approx(report["calibration"]["ece"], abs=1e-4)
    assert figures["accuracy_most_confident_50"] == pytest.approx(report["calibration"]["accuracy_most_confident_50"])
