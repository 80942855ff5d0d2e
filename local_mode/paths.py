"""Put the project's flat source folders on sys.path, as pytest's `pythonpath` does (docs/contracts.md)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAINING_CODE = ROOT / "training_code"
LAMBDA_SOURCE = ROOT / "lambda" / "preprocess"


def _add(folder: Path) -> None:
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def add_training_code() -> None:
    """`import preprocessing_spec`, `import inference`, ... by top-level name, as in the SageMaker container."""
    _add(TRAINING_CODE)


def add_lambda() -> None:
    """`import handler` (and its `count_api` package); it needs preprocessing_spec, so training_code too."""
    add_training_code()
    _add(LAMBDA_SOURCE)
