"""gate: the state machine's Gate (Choice) state, applied to this run's evaluation.json.

The local twin of "the serving model" is runs/serving.json, written by the serve step when it deploys a
run's model; its recorded accuracy is what a new model must not fall below. On AWS every run reads the
same dataset, so that comparison is like for like; locally runs use different data (synthetic bins,
../shared/abid, ...), so the record keeps one serving model per data source (`source_key`), and a run is
compared with the model deployed from the same source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from local_mode.gate import decide
from local_mode.runner import RunContext, StepFailed, write_json_atomic

SERVING_RECORD = "serving.json"


def source_key(options: dict[str, Any]) -> str:
    """Which data a run's test accuracy was measured on: "synthetic" or the source folder (+ file list)."""
    if not options.get("source"):
        return f"synthetic (seed {options.get('seed')}, {options.get('bins')} bins)"
    extra = [f"file list {options['file_list']}"] if options.get("file_list") else []
    extra += [f"at most {options['max_images']} photos"] if options.get("max_images") else []
    return " ".join([options["source"], *(f"({e})" for e in extra)])


def read_records(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """{source key: serving record}; an unreadable or foreign file counts as nothing deployed."""
    try:
        records = json.loads((runs_dir / SERVING_RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in records.items() if isinstance(v, dict)} if isinstance(records, dict) else {}


def serving_record(runs_dir: Path, key: str) -> dict[str, Any] | None:
    """The model deployed for this data source, when its model dir still exists."""
    record = read_records(runs_dir).get(key)
    ok = (
        isinstance(record, dict)
        and isinstance(record.get("modelDir"), str)
        and record["modelDir"]
        and isinstance(record.get("accuracy"), float)
    )
    return record if ok and (Path(record["modelDir"]) / "model.pth").is_file() else None


def write_record(runs_dir: Path, key: str, record: dict[str, Any]) -> None:
    write_json_atomic(runs_dir / SERVING_RECORD, {**read_records(runs_dir), key: record})


def run(ctx: RunContext, step_dir: Path) -> dict[str, Any]:
    evaluation = ctx.result_of("evaluate")
    settings = ctx.options["settings"]
    serving = serving_record(ctx.run_dir.parent, source_key(ctx.options))
    # A re-run of the same run id must not be judged against itself.
    serving_accuracy = serving.get("accuracy") if serving and serving.get("runId") != ctx.run_id else None
    try:
        decision = decide(
            accuracy=evaluation["accuracy"],
            majority_baseline=evaluation["majority_baseline"],
            margin=settings.deploy_margin,
            serving_accuracy=serving_accuracy,
            mode=ctx.options["deploy"],
        )
    except (KeyError, ValueError) as error:
        raise StepFailed(f"gate: cannot read the evaluation report ({error}); see {ctx.step_dir('evaluate')}") from None
    result = {**decision.to_dict(), "serving_run": serving.get("runId") if serving else None, "margin": settings.deploy_margin}
    write_json_atomic(step_dir / "decision.json", result)
    ctx.log(f"{'DEPLOY' if decision.deploy else 'HOLD'}: {decision.reason}")
    return result
