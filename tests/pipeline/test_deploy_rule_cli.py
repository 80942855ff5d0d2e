"""deploy_rule.py as the Evaluate Processing job runs it after evaluate.py: real code, local files."""

from __future__ import annotations

import json
from pathlib import Path

import deploy_rule
import pytest


def _gate(tmp_path: Path, report: object, *extra: str) -> tuple[int, Path]:
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps(report))
    out = tmp_path / "gate.json"
    argv = ["--evaluation", str(evaluation), "--margin", "0.05", "--output", str(out)]
    return deploy_rule.main([*argv, *(extra or ("--mode", "auto", "--serving-accuracy", "none"))]), out


def test_gate_json_holds_the_decision_and_its_numbers(tmp_path: Path) -> None:
    code, out = _gate(tmp_path, {"accuracy": 0.41, "majority_baseline": 0.255, "n": 2088, "rmse": 1.1})
    assert code == 0
    assert json.loads(out.read_text()) == {
        "deploy": True,
        "reason": "accuracy 0.410 reaches the threshold 0.305",
        "mode": "auto",
        "accuracy": 0.41,
        "majority_baseline": 0.255,
        "margin": 0.05,
        "required_accuracy": 0.305,
        "serving_accuracy": None,
        "n": 2088,
    }


@pytest.mark.parametrize(
    ("mode", "serving", "deploy", "reason"),
    [
        ("auto", "0.5", False, "below the serving model's recorded accuracy 0.500"),
        ("auto", "0.4", True, "and the serving model's 0.400"),
        ("force", "0.9", True, "deploy=force"),
        ("never", "none", False, "deploy=never"),
    ],
)
def test_mode_and_serving_accuracy_from_the_command_line(tmp_path: Path, mode: str, serving: str, deploy: bool, reason: str) -> None:
    code, out = _gate(tmp_path, {"accuracy": 0.41, "majority_baseline": 0.255}, "--mode", mode, "--serving-accuracy", serving)
    decision = json.loads(out.read_text())
    assert code == 0 and decision["deploy"] is deploy and reason in decision["reason"]


@pytest.mark.parametrize(
    ("report", "extra", "message"),
    [
        ({"majority_baseline": 0.25}, (), "no 'accuracy'"),
        ({"accuracy": 1.5, "majority_baseline": 0.25}, (), "'accuracy' = 1.5"),
        ({"accuracy": 0.4, "majority_baseline": "0.25"}, (), "'majority_baseline'"),
        ([0.4], (), "JSON object"),
        ({"accuracy": 0.4, "majority_baseline": 0.25}, ("--mode", "sometimes", "--serving-accuracy", "none"), "expected one of auto"),
        ({"accuracy": 0.4, "majority_baseline": 0.25}, ("--mode", "auto", "--serving-accuracy", "high"), "--serving-accuracy 'high'"),
        ({"accuracy": 0.4, "majority_baseline": 0.25}, ("--mode", "auto", "--serving-accuracy", "50"), "'serving_accuracy' = 50.0"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], report: object, extra: tuple[str, ...], message: str
) -> None:
    code, out = _gate(tmp_path, report, *extra)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_evaluation_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--evaluation", str(tmp_path / "evaluation.json"), "--margin", "0.05", "--mode", "auto", "--serving-accuracy", "none"]
    assert deploy_rule.main([*argv, "--output", str(tmp_path / "gate.json")]) == 2
    assert "evaluation.json not found" in capsys.readouterr().err
