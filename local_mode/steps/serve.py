"""serve: the Model -> EndpointConfig -> endpoint steps' twin, on localhost.

When the gate deploys, this run's model is served and recorded in runs/serving.json (the local "current
endpoint model", one per data source); when it holds back, the model recorded there for the same data
keeps serving, as the real endpoint keeps its old model. The servers run in this process; they stop when the demo exits (--keep-serving waits).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import serving_record

from local_mode.runner import RunContext


def run(ctx: RunContext, step_dir: Path) -> dict[str, Any]:
    from local_mode.local_serving import start_local_serving

    run_config = ctx.options["settings"]
    runs_dir = ctx.run_dir.parent
    data_source = serving_record.data_source_key(ctx.options)
    if ctx.result_of("gate")["deploy"]:
        train = ctx.result_of("train")
        evaluation = ctx.result_of("evaluate")
        record = serving_record.local_record(
            run_id=ctx.run_id,
            accuracy=evaluation["accuracy"],
            evaluation=evaluation["report"],
            model_artifacts=train["model_tar"],
            model_dir=train["model_dir"],
            hyperparameters=train["hyperparameters"],
            deployed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        serving_record.write_local_record(runs_dir, data_source, record)
    else:
        record = serving_record.local_serving_model(runs_dir, data_source)
        if record is None:
            ctx.log(
                "The gate held this model back and no earlier model for this data is deployed: nothing to serve (--deploy force serves it)."
            )
            return {"served_run": None, "api_url": None, "curl": None}
        ctx.log(f"The gate held this model back: serving the deployed model of run {record['runId']} instead.")
    serving = start_local_serving(record["modelDir"], settings=run_config.api)
    ctx.cleanups.callback(serving.close)
    count_url = f"{serving.api_url}/v1/count"
    curl = f'curl -s -H "x-api-key: {serving.api_key}" -H "Content-Type: image/jpeg" --data-binary @photo.jpg {count_url}'
    ctx.log(f"page     {serving.api_url}/  (open in a browser; API key {serving.api_key})")
    ctx.log(f"endpoint {serving.endpoint_url}  (/ping, /invocations)")
    ctx.log(f"API      {count_url}  (key {serving.api_key})")
    # The key is ephemeral (a new one per start) and only valid on loopback: safe to record.
    return {
        "served_run": record["runId"],
        "model_dir": record["modelDir"],
        "api_url": serving.api_url,
        "count_url": count_url,
        "api_key": serving.api_key,
        "endpoint_url": serving.endpoint_url,
        "curl": curl,
    }
