"""What several steps share: the training code's location, its modules, and running its scripts."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from local_mode.paths import TRAINING_CODE, add_training_code


def training_module(name: str) -> Any:
    """Import a training_code module by top-level name, as the SageMaker container does."""
    add_training_code()
    return __import__(name)


def script(name: str) -> list[str]:
    """`python <training_code>/<name>`: the scripts run with training_code/ as their folder, as in the container."""
    return [sys.executable, str(TRAINING_CODE / name)]


def child_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: our own, torch threads capped (2 cores are shared), SageMaker-style variables added."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TRAINING_CODE), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def cpu_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def channels(prepared: Path) -> dict[str, Path]:
    return {name: prepared / name for name in ("train", "validation", "test")}


def ensure_relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
