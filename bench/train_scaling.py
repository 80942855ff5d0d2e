"""Data-parallel scaling on CPU: bench.train_throughput under torchrun with 1 and 2 processes (issue 7, item 4).

    .venv/bin/python -m bench.train_scaling [--model mobilenet_v3_small@128] [--batch-size 32] [--steps 5] [--rounds 3] [--quick]

Configurations, each a fresh `torchrun --standalone --nproc-per-node P -m bench.train_throughput` (gloo,
DistributedDataParallel, train.py's loader and step): 1 process x 1 thread, 1 process x 2 threads,
2 processes x 1 thread. The batch is per process (as in train.py), so 2 processes do twice the images per
step. Scaling efficiency = img/s / (reference img/s x processes), with 1 process x 1 thread as reference.
On a 2-core machine shared with other work, expect poor scaling: that is the honest figure, not a bug.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import common

CONFIGS = ((1, 1), (1, 2), (2, 1))  # (processes, threads per process)


def run_config(processes: int, threads: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "rows.json"
        command = [
            str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node", str(processes),
            "-m", "bench.train_throughput", "--models", args.model, "--batch-size", str(args.batch_size),
            "--steps", str(args.steps), "--rounds", str(args.rounds), "--threads", str(threads), "--json-out", str(out),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(common.ROOT)}
        result = subprocess.run(command, cwd=common.ROOT, env=env, capture_output=True, text=True, timeout=args.timeout, check=False)
        if result.returncode != 0 or not out.is_file():
            raise common.BenchError(
                f"torchrun with {processes} process(es) failed (exit {result.returncode}):\n{result.stderr.strip()[-1500:]}"
            )
        return json.loads(out.read_text())[0]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="CPU training img/s with 1 vs 2 torchrun processes.")
    parser.add_argument("--model", default="mobilenet_v3_small@128", help="architecture[@internal size]")
    parser.add_argument("--batch-size", type=int, default=32, help="images per process per step")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per configuration")
    parser.add_argument("--timeout", type=int, default=900, help="seconds before a configuration is abandoned")
    parser.add_argument("--quick", action="store_true", help="3 steps x 2 rounds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.quick:
        common.quick_results()
    if min(args.batch_size, args.steps, args.rounds, args.timeout) < 1:
        print("error: --batch-size, --steps, --rounds and --timeout must be at least 1", file=sys.stderr)
        return 2
    if args.quick:
        args.steps, args.rounds = 3, 2
    rows = []
    try:
        for processes, threads in CONFIGS:
            row = run_config(processes, threads, args)
            rows.append(row)
            common.print_table([row], ["model", "processes", "threads_per_process", "img_s", "img_s_min", "img_s_max"])
    except (common.BenchError, subprocess.TimeoutExpired) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    reference = rows[0]["img_s"]
    for row in rows:
        row["speedup_vs_1x1"] = row["img_s"] / reference
        row["efficiency_per_core"] = row["img_s"] / (reference * row["processes"] * row["threads_per_process"])
    common.print_table(rows, ["processes", "threads_per_process", "img_s", "speedup_vs_1x1", "efficiency_per_core"])
    path = common.write_result("train_scaling", common.command_line("bench.train_scaling", argv), rows)
    print(f"wrote {common.display(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
