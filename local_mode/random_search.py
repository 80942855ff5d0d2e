"""Random hyperparameter search: the local twin of the SageMaker tuning job, over the same definitions.

Trials draw hyperparameters from `search_space.sample` (the one search-space definition), run train.py
as a subprocess, and are scored by `metrics_format.parse_metrics` (the same `name=value` lines the tuning
job's metric-definition regexes read). Like SageMaker, a trial's objective is the last value it emitted
for OBJECTIVE_METRIC; the best trial maximises it. Random search stands in for Bayesian search: with a
handful of trials on a laptop the difference is noise. Trials run `parallel` at a time, each with one
torch thread: on 2 shared cores, two 1-thread processes train ~10x faster than one 2-thread process
when the machine is busy (bench/results/train_scaling.json), and no slower when it is quiet.

The demo's tune step (local_mode/steps/tune.py) supplies the trial runner (train.py under the runner).
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
MetricsParser = Callable[[str], list[dict[str, Any]]]
STOPPED_SILENT = "stopped at the time limit"  # the failure of a trial stopped before its first objective line


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


# --- one trial ----------------------------------------------------------------------------------------


def trial_name(index: int) -> str:
    return f"trial-{index:03d}"


def run_and_parse(
    run_trial: TrialRunner,
    parse_metrics: MetricsParser,
    index: int,
    hyperparameters: dict[str, Any],
    trial_dir: Path,
    on_metrics: Callable[[dict[str, Any]], None],
) -> tuple[list[dict[str, Any]], bool, str]:
    """(metrics records, stopped at its time limit, failure) of one trial run."""
    try:
        return parse_metrics(run_trial(index, hyperparameters, trial_dir, on_metrics)), False, ""
    except RuntimeExceeded as error:  # MaxRuntimeInSeconds: the last metric it emitted is its objective
        return parse_metrics(error.output), True, ""
    except StepFailed as error:
        # A failed trial is a result, as in a tuning job; only all trials failing fails the step.
        return [], False, str(error)


def judge_trial(objective: float | None, stopped: bool, failure: str, objective_metric: str) -> tuple[str, str]:
    """(status, failure): a trial that printed no objective failed, even one stopped at its time limit."""
    if stopped and objective is None:
        failure = f"{STOPPED_SILENT} before its first '{objective_metric}' metric line"
    elif not failure and objective is None:
        failure = f"the trial printed no '{objective_metric}' metric line"
    return ("Failed" if failure else "Stopped" if stopped else "Completed"), failure


# --- the search ---------------------------------------------------------------------------------------


class ProgressBars:
    """Two bars shared by the trial threads: trials done (with the best objective so far) and epochs done."""

    def __init__(self, trials: int, total_epochs: int | None, objective_metric: str) -> None:
        self.lock = threading.Lock()
        self.objective_metric = objective_metric
        self.trials = tqdm(total=trials, desc="trials", unit="trial", position=0, dynamic_ncols=True)
        self.epochs = tqdm(total=total_epochs, desc="epochs, all trials", unit="epoch", position=1, dynamic_ncols=True)

    def epoch_done(self, _record: dict[str, Any]) -> None:
        with self.lock:
            self.epochs.update(1)

    def trial_done(self, best_so_far: float | None) -> None:
        """Called with the lock held by the caller, which records the result under it."""
        self.trials.set_postfix_str(f"best {self.objective_metric}={best_so_far:.3f}" if best_so_far is not None else "no result yet")
        self.trials.update(1)

    def close(self) -> None:
        self.epochs.close()
        self.trials.close()


def run_trials(
    samples: list[dict[str, Any]], parallel: int, one_trial: Callable[[int, dict[str, Any]], None], stopping: threading.Event
) -> None:
    """Run one_trial(index, hyperparameters) for every sample, `parallel` threads pulling from one queue."""
    pending: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()
    for item in enumerate(samples, start=1):
        pending.put(item)

    def worker() -> None:
        while not stopping.is_set():
            try:
                index, hyperparameters = pending.get_nowait()
            except queue.Empty:
                return
            one_trial(index, hyperparameters)

    outcomes = run_parallel([worker] * min(parallel, len(samples)), on_interrupt=stopping.set)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome  # a bug, not a failed trial


def choose_best(results: list[TrialResult], tune_dir: Path) -> TrialResult:
    """The highest objective (ties to the earlier trial, so a run is reproducible); StepFailed when none scored."""
    scored = [r for r in results if r.status in ("Completed", "Stopped") and r.objective is not None]
    stopped_silent = [r for r in results if r.status == "Failed" and r.failure.startswith(STOPPED_SILENT)]
    if not scored and stopped_silent and len(stopped_silent) == len(results):
        # Every trial hit its time limit before its first metric (a very slow or busy machine): nothing was
        # learned, so the first trial's hyperparameters go on, marked untuned, rather than failing the run.
        return stopped_silent[0]
    if not scored:
        reasons = "\n".join(f"  {r.name}: {r.failure.splitlines()[0] if r.failure else 'no metric'}" for r in results)
        raise StepFailed(f"all {len(results)} tuning trials failed; see {tune_dir}/trial-*/train.log\n{reasons}")
    return max(scored, key=lambda r: (r.objective if r.objective is not None else float("-inf"), -r.index))


def tuning_summary(best: TrialResult, results: list[TrialResult], objective_metric: str, parallel: int) -> dict[str, Any]:
    """best.json: the best trial and one line per trial."""
    return {
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
                "stopped": r.status == "Stopped" or r.failure.startswith(STOPPED_SILENT),
                "hyperparameters": r.hyperparameters,
            }
            for r in results
        ],
    }


def run_tuning(
    *,
    tune_dir: Path,
    trials: int,
    seed: int,
    sample: Callable[[random.Random], dict[str, Any]],
    parse_metrics: MetricsParser,
    objective_metric: str,
    run_trial: TrialRunner,
    epochs_hint: Callable[[dict[str, Any]], int] | None = None,
    parallel: int = 1,
) -> dict[str, Any]:
    """Run the trials, `parallel` at a time (the tuning job's MaxParallelTrainingJobs), and write tune_dir/best.json."""
    if trials < 1 or parallel < 1:
        raise ValueError(f"trials = {trials}, parallel = {parallel} are invalid: expected at least 1 each")
    samples = distinct_samples(sample, trials, seed)
    stopping = threading.Event()
    results: list[TrialResult] = []
    bars = ProgressBars(trials, sum(epochs_hint(hp) for hp in samples) if epochs_hint else None, objective_metric)

    def one_trial(index: int, hyperparameters: dict[str, Any]) -> None:
        trial_dir = tune_dir / trial_name(index)
        trial_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(trial_dir / "hyperparameters.json", hyperparameters)
        start = time.monotonic()
        records, stopped, failure = run_and_parse(run_trial, parse_metrics, index, hyperparameters, trial_dir, bars.epoch_done)
        if stopping.is_set():
            return  # interrupted: not a result
        objective = objective_value(records, objective_metric)
        status, failure = judge_trial(objective, stopped, failure, objective_metric)
        duration = round(time.monotonic() - start, 2)
        result = TrialResult(index, trial_name(index), hyperparameters, objective, records, status, failure, duration)
        write_json_atomic(trial_dir / "result.json", asdict(result))
        with bars.lock:
            results.append(result)
            bars.trial_done(max((r.objective for r in results if r.objective is not None), default=None))

    try:
        run_trials(samples, parallel, one_trial, stopping)
    finally:
        bars.close()
    results.sort(key=lambda r: r.index)
    summary = tuning_summary(choose_best(results, tune_dir), results, objective_metric, parallel)
    write_json_atomic(tune_dir / "best.json", summary)
    return summary
