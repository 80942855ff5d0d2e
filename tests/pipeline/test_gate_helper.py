"""pipeline_gate.py, the helper the Evaluate Processing job runs after evaluate.py (real code, local files)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "pipeline" / "container"))
import pipeline_gate  # noqa: E402


def test_required_accuracy_is_baseline_plus_margin(tmp_path: Path) -> None:
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps({"accuracy": 0.41, "majority_baseline": 0.255, "n": 2088, "rmse": 1.1}))
    out = tmp_path / "gate.json"
    assert pipeline_gate.main(["--evaluation", str(evaluation), "--margin", "0.05", "--output", str(out)]) == 0
    numbers = json.loads(out.read_text())
    assert numbers == {"accuracy": 0.41, "majority_baseline": 0.255, "margin": 0.05, "required_accuracy": 0.305, "n": 2088}


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"majority_baseline": 0.25}, "'accuracy' = None"),
        ({"accuracy": 1.5, "majority_baseline": 0.25}, "'accuracy' = 1.5"),
        ({"accuracy": 0.4, "majority_baseline": "0.25"}, "'majority_baseline'"),
        ([0.4], "JSON object"),
    ],
)
def test_bad_evaluation_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], report: object, message: str) -> None:
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps(report))
    code = pipeline_gate.main(["--evaluation", str(evaluation), "--margin", "0.05", "--output", str(tmp_path / "gate.json")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "gate.json").exists()


def test_missing_evaluation_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = pipeline_gate.main(
        ["--evaluation", str(tmp_path / "evaluation.json"), "--margin", "0.05", "--output", str(tmp_path / "gate.json")]
    )
    assert code == 2 and "evaluation.json not found" in capsys.readouterr().err
