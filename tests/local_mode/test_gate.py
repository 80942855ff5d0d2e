"""The deploy rule (training_code/deploy_rule.decide) that the pipeline's Evaluate job and the local gate step apply."""

from __future__ import annotations

import pytest
from deploy_rule import DeployRuleError, decide, required_accuracy


def test_deploys_when_accuracy_reaches_baseline_plus_margin() -> None:
    decision = decide(accuracy=0.30, majority_baseline=0.25, margin=0.05)
    assert decision.deploy
    assert decision.required_accuracy == pytest.approx(0.30)


def test_the_threshold_is_rounded_so_float_sums_do_not_refuse_an_equal_accuracy() -> None:
    assert 0.2 + 0.1 > 0.3 and required_accuracy(0.2, 0.1) == 0.3
    assert decide(accuracy=0.3, majority_baseline=0.2, margin=0.1).deploy


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


def test_the_decision_carries_its_numbers() -> None:
    decision = decide(accuracy=0.4, majority_baseline=0.25, margin=0.05, serving_accuracy=0.35, mode="auto").to_dict()
    assert decision == {
        "deploy": True,
        "reason": "accuracy 0.400 reaches the threshold 0.300 and the serving model's 0.350",
        "mode": "auto",
        "accuracy": 0.4,
        "majority_baseline": 0.25,
        "margin": 0.05,
        "required_accuracy": 0.3,
        "serving_accuracy": 0.35,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accuracy": 1.5, "majority_baseline": 0.2, "margin": 0.05}, "'accuracy' = 1.5"),
        ({"accuracy": 0.5, "majority_baseline": -0.1, "margin": 0.05}, "'majority_baseline'"),
        ({"accuracy": 0.5, "majority_baseline": 0.2, "margin": True}, "'margin'"),
        ({"accuracy": 0.5, "majority_baseline": 0.2, "margin": 0.05, "serving_accuracy": float("nan")}, "'serving_accuracy'"),
        ({"accuracy": 0.5, "majority_baseline": 0.2, "margin": 0.05, "mode": "sometimes"}, "expected one of auto, force, never"),
    ],
)
def test_bad_inputs_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(DeployRuleError, match=message):
        decide(**kwargs)
