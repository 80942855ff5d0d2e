"""The gate step against the local serving record (runs/serving.json): real files, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

from count_api.settings import ApiSettings

from local_mode.runner import RunContext, write_json_atomic
from local_mode.steps import RunConfig, gate_step

SETTINGS = RunConfig(classes=(1, 2, 3, 4, 5), deploy_margin=0.05, api=ApiSettings(endpoint_name="x"))


def _run(tmp_path: Path, run_id: str, accuracy: float, serving: dict | None, deploy: str = "auto") -> dict:
    runs = tmp_path / "runs"
    run_dir = runs / run_id
    write_json_atomic(
        run_dir / "evaluate" / "_SUCCESS", {"result": {"accuracy": accuracy, "majority_baseline": 0.2}, "duration_s": 1, "finished_at": ""}
    )
    if serving is not None:
        (tmp_path / "model").mkdir(exist_ok=True)
        (tmp_path / "model" / "model.pth").write_bytes(b"weights")
        records = {"synthetic (seed 1, 100 bins)": {"modelDir": str(tmp_path / "model"), **serving}}
        # A model deployed from other data must not count: its accuracy was measured on another test set.
        records["/data/other"] = {"modelDir": str(tmp_path / "model"), "runId": "other", "accuracy": 0.99}
        write_json_atomic(runs / "serving.json", records)
    options = {"settings": SETTINGS, "deploy": deploy, "source": None, "seed": 1, "bins": 100}
    ctx = RunContext(run_id=run_id, run_dir=run_dir, options=options, log=lambda _: None)
    (run_dir / "gate").mkdir()
    result = gate_step.run(ctx, run_dir / "gate")
    assert json.loads((run_dir / "gate" / "decision.json").read_text()) == result
    return result


def test_first_model_above_baseline_deploys(tmp_path: Path) -> None:
    assert _run(tmp_path, "r1", 0.6, serving=None)["deploy"] is True


def test_a_worse_model_than_the_served_one_is_held_back(tmp_path: Path) -> None:
    result = _run(tmp_path, "r2", 0.6, serving={"runId": "r1", "accuracy": 0.7})
    assert result["deploy"] is False and result["serving_run"] == "r1"
    assert "serving model" in result["reason"]


def test_a_run_is_not_judged_against_its_own_earlier_deployment(tmp_path: Path) -> None:
    assert _run(tmp_path, "r1", 0.6, serving={"runId": "r1", "accuracy": 0.7})["deploy"] is True


def test_a_record_without_a_model_counts_as_nothing_deployed(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "serving.json").write_text(json.dumps({"synthetic (seed 1, 100 bins)": {"runId": "r0", "accuracy": 0.9}}))
    assert _run(tmp_path, "r4", 0.6, serving=None)["serving_run"] is None


def test_force_deploys_below_baseline(tmp_path: Path) -> None:
    assert _run(tmp_path, "r3", 0.1, serving={"runId": "r1", "accuracy": 0.7}, deploy="force")["deploy"] is True


def test_a_deployed_record_is_read_back_and_other_sources_are_kept(tmp_path: Path) -> None:
    import serving_record

    runs = tmp_path / "runs"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pth").write_bytes(b"weights")
    record = serving_record.local_record(
        run_id="r1",
        accuracy=0.6,
        evaluation="runs/r1/evaluate/evaluation.json",
        model_artifacts="runs/r1/train/model.tar.gz",
        model_dir=str(tmp_path / "model"),
        hyperparameters={"lr": "0.001"},
        deployed_at="2026-11-26T04:00:00+00:00",
    )
    serving_record.write_local_record(runs, "/data/other", {**record, "runId": "other"})
    serving_record.write_local_record(runs, "synthetic (seed 1, 100 bins)", record)
    assert serving_record.local_serving_model(runs, "synthetic (seed 1, 100 bins)") == record
    assert serving_record.local_serving_model(runs, "/data/other")["runId"] == "other"
    (tmp_path / "model" / "model.pth").unlink()  # the served model's folder is gone: nothing is deployed
    assert serving_record.local_serving_model(runs, "synthetic (seed 1, 100 bins)") is None
