"""What several steps share: running the training scripts, thread counts and the prepared channels."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from local_mode.paths import TRAINING_CODE


def script(name: str) -> list[str]:
    """`python <training_code>/<name>`: the scripts run with training_code/ as their folder, as in the container."""
    return [sys.executable, str(TRAINING_CODE / name)]


def child_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: our own, torch threads capped (2 cores are shared), SageMaker-style variables added."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def cpu_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def channels(prepared: Path) -> dict[str, Path]:
    return {name: prepared / name for name in ("train", "validation", "test")}
