"""serve: the Model -> EndpointConfig -> endpoint steps' twin, on localhost.

When the gate deploys, this run's model is served and recorded in runs/serving.json (the local "current
endpoint model", one per data source); when it holds back, the model recorded there for the same data
keeps serving, as the real endpoint keeps its old model. The servers run in this process; they stop when the demo exits (--keep-serving waits).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local_mode.runner import RunContext
from local_mode.steps.gate_step import serving_record, source_key, write_record


def run(ctx: RunContext, step_dir: Path) -> dict[str, Any]:
    from local_mode.serve import start_local_stack

    settings = ctx.options["settings"]
    runs_dir = ctx.run_dir.parent
    if ctx.result_of("gate")["deploy"]:
        train = ctx.result_of("train")
        evaluation = ctx.result_of("evaluate")
        # Keys as in the pipeline's serving/current.json (docs/contracts.md), plus the local model dir.
        record = {
            "runId": ctx.run_id,
            "accuracy": evaluation["accuracy"],
            "evaluation": evaluation["report"],
            "modelArtifacts": train["model_tar"],
            "modelDir": train["model_dir"],
            "hyperparameters": train["hyperparameters"],
            "deployedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_record(runs_dir, source_key(ctx.options), record)
    else:
        record = serving_record(runs_dir, source_key(ctx.options))
        if record is None:
            ctx.log(
                "The gate held this model back and no earlier model for this data is deployed: nothing to serve (--deploy force serves it)."
            )
            return {"served_run": None, "api_url": None, "curl": None}
        ctx.log(f"The gate held this model back: serving the deployed model of run {record['runId']} instead.")
    stack = start_local_stack(
        record["modelDir"],
        endpoint_name=settings.endpoint_name,
        max_images=settings.max_images_per_request,
        review_threshold=settings.review_confidence_threshold,
        verify_thresholds=settings.verify_thresholds,
    )
    ctx.cleanups.callback(stack.close)
    count_url = f"{stack.api_url}/v1/count"
    curl = f'curl -s -H "x-api-key: {stack.api_key}" -H "Content-Type: image/jpeg" --data-binary @photo.jpg {count_url}'
    ctx.log(f"page     {stack.api_url}/  (open in a browser; API key {stack.api_key})")
    ctx.log(f"endpoint {stack.endpoint_url}  (/ping, /invocations)")
    ctx.log(f"API      {count_url}  (key {stack.api_key})")
    # The key is ephemeral (a new one per start) and only valid on loopback: safe to record.
    return {
        "served_run": record["runId"],
        "model_dir": record["modelDir"],
        "api_url": stack.api_url,
        "count_url": count_url,
        "api_key": stack.api_key,
        "endpoint_url": stack.endpoint_url,
        "curl": curl,
    }
