"""Bulk bin verification on this machine: the local twin of the "Verify bins" state machine.

    python -m local_mode.verify --run runs/<id> --photos DIR [--records FILE.csv] [--output DIR]
    make verify ARGS="--photos DIR --records FILE.csv"          # the newest finished run's model

--photos is a folder laid out like the bucket (bin-images/<id>.jpg, and metadata/<id>.json when the records
come from there); --records is a CSV `bin_id,expected_count` (without it: metadata/<id>.json's
EXPECTED_QUANTITY). The same three steps as on AWS, on the same code:
  1. prepare    training_code/verify_prepare.py -> OUTPUT/batches/*.npy + OUTPUT/records/
  2. transform  each batch file (deleted once predicted, unless --keep-batches) through inference.py's model_fn / input_fn / predict_fn / output_fn, exactly
                what SageMaker Batch Transform runs, reply written as OUTPUT/predictions/<batch>.out; --views one
                (the default, as cdk.json verifyViews) serves each photo alone at the model's single-view temperature
  3. report     training_code/verify_report.py -> OUTPUT/report/{results.csv, summary.json, report.html}

Resumable: stop it with Ctrl-C and run the same command again; prepare is skipped when it finished for the
same inputs, and batch files whose .out exists are not predicted again; another model or --views predicts (and
prepares) again. --fresh starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from local_mode.paths import RUNS_DIR

STATE_FILE = "verify-state.json"


class VerifyError(Exception):
    """A usage problem, printed as one line."""


def latest_model_dir(runs: Path = RUNS_DIR) -> Path:
    candidates = sorted(runs.glob("*/train/model/model.pth"), key=lambda p: p.stat().st_mtime) if runs.is_dir() else []
    if not candidates:
        raise VerifyError(
            f"no finished run under {runs} (runs/<id>/train/model/model.pth): train one (make demo), or pass --run / --model-dir"
        )
    return candidates[-1].parent


def model_fingerprint(model_dir: Path, views: str) -> dict[str, Any]:
    stat = (model_dir / "model.pth").stat()
    return {"model_dir": str(model_dir.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "views": views}


def forget_other_model(output: Path, state: dict[str, Any], model: dict[str, Any]) -> None:
    """Replies of another model (or other views) must not mix with this one's: they go, and prepare runs again
    because predicted batch files were deleted."""
    if state.get("model") in (None, model):
        return
    shutil.rmtree(output / "predictions", ignore_errors=True)
    state.update(model=None, prepared=False)
    _save_state(output, state)
    print("transform: the replies in this output came from another model or views: preparing and predicting again")


def _load_state(output: Path) -> dict[str, Any]:
    try:
        return json.loads((output / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _save_state(output: Path, state: dict[str, Any]) -> None:
    temporary = output / (STATE_FILE + ".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(temporary, output / STATE_FILE)


def step_prepare(args: argparse.Namespace, output: Path, state: dict[str, Any]) -> dict[str, Any]:
    import verify_prepare
    from prep import PrepError

    inputs = {"photos": str(Path(args.photos).resolve()), "records": str(Path(args.records).resolve()) if args.records else None}
    inputs["batch_size"] = args.batch_size
    if state.get("inputs") not in (None, inputs):
        raise VerifyError(
            f"{output} holds a verification of other inputs ({state['inputs']}): give another --output, or --fresh to start over"
        )
    if state.get("prepared") and (output / "records" / "records.jsonl").is_file():
        summary = json.loads((output / "records" / "prepare.json").read_text())
        print(f"prepare: done earlier ({summary['rows']} rows, {summary['photos']} photos in {summary['batches']} batch files)")
        return summary
    state.update(inputs=inputs, prepared=False)
    _save_state(output, state)
    shutil.rmtree(output / "predictions", ignore_errors=True)  # replies to earlier batch files would not match the new ones
    try:
        summary = verify_prepare.prepare(args.photos, output, args.records, args.batch_size, workers=args.workers, progress=args.progress)
    except PrepError as error:
        raise VerifyError(str(error)) from None
    state["prepared"] = True
    _save_state(output, state)
    errors = ", ".join(f"{k} {v}" for k, v in summary["errors"].items()) or "none"
    print(
        f"prepare: {summary['rows']} rows, {summary['photos']} photos in {summary['batches']} batch files in {summary['seconds']} s; errors: {errors}"
    )
    return summary


@contextmanager
def container_environment(name: str, value: str) -> Iterator[None]:
    """`name`=`value` in os.environ while the model loads, as in the container; the process's own value after."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def step_transform(args: argparse.Namespace, model_dir: Path, output: Path, state: dict[str, Any]) -> None:
    """Batch Transform, in-process: one request per batch file, reply <batch>.out; done files are skipped."""
    import inference
    from tqdm import tqdm

    predictions = output / "predictions"
    if state.get("model") != (model := model_fingerprint(model_dir, args.views)):
        state["model"] = model
        _save_state(output, state)
    predictions.mkdir(parents=True, exist_ok=True)
    with open(output / "records" / "manifest.jsonl") as handle:
        batches = [(entry["batch"], len(entry["bin_ids"])) for entry in map(json.loads, handle)]
    todo = [(name, n) for name, n in batches if not (predictions / f"{name}.out").is_file()]
    done_photos = sum(n for _, n in batches) - sum(n for _, n in todo)
    if not todo:
        print(f"transform: done earlier ({len(batches)} batch files)")
        return
    load_started = time.perf_counter()
    try:
        with container_environment(inference.VIEWS_ENV, args.views):  # what the Transform job's Environment sets
            loaded = inference.model_fn(str(model_dir))
    except (ValueError, RuntimeError, KeyError, OSError) as error:
        raise VerifyError(f"cannot load the model in {model_dir}: {error}") from None
    print(f"transform: model {loaded.model_version or '?'} ({loaded.views} views) loaded in {time.perf_counter() - load_started:.1f} s")
    started, failed = time.perf_counter(), []
    bar = tqdm(
        total=sum(n for _, n in batches), initial=done_photos, desc="transform", unit="photo", disable=not args.progress, dynamic_ncols=True
    )
    try:
        for name, n in todo:
            try:
                body = (output / "batches" / name).read_bytes()
                reply = inference.output_fn(inference.predict_fn(inference.input_fn(body, inference.NPY), loaded), inference.JSON)
            except (OSError, ValueError) as error:  # like a failed request in Batch Transform: its rows get prediction_missing
                failed.append(name)
                tqdm.write(f"warning: {name} could not be predicted ({error}); its rows are reported as prediction_missing")
                continue
            temporary = predictions / f"{name}.out.tmp"
            temporary.write_text(reply)
            os.replace(temporary, predictions / f"{name}.out")  # an interrupted batch leaves no .out: it is redone
            if not args.keep_batches:  # free the 150 KB-per-photo arrays as the run goes
                (output / "batches" / name).unlink()
            bar.update(n)
    finally:
        bar.close()
    if failed:
        print(
            f"transform: {len(failed)} batch files failed ({', '.join(failed[:3])}{' ...' if len(failed) > 3 else ''}): run again to retry them"
        )
    seconds, photos = time.perf_counter() - started, sum(n for _, n in todo)
    print(
        f"transform: {len(todo)} batch files ({photos} photos) in {seconds:.1f} s, {photos / seconds:.1f} photos/s ({len(batches) - len(todo)} done earlier)"
    )


def step_report(args: argparse.Namespace, output: Path) -> dict[str, Any]:
    import verify_report

    try:
        return verify_report.report(
            output / "predictions",
            output / "records",
            output / "report",
            args.match_threshold,
            args.mismatch_threshold,
            batches=str(output / "batches") if args.keep_batches else None,
            source=None if args.keep_batches else args.photos,
            top=args.top,
        )
    except verify_report.ReportError as error:
        raise VerifyError(str(error)) from None


def get_args_parser() -> argparse.ArgumentParser:
    import verification

    parser = argparse.ArgumentParser(
        description="Verify inventory records against bin photos with a trained model (local Batch Transform)."
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="a finished local run, e.g. runs/<id> (its train/model); default: the newest")
    source.add_argument("--model-dir", type=Path, help="a model dir written by train.py (model.pth + model_meta.json)")
    parser.add_argument("--photos", required=True, help="folder laid out like the bucket: bin-images/<id>.jpg [metadata/<id>.json]")
    parser.add_argument("--records", help="CSV with the header bin_id,expected_count (default: metadata/<id>.json under --photos)")
    parser.add_argument("--output", type=Path, help="output folder (default: RUN/verify)")
    parser.add_argument("--match-threshold", type=float, default=verification.DEFAULT_MATCH_THRESHOLD)
    parser.add_argument("--mismatch-threshold", type=float, default=verification.DEFAULT_MISMATCH_THRESHOLD)
    parser.add_argument(
        "--views",
        choices=verification.VIEWS,
        default=verification.DEFAULT_BULK_VIEWS,
        help="one: each photo alone at its own temperature (4x less compute); served: the model's test-time flips too",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="photos per batch file (1-64)")
    parser.add_argument("--workers", type=int, default=4, help="parallel photo reads/decodes in prepare")
    parser.add_argument("--top", type=int, default=24, help="suspicious bins shown in report.html")
    parser.add_argument("--keep-batches", action="store_true", help="keep OUTPUT/batches/*.npy after predicting them (150 KB a photo)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier progress in --output and start over")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.model_dir:
        model_dir = args.model_dir
    elif args.run:
        model_dir = args.run / "train" / "model"
    else:
        model_dir = latest_model_dir()
    if not (model_dir / "model.pth").is_file():
        raise VerifyError(f"{model_dir} has no model.pth: give a finished run (runs/<id>) or a train.py model dir")
    import verification

    try:
        verification.check_thresholds(args.match_threshold, args.mismatch_threshold)
    except verification.VerificationError as error:
        raise VerifyError(f"--{error.field.replace('_', '-')}: {error.message}") from None
    if not Path(args.photos).is_dir():
        raise VerifyError(f"--photos {args.photos} is not a folder: give a folder with bin-images/<id>.jpg")
    if args.records and not Path(args.records).is_file():
        raise VerifyError(f"--records {args.records} is not a file: give a CSV with the header bin_id,expected_count")
    output = args.output or (args.run / "verify" if args.run else model_dir.parent.parent / "verify")
    if args.fresh and output.exists():
        for part in ("batches", "records", "predictions", "report", STATE_FILE):
            target = output / part
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    print(f"model: {model_dir}\noutput: {output}")
    started = time.perf_counter()
    state = _load_state(output)
    forget_other_model(output, state, model_fingerprint(model_dir, args.views))
    step_prepare(args, output, state)
    step_transform(args, model_dir, output, state)
    summary = step_report(args, output)
    seconds = time.perf_counter() - started
    verdicts = ", ".join(f"{k} {v}" for k, v in summary["verdicts"].items())
    print(f"report: {summary['rows']} rows ({verdicts}) in {seconds:.1f} s")
    print(f"  {output / 'report' / 'report.html'}\n  {output / 'report' / 'results.csv'}\n  {output / 'report' / 'summary.json'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        run(args)
    except VerifyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume (finished batch files are kept)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
