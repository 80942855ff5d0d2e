"""evaluate: the Evaluate Processing job's twin: evaluate.py on the test channel with the trained model.

Writes runs/<id>/evaluate/evaluation.json (docs/contracts.md) and the PNGs beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from local_mode.runner import RunContext, StepFailed, run_logged
from local_mode.steps.common import channels, child_env, script

FIGURES = ("curves.png", "confusion_matrix.png")


def run(ctx: RunContext, step_dir: Path) -> dict[str, Any]:
    train = ctx.result_of("train")
    test = channels(ctx.step_dir("prepare"))["test"]
    command = [*script("evaluate.py"), "--model", train["model_tar"], "--test", str(test), "--output", str(step_dir)]
    # One thread: a small job, and 2 threads on 2 busy cores run several times slower (bench/results/train_scaling.json).
    run_logged(command, step_dir / "evaluate.log", env=child_env(1), what="evaluate.py")
    report_path = step_dir / "evaluation.json"
    if not report_path.is_file():
        raise StepFailed(f"evaluate.py finished without writing {report_path}; see {step_dir / 'evaluate.log'}")
    report = json.loads(report_path.read_text())
    figures = [str(step_dir / name) for name in FIGURES if (step_dir / name).is_file()]
    ctx.log(
        f"test accuracy {report['accuracy']:.3f} on {report['n']} photos (majority baseline {report['majority_baseline']:.3f}), "
        f"RMSE {report['rmse']:.3f}, off-by-one {report['off_by_one']:.3f}"
    )
    for figure in figures:
        ctx.log(f"figure: {figure}")
    return {
        "accuracy": report["accuracy"],
        "rmse": report["rmse"],
        "off_by_one": report["off_by_one"],
        "majority_baseline": report["majority_baseline"],
        "n": report["n"],
        "report": str(report_path),
        "figures": figures,
    }
