"""The deploy gate rule (local_mode.gate.decide): pure function, no mocks."""

from __future__ import annotations

import pytest

from local_mode.gate import decide


def test_deploys_when_accuracy_reaches_baseline_plus_margin() -> None:
    decision = decide(accuracy=0.30, majority_baseline=0.25, margin=0.05)
    assert decision.deploy
    assert decision.threshold == pytest.approx(0.30)


def test_holds_back_below_baseline_plus_margin() -> None:
    decision = decide(accuracy=0.29, majority_baseline=0.25, margin=0.05)
    assert not decision.deploy
    assert "below the majority baseline" in decision.reason


def test_holds_back_below_the_serving_model() -> None:
    decision = decide(accuracy=0.80, majority_baseline=0.25, margin=0.05, serving_accuracy=0.85)
    assert not decision.deploy
    assert "serving model" in decision.reason


def test_equal_to_serving_model_deploys() -> None:
    assert decide(accuracy=0.85, majority_baseline=0.25, margin=0.05, serving_accuracy=0.85).deploy


@pytest.mark.parametrize(("mode", "expected"), [("force", True), ("never", False)])
def test_overrides_ignore_the_rule(mode: str, expected: bool) -> None:
    good = decide(accuracy=0.99, majority_baseline=0.25, margin=0.05, mode=mode)
    bad = decide(accuracy=0.01, majority_baseline=0.25, margin=0.05, serving_accuracy=0.9, mode=mode)
    assert good.deploy is expected and bad.deploy is expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accuracy": 1.5, "majority_baseline": 0.2, "margin": 0.05}, "'accuracy' = 1.5"),
        ({"accuracy": 0.5, "majority_baseline": -0.1, "margin": 0.05}, "'majority_baseline'"),
        ({"accuracy": 0.5, "majority_baseline": 0.2, "margin": 0.05, "mode": "sometimes"}, "expected one of auto, force, never"),
    ],
)
def test_bad_inputs_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decide(**kwargs)
