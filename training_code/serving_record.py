"""The serving record: which model the endpoint serves and the accuracy a new model must not fall below.

Two copies of one schema: the pipeline writes `serving/current.json` in the artifacts bucket (the state machine's
"Describe what serves" state, infra/pipeline/chain_deploy.py, from `pipeline_record`); local mode keeps
runs/serving.json, one record per data source (`local_record`, plus `modelDir`), read and written here.
On AWS every run reads the same dataset, so the comparison is like for like; locally runs use different data
(synthetic bins, ../shared/abid, ...), so a run is compared with the model deployed from the same source.
Standard library only (docs/contracts.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LOCAL_RECORDS_FILE = "serving.json"


def pipeline_record(
    *,
    endpoint: Any,
    model: Any,
    endpoint_config: Any,
    accuracy: Any,
    evaluation: Any,
    training_job: Any,
    model_artifacts: Any,
    hyperparameters: Any,
    pretrained: Any,
    run_id: Any,
    execution: Any,
    deployed_at: Any,
    image: Any,
    code: Any,
) -> dict[str, Any]:
    """serving/current.json's fields, in the order written (the values may be the state machine's JSONPaths)."""
    return {
        "endpoint": endpoint,
        "model": model,
        "endpointConfig": endpoint_config,
        "accuracy": accuracy,
        "evaluation": evaluation,
        "trainingJob": training_job,
        "modelArtifacts": model_artifacts,
        "hyperparameters": hyperparameters,
        "pretrained": pretrained,
        "runId": run_id,
        "execution": execution,
        "deployedAt": deployed_at,
        "image": image,
        "code": code,
    }


def local_record(
    *, run_id: str, accuracy: float, evaluation: str, model_artifacts: str, model_dir: str, hyperparameters: Any, deployed_at: str
) -> dict[str, Any]:
    """runs/serving.json's record: the pipeline's keys that have a local meaning, plus the served model's folder."""
    return {
        "runId": run_id,
        "accuracy": accuracy,
        "evaluation": evaluation,
        "modelArtifacts": model_artifacts,
        "modelDir": model_dir,
        "hyperparameters": hyperparameters,
        "deployedAt": deployed_at,
    }


# --- local mode: runs/serving.json ------------------------------------------------------------------------------


def data_source_key(options: dict[str, Any]) -> str:
    """Which data a local run's test accuracy was measured on: "synthetic" or the source folder (+ file list)."""
    if not options.get("source"):
        return f"synthetic (seed {options.get('seed')}, {options.get('bins')} bins)"
    extra = [f"file list {options['file_list']}"] if options.get("file_list") else []
    extra += [f"at most {options['max_images']} photos"] if options.get("max_images") else []
    return " ".join([options["source"], *(f"({e})" for e in extra)])


def read_local_records(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """{data source key: record}; an unreadable or foreign file counts as nothing deployed."""
    try:
        records = json.loads((runs_dir / LOCAL_RECORDS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in records.items() if isinstance(v, dict)} if isinstance(records, dict) else {}


def local_serving_model(runs_dir: Path, key: str) -> dict[str, Any] | None:
    """The record of the model deployed for this data source, when its model folder still exists."""
    record = read_local_records(runs_dir).get(key)
    usable = (
        isinstance(record, dict)
        and isinstance(record.get("modelDir"), str)
        and record["modelDir"]
        and isinstance(record.get("accuracy"), float)
    )
    return record if usable and (Path(record["modelDir"]) / "model.pth").is_file() else None


def write_local_record(runs_dir: Path, key: str, record: dict[str, Any]) -> None:
    """Replace this data source's record, keeping the others; atomic, so a reader never sees half a file."""
    path = runs_dir / LOCAL_RECORDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps({**read_local_records(runs_dir), key: record}, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)
