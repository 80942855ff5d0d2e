"""What every benchmark shares: paths, the real-photo folder, timing (median of rounds) and the result files.

Each benchmark writes `bench/results/<name>.json`: {"benchmark", "command", "machine", "date", "rows": [...]}
so docs/benchmarks.md can quote a figure together with the command and machine that produced it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
SCRATCH_DIR = RESULTS_DIR / "tmp"  # git-ignored: prepared data, exported models
# The real photos are not part of a clone: benchmarks that need them skip when this is absent.
ABID_DIR = Path(os.environ.get("INVMON_ABID_DIR", str(ROOT.parent / "shared" / "abid")))


class BenchError(Exception):
    """A usage problem (bad flag, missing input) reported as one line, without a traceback."""


def quick_results() -> None:
    """--quick runs are smoke tests: their figures go to bench/results/tmp/quick/, never over the quoted ones."""
    global RESULTS_DIR
    RESULTS_DIR = SCRATCH_DIR / "quick"


def abid_available() -> bool:
    return (ABID_DIR / "bin-images").is_dir() and (ABID_DIR / "index.csv").is_file()


def median_ms(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> float:
    """Median wall time of `repeats` calls in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def interleaved_median_ms(fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Median wall and CPU time (ms) of each callable, timed in turns: repeat r calls every callable once, in
    an order rotated by r. On a machine shared with other work, load then hits every variant alike, so the
    ratios between them stay meaningful even when the absolute figures swing. CPU time (this process, all
    threads) barely moves with other processes' load: with one thread it is close to the idle-machine time.
    -> {name: {"wall_ms": ..., "cpu_ms": ...}}"""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            fns[name]()
            cpu[name].append((time.process_time() - start_cpu) * 1000.0)
            wall[name].append((time.perf_counter() - start) * 1000.0)
    return {name: {"wall_ms": statistics.median(wall[name]), "cpu_ms": statistics.median(cpu[name])} for name in names}


def machine() -> dict[str, Any]:
    """What produced a figure: CPU model, cores, load (the machine is shared), library versions."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    for name in ("torch", "PIL", "onnxruntime"):
        module = sys.modules.get(name)
        if module is not None:
            info[f"{name}_version"] = getattr(module, "__version__", "?")
    return info


def write_result(name: str, command: str, rows: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    body = {
        "benchmark": name,
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "rows": rows,
        **(extra or {}),
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain-text table of the rows on stdout (what a person running `make bench` reads)."""
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def command_line(module: str, argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return " ".join([".venv/bin/python", "-m", module, *args])


def display(path: Path) -> str:
    """A path relative to the project when it is inside it (shorter output), else absolute."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
