"""Where local mode finds the project's folders: the training scripts it runs and the default runs folder."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The SageMaker source dir: its scripts run as `python <TRAINING_CODE>/train.py`, with that folder as theirs.
TRAINING_CODE = ROOT / "training_code"
RUNS_DIR = ROOT / "runs"
