"""A local hyperparameter tuner: the twin of the SageMaker tuning job, over the same definitions.

Trials draw hyperparameters from `search_space.sample` (the one search-space definition), run train.py
as a subprocess, and are scored by `metrics_format.parse_metrics` (the same `name=value` lines the tuning
job's metric-definition regexes read). Like SageMaker, a trial's objective is the last value it emitted
for OBJECTIVE_METRIC; the best trial maximises it. Random search stands in for Bayesian search: with a
handful of trials on a laptop the difference is noise. Trials run `parallel` at a time, each with one
torch thread: on 2 shared cores, two 1-thread processes train ~10x faster than one 2-thread process
when the machine is busy (bench/results/train_scaling.json), and no slower when it is quiet.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from local_mode.runner import RuntimeExceeded, StepFailed, run_parallel, write_json_atomic

# run_trial(index, hyperparameters, trial_dir, on_metrics) runs one training job to completion and
# returns its whole output; on_metrics gets each parsed metrics record as it is printed (progress bars).
TrialRunner = Callable[[int, dict[str, Any], Path, Callable[[dict[str, Any]], None]], str]


@dataclass(frozen=True)
class TrialResult:
    index: int
    name: str
    hyperparameters: dict[str, Any]
    objective: float | None
    metrics: list[dict[str, Any]]
    status: str  # "Completed" | "Stopped" (its time limit; scored by its last metric, as SageMaker does) | "Failed"
    failure: str
    duration_s: float


def objective_value(records: list[Mapping[str, Any]], metric: str) -> float | None:
    """The last value of `metric` in the parsed records (SageMaker's FinalHyperParameterTuningJobObjectiveMetric)."""
    values = [float(record[metric]) for record in records if record.get(metric) is not None]
    return values[-1] if values else None


def distinct_samples(sample: Callable[[random.Random], dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """Draw `count` hyperparameter sets; re-draws (a few times) a set already drawn, since a repeat teaches nothing."""
    rng = random.Random(seed)
    drawn: list[dict[str, Any]] = []
    for _ in range(count):
        candidate = sample(rng)
        for _retry in range(20):
            if candidate not in drawn:
                break
            candidate = sample(rng)
        drawn.append(candidate)
    return drawn


def run_tuning(
    *,
    tune_dir: Path,
    trials: int,
    seed: int,
    sample: Callable[[random.Random], dict[str, Any]],
    parse_metrics: Callable[[str], list[dict[str, Any]]],
    objective_metric: str,
    run_trial: TrialRunner,
    epochs_hint: Callable[[dict[str, Any]], int] | None = None,
    parallel: int = 1,
) -> dict[str, Any]:
    """Run the trials, `parallel` at a time (the tuning job's MaxParallelTrainingJobs), and write tune_dir/best.json."""
    if trials < 1 or parallel < 1:
        raise ValueError(f"trials = {trials}, parallel = {parallel} are invalid: expected at least 1 each")
    samples = distinct_samples(sample, trials, seed)
    pending: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()
    for item in enumerate(samples, start=1):
        pending.put(item)
    stopping = threading.Event()
    lock = threading.Lock()
    results: list[TrialResult] = []
    total_epochs = sum(epochs_hint(hp) for hp in samples) if epochs_hint else None
    trials_bar = tqdm(total=trials, desc="trials", unit="trial", position=0, dynamic_ncols=True)
    epochs_bar = tqdm(total=total_epochs, desc="epochs, all trials", unit="epoch", position=1, dynamic_ncols=True)

    def epoch_done(_record: dict[str, Any]) -> None:
        with lock:
            epochs_bar.update(1)

    def one_trial(index: int, hyperparameters: dict[str, Any]) -> None:
        name = f"trial-{index:03d}"
        trial_dir = tune_dir / name
        trial_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(trial_dir / "hyperparameters.json", hyperparameters)
        start = time.monotonic()
        failure = ""
        stopped = False
        try:
            records = parse_metrics(run_trial(index, hyperparameters, trial_dir, epoch_done))
        except RuntimeExceeded as error:  # MaxRuntimeInSeconds: the last metric it emitted is its objective
            records, stopped = parse_metrics(error.output), True
        except StepFailed as error:
            # A failed trial is a result, as in a tuning job; only all trials failing fails the step.
            records, failure = [], str(error)
        if stopping.is_set():
            return  # interrupted: not a result
        objective = objective_value(records, objective_metric)
        if stopped and objective is None:
            failure = f"stopped at the time limit before its first '{objective_metric}' metric line"
        elif not failure and objective is None:
            failure = f"the trial printed no '{objective_metric}' metric line"
        result = TrialResult(
            index,
            name,
            hyperparameters,
            objective,
            records,
            "Failed" if failure else "Stopped" if stopped else "Completed",
            failure,
            round(time.monotonic() - start, 2),
        )
        write_json_atomic(trial_dir / "result.json", asdict(result))
        with lock:
            results.append(result)
            best_so_far = max((r.objective for r in results if r.objective is not None), default=None)
            trials_bar.set_postfix_str(f"best {objective_metric}={best_so_far:.3f}" if best_so_far is not None else "no result yet")
            trials_bar.update(1)

    def worker() -> None:
        while not stopping.is_set():
            try:
                index, hyperparameters = pending.get_nowait()
            except queue.Empty:
                return
            one_trial(index, hyperparameters)

    try:
        outcomes = run_parallel([worker] * min(parallel, trials), on_interrupt=stopping.set)
    finally:
        epochs_bar.close()
        trials_bar.close()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome  # a bug, not a failed trial
    results.sort(key=lambda r: r.index)
    completed = [r for r in results if r.status in ("Completed", "Stopped") and r.objective is not None]
    stopped_silent = [r for r in results if r.status == "Failed" and r.failure.startswith("stopped at the time limit")]
    if not completed and stopped_silent and len(stopped_silent) == len(results):
        # Every trial hit its time limit before its first metric (a very slow or busy machine): nothing was
        # learned, so the first trial's hyperparameters go on, marked untuned, rather than failing the run.
        completed = [stopped_silent[0]]
    if not completed:
        reasons = "\n".join(f"  {r.name}: {r.failure.splitlines()[0] if r.failure else 'no metric'}" for r in results)
        raise StepFailed(f"all {trials} tuning trials failed; see {tune_dir}/trial-*/train.log\n{reasons}")
    # Ties go to the earlier trial, so a run is reproducible.
    best = max(completed, key=lambda r: (r.objective if r.objective is not None else float("-inf"), -r.index))
    summary = {
        "objective_metric": objective_metric,
        "best_trial": best.name,
        "best_objective": best.objective,
        "best_hyperparameters": best.hyperparameters,
        "parallel": parallel,
        "trials": [
            {
                "name": r.name,
                "status": r.status,
                "objective": r.objective,
                "duration_s": r.duration_s,
                "epochs_done": sum(1 for m in r.metrics if m.get(objective_metric) is not None),
                "stopped": r.status == "Stopped" or r.failure.startswith("stopped at the time limit"),
                "hyperparameters": r.hyperparameters,
            }
            for r in results
        ],
    }
    write_json_atomic(tune_dir / "best.json", summary)
    return summary
