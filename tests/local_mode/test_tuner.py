"""The local tuner's loop (local_mode.random_search): real loop, files and scoring; the trial runner is a stand-in
function that prints metric lines instead of training (the real train.py trials run in test_demo_e2e)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from local_mode.random_search import distinct_samples, objective_value, run_tuning
from local_mode.runner import StepFailed

METRIC = "validation:accuracy"


def _parse(text: str) -> list[dict]:
    return [{METRIC: float(m)} for m in re.findall(r"validation:accuracy=([0-9.]+)", text)]


def _sample(rng: random.Random) -> dict:
    return {"lr": round(rng.uniform(0.001, 0.1), 5), "epochs": 2}


def test_objective_is_the_last_emitted_value() -> None:
    assert objective_value([{METRIC: 0.9}, {"other": 1.0}, {METRIC: 0.4}], METRIC) == 0.4
    assert objective_value([{"other": 1.0}], METRIC) is None


def test_distinct_samples_are_reproducible() -> None:
    assert distinct_samples(_sample, 4, seed=3) == distinct_samples(_sample, 4, seed=3)
    assert len({json.dumps(s, sort_keys=True) for s in distinct_samples(_sample, 4, seed=3)}) == 4


def test_best_trial_maximises_the_objective_and_failures_are_recorded(tmp_path: Path) -> None:
    scores = {1: 0.3, 2: None, 3: 0.7, 4: 0.5}

    def run_trial(index: int, hp: dict, trial_dir: Path, on_metrics) -> str:
        if scores[index] is None:
            raise StepFailed("train.py exited with code 1")
        on_metrics({})
        return f"METRICS epoch=1; validation:accuracy=0.1;\nMETRICS epoch=2; validation:accuracy={scores[index]};\n"

    best = run_tuning(
        tune_dir=tmp_path, trials=4, seed=0, sample=_sample, parse_metrics=_parse, objective_metric=METRIC, run_trial=run_trial
    )
    assert best["best_trial"] == "trial-003"
    assert best["best_objective"] == 0.7
    assert [t["status"] for t in best["trials"]] == ["Completed", "Failed", "Completed", "Completed"]
    assert json.loads((tmp_path / "best.json").read_text()) == best
    failed = json.loads((tmp_path / "trial-002" / "result.json").read_text())
    assert "exited with code 1" in failed["failure"]


def test_all_trials_failing_fails_the_step(tmp_path: Path) -> None:
    def run_trial(index: int, hp: dict, trial_dir: Path, on_metrics) -> str:
        return "no metrics here\n"

    with pytest.raises(StepFailed, match="all 2 tuning trials failed"):
        run_tuning(tune_dir=tmp_path, trials=2, seed=0, sample=_sample, parse_metrics=_parse, objective_metric=METRIC, run_trial=run_trial)


def test_parallel_trials_all_run_and_keep_their_order(tmp_path: Path) -> None:
    import threading
    import time

    running, peak, lock = [0], [0], threading.Lock()

    def run_trial(index: int, hp: dict, trial_dir: Path, on_metrics) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return f"METRICS epoch=1; validation:accuracy={index / 10};\n"

    best = run_tuning(
        tune_dir=tmp_path, trials=4, seed=0, sample=_sample, parse_metrics=_parse, objective_metric=METRIC, run_trial=run_trial, parallel=2
    )
    assert peak[0] == 2
    assert [t["name"] for t in best["trials"]] == ["trial-001", "trial-002", "trial-003", "trial-004"]
    assert best["best_trial"] == "trial-004"


def test_a_trial_stopped_at_its_time_limit_is_scored_by_its_last_metric(tmp_path: Path) -> None:
    from local_mode.runner import RuntimeExceeded

    def run_trial(index: int, hp: dict, trial_dir: Path, on_metrics) -> str:
        if index == 1:  # MaxRuntimeInSeconds: stopped after two epochs, as SageMaker stops a training job
            raise RuntimeExceeded("trial 1 was stopped at its 5 s limit", "validation:accuracy=0.2\nvalidation:accuracy=0.8\n")
        return "validation:accuracy=0.6\n"

    best = run_tuning(
        tune_dir=tmp_path, trials=2, seed=0, sample=_sample, parse_metrics=_parse, objective_metric=METRIC, run_trial=run_trial
    )
    assert best["best_trial"] == "trial-001" and best["best_objective"] == 0.8
    assert [(t["status"], t["epochs_done"]) for t in best["trials"]] == [("Stopped", 2), ("Completed", 1)]


def test_final_training_epochs_fit_the_budget_at_the_measured_pace() -> None:
    from local_mode.steps.train import cap_epochs

    hyperparameters = {"epochs": "8"}
    assert cap_epochs(hyperparameters, 240, 55.0) == (8, 4) and hyperparameters["epochs"] == "4"
    assert cap_epochs({"epochs": "3"}, 240, 55.0) is None  # already fits
    assert cap_epochs({"epochs": "8"}, 0, 55.0) is None and cap_epochs({"epochs": "8"}, 240, None) is None  # no budget / no pace
    slow = {"epochs": "8"}
    assert cap_epochs(slow, 240, 500.0) == (8, 1)  # always at least one epoch


def test_when_every_trial_hits_its_limit_before_a_metric_the_first_goes_on_untuned(tmp_path: Path) -> None:
    from local_mode.runner import RuntimeExceeded

    def run_trial(index: int, hp: dict, trial_dir: Path, on_metrics) -> str:
        raise RuntimeExceeded(f"trial {index} was stopped at its 5 s limit", "loading data...\n")

    best = run_tuning(
        tune_dir=tmp_path, trials=2, seed=0, sample=_sample, parse_metrics=_parse, objective_metric=METRIC, run_trial=run_trial
    )
    assert best["best_trial"] == "trial-001" and best["best_objective"] is None
    assert [(t["status"], t["stopped"], t["epochs_done"]) for t in best["trials"]] == [("Failed", True, 0)] * 2


def test_a_crashed_trial_still_fails_the_step_when_no_trial_scored(tmp_path: Path) -> None:
    def run_trial(index: int, hp: dict, trial_dir: Path, on_metrics) -> str:
        raise StepFailed("train.py exited with code 1")

    with pytest.raises(StepFailed, match="all 2 tuning trials failed"):
        run_tuning(tune_dir=tmp_path, trials=2, seed=0, sample=_sample, parse_metrics=_parse, objective_metric=METRIC, run_trial=run_trial)
