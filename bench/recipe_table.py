"""Every real-data recipe tried, as one markdown table generated from the result files (docs/benchmarks.md §5).

    .venv/bin/python -m bench.recipe_table            # print the table
    .venv/bin/python -m bench.recipe_table --write    # replace it between the recipe-table markers in docs/benchmarks.md

Sources: bench/results/sweep*/sweep.json (bench.recipe_sweep runs on the lent GPU machine) and
bench/results/accuracy_*.json (bench.real_data_accuracy runs on this 2-core CPU). Nothing is typed by hand:
each row's figures and its train.py flags come from those files. Channel, model-dir and checkpoint flags
are the same for every run and left out of the table (they are in the JSON files' full commands).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from typing import Any

from bench import common

RESULTS = common.ROOT / "bench" / "results"
DOCS = common.ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- recipe-table -->", "<!-- /recipe-table -->"
# Per-run plumbing flags, identical in every run: not part of a recipe.
PLUMBING = {"--train", "--validation", "--test", "--model-dir", "--output-data-dir", "--checkpoint-dir", "--model-version"}


def recipe_flags(command: str) -> str:
    """`train.py ...` without the per-run plumbing flags (and their values)."""
    words = shlex.split(command.removeprefix("(cd training_code && ").removesuffix(")"))
    words = words[words.index("train.py") + 1 :]
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in PLUMBING:
            skip = True
        else:
            kept.append(word)
    return "train.py " + " ".join(kept)


def sweep_rows() -> list[dict[str, Any]]:
    rows = []
    for path in sorted(RESULTS.glob("sweep*/sweep.json")):
        body = json.loads(path.read_text())
        for run in body["rows"]:
            if "error" in run:
                continue
            rows.append(
                {
                    "source": f"{path.parent.name} (GPU)",
                    "recipe": run["recipe"],
                    "seed": run["seed"],
                    "accuracy": run["test_accuracy"],
                    "accuracy_flip4": run.get("test_accuracy_flip4"),
                    "rmse": run["test_rmse"],
                    "off_by_one": run["test_off_by_one"],
                    "ece": run.get("ece"),
                    "top50": run.get("accuracy_most_confident_50"),
                    "top75": run.get("accuracy_most_confident_75"),
                    "temperature": run.get("temperature"),
                    "kept": f"{run.get('kept_epoch')}/{run['epochs']}",
                    "minutes": run["wall_seconds"] / 60,
                    "flags": recipe_flags(run["command"]),
                }
            )
    return rows


def cpu_rows() -> list[dict[str, Any]]:
    rows = []
    for path in sorted(RESULTS.glob("accuracy_*.json")):
        body = json.loads(path.read_text())
        for run in body["rows"]:
            wall = run.get("wall_seconds") or run.get("training_seconds_sum_of_epochs")
            trained = run.get("trained_with", {})
            flips = run.get("tta") == "flip4"  # evaluation.json then scores the served path: the 4 views averaged
            rows.append(
                {
                    "source": f"CPU, {body['machine'].get('cpus')} cores",
                    "recipe": run["recipe"],
                    "seed": trained.get("seed", 42),
                    "accuracy": None if flips else run["accuracy"],
                    "accuracy_flip4": run["accuracy"] if flips else None,
                    "rmse": run["rmse"],
                    "off_by_one": run["off_by_one"],
                    "ece": run.get("ece"),
                    "top50": run.get("accuracy_most_confident_50"),
                    "top75": run.get("accuracy_most_confident_75"),
                    "temperature": run.get("temperature"),
                    "kept": f"{run['kept_epoch']}/{run['epochs']}" if run.get("kept_epoch") else f"last/{run['epochs']}",
                    "minutes": wall / 60 if wall else None,
                    "flags": "train.py " + run["train_py_flags"],
                }
            )
    return rows


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render() -> str:
    rows = sorted(sweep_rows(), key=lambda r: -(r["accuracy_flip4"] or r["accuracy"])) + cpu_rows()
    header = (
        "| # | where | recipe | seed | top-1 % | top-1 % with flips | RMSE | within 1 % | ECE | top-1 % on most-confident 50 % / 75 % "
        "| T | kept epoch / epochs | training minutes | train.py flags |\n|" + "---|" * 14 + "\n"
    )
    lines = []
    for number, r in enumerate(rows, start=1):
        lines.append(
            f"| {number} | {r['source']} | {r['recipe']} | {r['seed']} | {_pct(r['accuracy'])} | {_pct(r['accuracy_flip4'])} "
            f"| {_num(r['rmse'], 2)} | {_pct(r['off_by_one'])} | {_num(r['ece'], 3)} | {_pct(r['top50'])} / {_pct(r['top75'])} "
            f"| {_num(r['temperature'], 2)} | {r['kept']} | {_num(r['minutes'], 1)} | `{r['flags']}` |"
        )
    return header + "\n".join(lines) + "\n"


def write(table: str) -> None:
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        raise common.BenchError(f"{DOCS} has no {BEGIN} ... {END} markers: add them where the table belongs")
    DOCS.write_text(re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: f"{BEGIN}\n{table}{END}", text, flags=re.S))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tabulate every real-data recipe from bench/results.")
    parser.add_argument("--write", action="store_true", help=f"replace the table in {common.display(DOCS)}")
    args = parser.parse_args(argv)
    table = render()
    if args.write:
        try:
            write(table)
        except common.BenchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"wrote the table ({table.count(chr(10)) - 2} recipes) into {common.display(DOCS)}")
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
