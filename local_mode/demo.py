"""`make demo`: the whole pipeline on this machine, step by step, into runs/<run id>/.

    python -m local_mode.demo                          # synthetic bins, defaults sized for ~5 minutes on 2 cores
    python -m local_mode.demo --source ../shared/abid  # any folder laid out like the bucket
    python -m local_mode.demo --resume <run id>        # finish an interrupted run

Steps (the state machine's, in order): prepare, tune, train, evaluate, gate, serve, count. See
docs/local-mode.md. Exit codes: 0 done, 1 a step failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import deploy_rule

from local_mode.paths import RUNS_DIR

DEFAULT_RUNS_DIR = RUNS_DIR
# Fixed for the demo's trials and training (measured, docs/local-mode.md): on a few thousand synthetic bins and
# 8 epochs, augmentation and label smoothing slow learning more than they prevent overfitting. --set overrides.
DEMO_FIXED = ("epochs=8", "augment=off", "label-smoothing=0")
# Time bounds that keep `make demo` within 10 minutes on a 2-core machine whatever the tuner draws
# (docs/local-mode.md): tune + train + the other steps (~70 s) + a margin for the pace estimate.
TUNE_BUDGET_S = 170
TRAIN_BUDGET_S = 200
# Flags that may change on --resume: they do not change what a step writes.
RESUMABLE_FLAGS = ("keep_serving", "runs_dir", "resume")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local_mode.demo",
        description="Run the Inventory Monitor pipeline locally: prepare, tune, train (torchrun), evaluate, gate, serve, count.",
    )
    data = parser.add_argument_group("data (prepare)")
    data.add_argument(
        "--source", type=Path, default=None, help="folder laid out like the bucket (bin-images/, metadata/); default: synthetic bins"
    )
    data.add_argument(
        "--file-list",
        type=Path,
        default=None,
        help='Udacity file_list.json ({"<count>": ["data/metadata/<id>.json", ...]}) choosing ids from --source',
    )
    data.add_argument("--bins", type=int, default=4000, help="number of synthetic bins to generate when no --source is given")
    data.add_argument("--max-images", type=int, default=0, help="use at most this many photos from --source (0: all)")
    tune = parser.add_argument_group("tune and train")
    tune.add_argument("--trials", type=int, default=2, help="tuning trials (train.py runs)")
    tune.add_argument("--parallel-trials", type=int, default=2, help="trials run at once, one torch thread each (2 suits 2 cores)")
    tune.add_argument(
        "--space", choices=("demo", "full"), default="demo", help="search space: the CPU-sized demo space or the SageMaker one"
    )
    tune.add_argument(
        "--set",
        dest="fixed",
        action="append",
        default=list(DEMO_FIXED),
        metavar="NAME=VALUE",
        help=f"fix a hyperparameter for every trial and the final training; repeatable, a later one wins (default: {' '.join(DEMO_FIXED)})",
    )
    tune.add_argument(
        "--tune-budget",
        type=int,
        default=TUNE_BUDGET_S,
        help=f"seconds for the tune step: trials still running then are stopped and scored by their last metric (0: none; default {TUNE_BUDGET_S})",
    )
    tune.add_argument(
        "--train-budget",
        type=int,
        default=TRAIN_BUDGET_S,
        help=f"seconds for the final training: its epochs are capped to what the trials' measured pace fits (0: none; default {TRAIN_BUDGET_S})",
    )
    tune.add_argument("--nodes", type=int, choices=(1, 2), default=1, help="emulated training instances (torchrun processes, --nnodes)")
    tune.add_argument("--nproc-per-node", type=int, default=2, help="training processes per node (gloo on CPU)")
    tune.add_argument("--seed", type=int, default=42, help="seed for data generation and the tuner's sampling")
    run = parser.add_argument_group("gate, serve and count")
    run.add_argument("--deploy", choices=deploy_rule.DEPLOY_MODES, default="auto", help="gate override: auto applies the rule")
    run.add_argument("--count-images", type=int, default=8, help="test photos to POST through the local API at the end")
    run.add_argument("--keep-serving", action="store_true", help="keep the local endpoint and API running after the summary (Ctrl-C stops)")
    where = parser.add_argument_group("run folder")
    where.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where run folders go (default: runs/ in the project)")
    where.add_argument("--run-id", default=None, help="name of a new run (default: date-time plus a random suffix)")
    where.add_argument(
        "--resume", default=None, metavar="RUN", help="finish run RUN (an id under --runs-dir, or its folder): finished steps are skipped"
    )
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "source": str(args.source.resolve()) if args.source else None,
        "file_list": str(args.file_list.resolve()) if args.file_list else None,
        "bins": args.bins,
        "max_images": args.max_images,
        "trials": args.trials,
        "parallel_trials": args.parallel_trials,
        "tune_budget_s": args.tune_budget,
        "train_budget_s": args.train_budget,
        "space": args.space,
        "fixed": args.fixed,
        "nodes": args.nodes,
        "nproc_per_node": args.nproc_per_node,
        "seed": args.seed,
        "deploy": args.deploy,
        "count_images": args.count_images,
    }


def _check_numbers(options: dict[str, Any]) -> None:
    from local_mode.runner import UsageError

    for flag, minimum in (
        ("bins", 20),
        ("trials", 1),
        ("parallel_trials", 1),
        ("nproc_per_node", 1),
        ("count_images", 1),
        ("max_images", 0),
    ):
        if options[flag] < minimum:
            raise UsageError(f"--{flag.replace('_', '-')} {options[flag]} is invalid: expected a whole number of at least {minimum}")
    for flag in ("tune_budget", "train_budget"):
        if options.get(f"{flag}_s", 0) < 0:
            raise UsageError(f"--{flag.replace('_', '-')} {options[f'{flag}_s']} is invalid: expected seconds (0 = no limit)")
    for item in options["fixed"]:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"--set {item!r} is invalid: expected NAME=VALUE with a train.py flag name, e.g. --set epochs=2")
    if options["fixed"]:
        from local_mode.steps.tune import check_fixed

        check_fixed(options["fixed"])


def _resolve_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, Path, dict[str, Any]]:
    """A new run folder with its options recorded, or the folder and recorded options of the run to resume."""
    from local_mode.runner import OPTIONS, UsageError

    runs_dir: Path = args.runs_dir.resolve()
    if args.resume:
        changed = [a for a, v in vars(args).items() if a not in RESUMABLE_FLAGS and v != parser.get_default(a)]
        if changed:
            flags = ", ".join("--" + a.replace("_", "-") for a in changed)
            raise UsageError(f"--resume reuses the options the run started with; drop {flags} (start a new run to change them)")
        candidate = Path(args.resume)
        run_dir = candidate.resolve() if candidate.is_dir() else runs_dir / args.resume
        if not (run_dir / OPTIONS).is_file():
            raise UsageError(f"--resume {args.resume}: no run there (looked for {run_dir / OPTIONS}). Give a run id from {runs_dir}")
        try:
            saved = json.loads((run_dir / OPTIONS).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise UsageError(f"--resume {args.resume}: {run_dir / OPTIONS} cannot be read ({error}); start a new run") from None
        # Options added to the runner after the run started take their defaults.
        return run_dir.name, run_dir, {**_options(parser.parse_args([])), **saved}
    options = _options(args)
    _check_numbers(options)
    run_id = args.run_id or f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    if not run_id.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"--run-id {run_id!r} is invalid: use letters, digits, '-' and '_'")
    run_dir = runs_dir / run_id
    if run_dir.exists():
        raise UsageError(f"run folder {run_dir} already exists: pick another --run-id, or finish it with --resume {run_id}")
    return run_id, run_dir, options


def _wait_until_interrupted(out: Any) -> None:
    out("Serving until Ctrl-C ...")
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    # Imported after parsing so that --help is instant.
    from local_mode.runner import OPTIONS, RunContext, StepFailed, UsageError, run_steps, sigterm_as_interrupt, write_json_atomic
    from local_mode.steps import build_steps, load_settings
    from local_mode.steps.source import check_source
    from local_mode.steps.summary import print_summary, write_summary

    started = time.monotonic()
    try:
        settings = load_settings()
        run_id, run_dir, options = _resolve_run(args, parser)
        if options["source"]:
            check_source(Path(options["source"]), settings.classes, Path(options["file_list"]) if options["file_list"] else None)
        elif options["file_list"]:
            raise UsageError("--file-list needs --source: it selects ids from that folder")
        if not (run_dir / OPTIONS).is_file():
            # A new run: its folder appears only once the input checks passed.
            run_dir.mkdir(parents=True)
            write_json_atomic(run_dir / OPTIONS, options)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot create the run folder ({error}): pick a writable --runs-dir", file=sys.stderr)
        return 2
    print(f"Run {run_id}: {run_dir}")
    waiting = False  # True once every step is done and --keep-serving is only waiting for Ctrl-C
    ctx = RunContext(run_id=run_id, run_dir=run_dir, options={**options, "settings": settings})
    try:
        with sigterm_as_interrupt(), ctx.cleanups:
            markers = run_steps(ctx, build_steps())
            summary = write_summary(ctx, markers, wall_s=time.monotonic() - started)
            print_summary(summary, keep_serving=args.keep_serving)
            if args.keep_serving:
                waiting = True
                _wait_until_interrupted(print)
    except UsageError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 2
    except (StepFailed, OSError) as error:
        # OSError: a full disk or a port in use; the step is not marked done, so --resume retries it.
        print(f'\nerror: {error}\nFix the cause, then finish the run with: make demo ARGS="--resume {run_id}"', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if waiting:
            print("\nStopped serving.")
            return 0
        print(f'\nInterrupted. Finished steps are kept; finish the run with: make demo ARGS="--resume {run_id}"', file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    sys.exit(main())
