"""`make bench`: the CPU benchmark set, one part after another; results in bench/results/*.json.

    .venv/bin/python -m bench.run_all [--quick] [--only preprocess,cold_start,load_api,model_latency,train_throughput,train_scaling]

Parts that need what a fresh clone lacks skip themselves with a note: the real photos (../shared/abid)
and the built Lambda asset (cold_start asks infra/lambda_asset.py to build it; vendoring needs PyPI once).
Real-data accuracy trains for tens of minutes, so it is not part of this set: run
`python -m bench.real_data_accuracy` (docs/benchmarks.md). A failing part does not stop the others; the
exit status is non-zero when any part failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable

from bench import cold_start, common, load_api, model_latency, preprocess_latency, train_scaling, train_throughput

PARTS: dict[str, tuple[Callable[[list[str]], int], list[str]]] = {
    "preprocess": (preprocess_latency.main, []),
    "cold_start": (cold_start.main, ["--build"]),
    "load_api": (load_api.main, []),
    "model_latency": (model_latency.main, []),
    "train_throughput": (train_throughput.main, []),
    "train_scaling": (train_scaling.main, []),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run the CPU benchmarks (docs/benchmarks.md).")
    parser.add_argument("--quick", action="store_true", help="a fast subset of every part (a smoke run, not figures to quote)")
    parser.add_argument("--only", default="", help=f"comma-separated parts to run, from {', '.join(PARTS)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    chosen = [p.strip() for p in args.only.split(",") if p.strip()] or list(PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        print(f"error: --only {', '.join(unknown)}: unknown part; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    status: dict[str, str] = {}
    for name in chosen:
        part, extra = PARTS[name]
        print(f"\n== {name} ==", flush=True)
        started = time.monotonic()
        try:
            code = part([*extra, *(["--quick"] if args.quick else [])])
        except Exception:  # one broken part must not hide the others' results
            traceback.print_exc()
            code = 1
        status[name] = f"{'ok' if code == 0 else f'FAILED (exit {code})'} in {time.monotonic() - started:.0f} s"
    print("\n== summary ==")
    for name, text in status.items():
        print(f"{name:18} {text}")
    print(f"results: {common.display(common.RESULTS_DIR)}/*.json")
    return 0 if all(text.startswith("ok") for text in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
