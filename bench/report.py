"""Markdown tables from bench/results/*.json, so docs/benchmarks.md quotes the files instead of retyping them.

.venv/bin/python -m bench.report [NAME ...]      # default: every result file, in a fixed order
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from bench import common, load_api, model_latency, preprocess_latency

COLUMNS: dict[str, list[str]] = {
    "preprocess_latency": preprocess_latency.COLUMNS,
    "cold_start": ["case", "runs", "import_ms", "import_cpu_ms", "process_ms"],
    "load_api": load_api.COLUMNS,
    "model_latency": model_latency.COLUMNS,
    "train_throughput": [
        "model",
        "image_size",
        "processes",
        "threads_per_process",
        "batch_per_process",
        "img_s",
        "img_s_min",
        "img_s_max",
        "cpu_img_s",
    ],
    "train_throughput_gpu": ["model", "image_size", "amp", "channels_last", "data_path", "img_s", "img_s_min", "img_s_max"],
    "train_scaling": ["model", "processes", "threads_per_process", "img_s", "speedup_vs_1x1", "efficiency_per_core"],
    "decision_rules": ["rule", "n", "accuracy", "rmse", "off_by_one", "per_class_recall"],
    "accuracy": ["recipe", "n", "accuracy", "rmse", "rmse_expected", "off_by_one", "majority_baseline", "epochs", "wall_seconds"],
}
DOCS = common.ROOT / "docs" / "benchmarks.md"
ORDER = ("preprocess_latency", "cold_start", "load_api", "model_latency", "train_throughput", "train_throughput_gpu", "train_scaling")


def cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def render(name: str, heading: bool = True) -> str:
    body = json.loads((common.RESULTS_DIR / f"{name}.json").read_text())
    machine = body["machine"]
    source = (
        f"`{body['command']}` — {body['date']}, {machine.get('cpu_model', '?')}, {machine.get('cpus')} CPUs, "
        f"load {machine.get('load_avg_1m', '?')} (1 min) at the end; `bench/results/{name}.json`\n"
    )
    columns = COLUMNS[next((prefix for prefix in ("accuracy", "decision_rules", "load_api") if name.startswith(prefix)), name)]
    parts = [f"### {name}\n\n{source}" if heading else source, table(body["rows"], columns)]
    if name == "cold_start" and "asset_size_mb" in body:
        parts.append(f"\nAsset size unzipped: {body['asset_size_mb']:.1f} MB. Slowest packages under `import handler` (self time, ms):\n")
        parts.append(table(body.get("top_imports", []), ["package", "self_ms"]))
        parts.append("\nEach module alone, fresh process, CPU ms (they overlap: botocore is in several):\n")
        parts.append(table(body.get("components", []), ["module", "import_cpu_ms"]))
    if name.startswith("load_api") and "memory_mb" in body:
        memory = body["memory_mb"]
        parts.append(
            f"\nResident memory, server process + {body.get('concurrency', '?')} Lambda environments: "
            f"{memory['after_start']} MB after start-up, {memory['after_load']} MB after the last level; {body.get('seconds_per_level')} s per level."
        )
    if name.startswith("accuracy_"):
        row = body["rows"][0]
        parts.append(
            f"\nPer-class recall: {', '.join(f'{c}: {v:.3f}' for c, v in row['per_class_recall'].items())}; confusion matrix (rows = true 1..5, columns = predicted): {row['confusion_matrix']}"
        )
    return "\n".join(parts) + "\n"


def update_docs() -> list[str]:
    """Replace every marked block in docs/benchmarks.md whose result file exists; returns the names updated."""
    text = DOCS.read_text()
    updated = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if not (common.RESULTS_DIR / f"{name}.json").is_file():
            return match.group(0)
        updated.append(name)
        return f"<!-- bench:{name} -->\n{render(name, heading=False)}<!-- /bench:{name} -->"

    DOCS.write_text(re.sub(r"<!-- bench:([\w-]+) -->\n.*?<!-- /bench:\1 -->", replace, text, flags=re.S))
    return updated


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--update-docs"]:
        print(f"updated {common.display(DOCS)}: {', '.join(update_docs()) or 'nothing (no marked block has a result file)'}")
        return 0
    names = args or [
        *[n for n in ORDER if (common.RESULTS_DIR / f"{n}.json").is_file()],
        *sorted(p.stem for p in common.RESULTS_DIR.glob("accuracy_*.json")),
        *sorted(p.stem for p in common.RESULTS_DIR.glob("decision_rules*.json")),
    ]
    missing = [n for n in names if not (common.RESULTS_DIR / f"{n}.json").is_file()]
    if missing:
        print(
            f"error: no result file for {', '.join(missing)} in {common.display(common.RESULTS_DIR)}: run that benchmark first",
            file=sys.stderr,
        )
        return 2
    print("\n".join(render(n) for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
