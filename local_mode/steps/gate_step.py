"""gate: the pipeline's deploy rule (training_code/deploy_rule.py), applied to this run's evaluation.json.

The local twin of "the serving model" is runs/serving.json (training_code/serving_record.py), written by the
serve step when it deploys a run's model, one record per data source; its recorded accuracy is what a new
model must not fall below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import serving_record
from deploy_rule import DeployRuleError, decide

from local_mode.runner import RunContext, StepFailed, write_json_atomic


def run(ctx: RunContext, step_dir: Path) -> dict[str, Any]:
    evaluation = ctx.result_of("evaluate")
    settings = ctx.options["settings"]
    serving = serving_record.local_serving_model(ctx.run_dir.parent, serving_record.data_source_key(ctx.options))
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
    except (KeyError, DeployRuleError) as error:
        raise StepFailed(f"gate: cannot read the evaluation report ({error}); see {ctx.step_dir('evaluate')}") from None
    result = {**decision.to_dict(), "serving_run": serving.get("runId") if serving else None}
    write_json_atomic(step_dir / "decision.json", result)
    ctx.log(f"{'DEPLOY' if decision.deploy else 'HOLD'}: {decision.reason}")
    return result
