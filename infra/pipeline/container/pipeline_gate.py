"""Runs in the Evaluate Processing job after evaluate.py: the numbers the state machine's Gate compares.

Step Functions' JSONPath cannot add two decimals (States.MathAdd rounds to integers), so the threshold
`majority_baseline + margin` is computed here, in the container, and the Gate (a Choice state) only
compares numbers. Reads evaluation.json (docs/contracts.md), writes gate.json beside it:
{"accuracy", "majority_baseline", "margin", "required_accuracy", "n"}.

Standard library only: it runs in the stock PyTorch container.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


class GateInputError(ValueError):
    """evaluation.json is missing or does not hold the fields the gate needs."""


def _fraction(report: dict, key: str) -> float:
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise GateInputError(f"evaluation.json field '{key}' = {value!r}: expected a fraction from 0 to 1 (see docs/contracts.md)")
    return float(value)


def required_accuracy(majority_baseline: float, margin: float) -> float:
    """The one threshold rule, shared with the local gate (local_mode/gate.py): baseline + margin, 6 places."""
    return round(majority_baseline + margin, 6)


def gate_numbers(report: dict, margin: float) -> dict:
    if not isinstance(report, dict):
        raise GateInputError("evaluation.json must hold a JSON object")
    if not 0.0 <= margin <= 1.0:
        raise GateInputError(f"margin {margin!r} must be from 0 to 1")
    accuracy = _fraction(report, "accuracy")
    baseline = _fraction(report, "majority_baseline")
    return {
        "accuracy": accuracy,
        "majority_baseline": baseline,
        "margin": margin,
        "required_accuracy": required_accuracy(baseline, margin),
        "n": report.get("n"),
    }


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write gate.json (accuracy vs. majority baseline + margin) from evaluation.json")
    parser.add_argument("--evaluation", type=Path, required=True, help="path of evaluation.json")
    parser.add_argument("--margin", type=float, required=True, help="required accuracy margin over the majority-class baseline")
    parser.add_argument("--output", type=Path, required=True, help="where to write gate.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        report = json.loads(args.evaluation.read_text())
        numbers = gate_numbers(report, args.margin)
    except FileNotFoundError:
        print(f"gate: {args.evaluation} not found: evaluate.py must write it first", file=sys.stderr)
        return 2
    except (json.JSONDecodeError, GateInputError) as error:
        print(f"gate: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(numbers, indent=2))
    print(f"gate: {json.dumps(numbers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
