"""gate: the state machine's Gate (Choice) state, applied to this run's evaluation.json.

The local twin of "the serving model" is runs/serving.json, written by the serve step when it deploys a
run's model; its recorded accuracy is what a new model must not fall below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from local_mode.gate import decide
from local_mode.runner import RunContext, StepFailed, write_json_atomic

SERVING_RECORD = "serving.json"


def serving_record(runs_dir: Path) -> dict[str, Any] | None:
    path = runs_dir / SERVING_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and Path(str(record.get("modelDir", ""))).is_dir() else None


def run(ctx: RunContext, step_dir: Path) -> dict[str, Any]:
    evaluation = ctx.result_of("evaluate")
    settings = ctx.options["settings"]
    serving = serving_record(ctx.run_dir.parent)
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
