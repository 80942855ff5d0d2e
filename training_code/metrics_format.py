"""The one format of per-epoch metric lines, and the regexes that parse it.

train.py prints one line per epoch:

    METRICS epoch=3; train:loss=1.2345; train:accuracy=0.4567; validation:loss=1.3; validation:accuracy=0.41;

SageMaker's tuning and training jobs scrape the log with METRIC_DEFINITIONS (first capture group is the
value); the local tuner calls parse_metrics on the captured stdout. Both read the same text, so a change
of format here is caught by the test that runs these regexes on real train.py output.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

PREFIX = "METRICS"
# The tuning objective (Maximize). Names follow SageMaker's built-in algorithms ("validation:accuracy").
OBJECTIVE_METRIC = "validation:accuracy"
OBJECTIVE_TYPE = "Maximize"
# Every metric train.py reports, in print order. Names may contain letters, digits, '_' and one ':'.
METRIC_NAMES = (
    "epoch",
    "train:loss",
    "train:accuracy",
    "validation:loss",
    "validation:accuracy",
    "validation:rmse",
    "validation:off_by_one",
    "epoch_seconds",
)
_NAME = re.compile(r"^[a-z][a-z0-9_]*(:[a-z][a-z0-9_]*)?$")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# A `name=value;` pair anywhere on a METRICS line; the lookbehind stops "train:loss" matching inside
# a longer name such as "pretrain:loss".
_PAIR = re.compile(rf"(?<![\w:])([a-z][a-z0-9_]*(?::[a-z][a-z0-9_]*)?)=({_NUMBER});")
_LINE = re.compile(rf"^{PREFIX}\s+(.*)$", re.MULTILINE)


def _regex_for(name: str) -> str:
    # SageMaker applies each regex to log lines and takes group 1. \b is enough: names start with a
    # letter and the line separates pairs with "; ".
    return rf"{PREFIX} .*\b{re.escape(name)}=({_NUMBER});"


METRIC_DEFINITIONS: list[dict[str, str]] = [{"Name": name, "Regex": _regex_for(name)} for name in METRIC_NAMES]


def format_metrics(metrics: Mapping[str, float | int]) -> str:
    """One METRICS line (no newline). Non-finite values are left out: the tuner must never see NaN."""
    parts = []
    for name, value in metrics.items():
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} is invalid: use lowercase letters, digits, '_' and at most one ':'")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"metric {name!r} has value {value!r}: expected a number")
        if isinstance(value, float) and not math.isfinite(value):
            continue
        parts.append(f"{name}={value};" if isinstance(value, int) else f"{name}={value:.6g};")
    return f"{PREFIX} " + " ".join(parts)


def parse_metrics(text: str) -> list[dict[str, float]]:
    """Every METRICS line in `text` (e.g. a trial's stdout), in order, as {name: value}."""
    return [{name: float(value) for name, value in _PAIR.findall(body)} for body in _LINE.findall(text)]
