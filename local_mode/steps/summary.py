"""The closing summary: runs/<run id>/summary.json and the lines printed at the end of `make demo`."""

from __future__ import annotations

from typing import Any

from local_mode.runner import SUMMARY, RunContext, write_json_atomic


def write_summary(ctx: RunContext, markers: dict[str, dict[str, Any]], *, wall_s: float) -> dict[str, Any]:
    """summary.json: test accuracy under `accuracy`, per-step durations, and where everything is."""
    result = {name: marker["result"] for name, marker in markers.items()}
    evaluation = result.get("evaluate", {})
    serve = result.get("serve", {})
    summary = {
        "run_id": ctx.run_id,
        "run_dir": str(ctx.run_dir),
        "accuracy": evaluation.get("accuracy"),
        "rmse": evaluation.get("rmse"),
        "majority_baseline": evaluation.get("majority_baseline"),
        "test_images": evaluation.get("n"),
        "report": evaluation.get("report"),
        "figures": evaluation.get("figures", []),
        "model_tar": result.get("train", {}).get("model_tar"),
        "best_hyperparameters": result.get("tune", {}).get("best_hyperparameters"),
        "gate": result.get("gate", {}),
        "api_url": serve.get("api_url"),
        "curl": serve.get("curl"),
        "count": result.get("count", {}),
        # Steps skipped on --resume keep the duration of the run that did them.
        "durations_s": {name: marker["duration_s"] for name, marker in markers.items()},
        "this_invocation_wall_s": round(wall_s, 1),
    }
    write_json_atomic(ctx.run_dir / SUMMARY, summary)
    return summary


def print_summary(summary: dict[str, Any], *, keep_serving: bool, out: Any = print) -> None:
    out("")
    out("=" * 60)
    out(f"Summary of run {summary['run_id']}")
    out("=" * 60)
    if summary["accuracy"] is not None:
        out(
            f"  test accuracy     {summary['accuracy']:.1%} on {summary['test_images']} photos (majority baseline {summary['majority_baseline']:.1%})"
        )
        out(f"  test RMSE         {summary['rmse']:.3f}")
    gate = summary["gate"]
    if gate:
        out(f"  gate              {'deployed' if gate.get('deploy') else 'not deployed'}: {gate.get('reason')}")
    out(f"  report            {summary['report']}")
    for figure in summary["figures"]:
        out(f"  figure            {figure}")
    out(f"  model             {summary['model_tar']}")
    out("  step durations    " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary["durations_s"].items()))
    if summary["api_url"]:
        out(f"  page              {summary['api_url']}/  (open in a browser, type the API key from the curl line)")
        out(f"  local API         {summary['api_url']}/v1/count (x-api-key header)")
        out(f"  try               {summary['curl']}")
        if keep_serving:
            out("                    the servers run until Ctrl-C")
        else:
            out(f"                    the servers stop when the demo exits: `make serve RUN={summary['run_dir']}` serves the model again")
    out(f"  summary           {summary['run_dir']}/summary.json")
