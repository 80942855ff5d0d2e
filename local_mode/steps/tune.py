"""tune: the tuning job's twin. Trials of train.py (one process each) into runs/<id>/tune/trial-NNN/, best.json."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import metrics_format
import search_space

from local_mode.random_search import run_tuning
from local_mode.runner import RunContext, UsageError, run_logged
from local_mode.steps.common import channels, child_env, cpu_threads, script


def fixed_hyperparameters(options: dict[str, Any]) -> dict[str, str]:
    """--set NAME=VALUE pairs (they win over the search space and the static hyperparameters)."""
    return dict(item.split("=", 1) for item in options["fixed"])


# train.py flags the runner sets itself (channels, folders, version): not hyperparameters.
RUNNER_FLAGS = ("train", "validation", "test", "pretrained", "model-dir", "output-data-dir", "checkpoint-dir", "model-version", "help")


def check_fixed(items: list[str]) -> None:
    """Reject a --set NAME=VALUE that train.py would refuse, before any step runs (exit code 2, not a failed trial)."""
    import train  # torch: loaded only when there is a --set to check

    parser = train.get_args_parser()
    actions = {opt.lstrip("-"): action for action in parser._actions for opt in action.option_strings}
    for item in items:
        name, _, value = item.partition("=")
        action = actions.get(name)
        if action is None or name in RUNNER_FLAGS:
            allowed = ", ".join(sorted(n for n in actions if n not in RUNNER_FLAGS and len(n) > 1))
            raise UsageError(f"--set {item}: {name!r} is not a train.py hyperparameter. Expected one of: {allowed}")
        try:
            parsed = action.type(value) if action.type else value
        except (TypeError, ValueError):
            raise UsageError(f"--set {item}: {value!r} is not a valid value for {name} (expected {action.type.__name__})") from None
        if action.choices and parsed not in action.choices:
            raise UsageError(f"--set {item}: {name} must be one of {', '.join(map(str, action.choices))}")


def space_and_static(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    if options["space"] == "full":
        return search_space.SEARCH_SPACE, search_space.STATIC_HYPERPARAMETERS
    return search_space.DEMO_SEARCH_SPACE, search_space.DEMO_STATIC_HYPERPARAMETERS


def run(ctx: RunContext, step_dir: Path) -> dict[str, Any]:
    options = ctx.options
    space, static = space_and_static(options)
    fixed = fixed_hyperparameters(options)
    data = channels(ctx.step_dir("prepare"))
    parallel = min(options["parallel_trials"], options["trials"])
    # The step's time budget, shared by the waves of parallel trials: each trial's MaxRuntimeInSeconds.
    waves = -(-options["trials"] // parallel)
    budget = options.get("tune_budget_s", 0)
    max_runtime = budget / waves if budget else None

    def sample(rng: random.Random) -> dict[str, Any]:
        # The tuning job's view of a trial: sampled ranges, then static hyperparameters, then the user's --set.
        return {**search_space.sample(rng, space), **static, **fixed}

    def run_trial(index: int, hyperparameters: dict[str, Any], trial_dir: Path, on_metrics: Callable[[dict[str, Any]], None]) -> str:
        lines: list[str] = []

        def on_line(line: str) -> None:
            lines.append(line)
            for record in metrics_format.parse_metrics(line):
                on_metrics(record)

        command = [*script("train.py"), *search_space.to_cli_args(hyperparameters)]
        command += ["--train", str(data["train"]), "--validation", str(data["validation"])]
        command += ["--model-dir", str(trial_dir / "model"), "--output-data-dir", str(trial_dir / "output")]
        command += ["--checkpoint-dir", str(trial_dir / "checkpoints")]
        env = child_env(max(1, cpu_threads() // parallel))
        run_logged(command, trial_dir / "train.log", env=env, on_line=on_line, what=f"trial {index} (train.py)", max_runtime_s=max_runtime)
        return "".join(lines)

    best = run_tuning(
        tune_dir=step_dir,
        trials=options["trials"],
        seed=options["seed"],
        sample=sample,
        parse_metrics=metrics_format.parse_metrics,
        objective_metric=metrics_format.OBJECTIVE_METRIC,
        run_trial=run_trial,
        epochs_hint=lambda hp: int(hp["epochs"]),
        parallel=parallel,
    )
    for trial in best["trials"]:
        score = f"{trial['objective']:.3f}" if trial["objective"] is not None else "failed"
        stopped = f" (stopped at the {max_runtime:.0f} s limit after {trial['epochs_done']} epochs)" if trial["status"] == "Stopped" else ""
        ctx.log(f"  {trial['name']}: {metrics_format.OBJECTIVE_METRIC} {score}{stopped}  {trial['hyperparameters']}")
    # The measured pace (seconds per epoch, start-up included: an upper bound), for the train step's budget.
    # A trial stopped before its first epoch gives a lower bound: at least its whole runtime per epoch.
    paces = sorted(t["duration_s"] / max(1, t["epochs_done"]) for t in best["trials"] if t["epochs_done"] or t["stopped"])
    if best["best_objective"] is None:
        ctx.log(f"no trial finished an epoch within {max_runtime:.0f} s: training with {best['best_trial']}'s hyperparameters, untuned")
    else:
        ctx.log(f"best: {best['best_trial']} ({metrics_format.OBJECTIVE_METRIC} {best['best_objective']:.3f})")
    return {
        "best_trial": best["best_trial"],
        "best_objective": best["best_objective"],
        "best_hyperparameters": best["best_hyperparameters"],
        "seconds_per_epoch": paces[len(paces) // 2] if paces else None,
    }
