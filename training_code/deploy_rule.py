"""The deploy gate: the one rule that decides whether a run's model replaces the one being served.

Deploy when the model's test accuracy reaches the majority-class baseline plus a margin (cdk.json
`deployMarginOverBaseline`) and is not below the accuracy recorded for the model being served. The deploy
mode overrides the rule: "force" always deploys, "never" never does, "auto" applies it.

Who applies it: the pipeline's Evaluate Processing job runs this file after evaluate.py and writes the decision
as gate.json beside evaluation.json (the state machine's Gate only reads `deploy` and `reason`); the local
gate step (local_mode/steps/gate_step.py) calls `decide`. Standard library only: it runs in the stock
PyTorch container.

    python3 deploy_rule.py --evaluation evaluation.json --margin 0.05 --mode auto --serving-accuracy none --output gate.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEPLOY_MODES = ("auto", "force", "never")
# What the state machine passes as the serving accuracy when nothing is served yet or the mode skips the comparison.
NO_SERVING_MODEL = "none"


class DeployRuleError(ValueError):
    """An input of the rule is not what the contract says (docs/contracts.md)."""


@dataclass(frozen=True)
class Decision:
    """The decision and the numbers it was made from: gate.json (pipeline) and gate/decision.json (local)."""

    deploy: bool
    reason: str
    mode: str
    accuracy: float
    majority_baseline: float
    margin: float
    required_accuracy: float
    serving_accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise DeployRuleError(f"gate input '{name}' = {value!r} is invalid: expected a fraction from 0 to 1")
    return float(value)


def required_accuracy(majority_baseline: float, margin: float) -> float:
    """The threshold: baseline + margin, rounded to 6 places so that 0.255 + 0.05 is 0.305 wherever it is computed."""
    return round(majority_baseline + margin, 6)


def _reason(mode: str, accuracy: float, baseline: float, margin: float, threshold: float, serving: float | None) -> tuple[bool, str]:
    if mode == "force":
        return True, "deploy=force: deploying without checking the rule"
    if mode == "never":
        return False, "deploy=never: not deploying"
    if accuracy < threshold:
        return False, f"accuracy {accuracy:.3f} is below the majority baseline {baseline:.3f} + margin {margin:.3f} = {threshold:.3f}"
    if serving is not None and accuracy < serving:
        return False, f"accuracy {accuracy:.3f} is below the serving model's recorded accuracy {serving:.3f}"
    served = "" if serving is None else f" and the serving model's {serving:.3f}"
    return True, f"accuracy {accuracy:.3f} reaches the threshold {threshold:.3f}{served}"


def decide(
    accuracy: float,
    majority_baseline: float,
    margin: float,
    serving_accuracy: float | None = None,
    mode: str = "auto",
) -> Decision:
    """Apply the rule; every number is a fraction in 0..1, serving_accuracy None when nothing is served yet."""
    if mode not in DEPLOY_MODES:
        raise DeployRuleError(f"deploy mode {mode!r} is invalid: expected one of {', '.join(DEPLOY_MODES)}")
    accuracy = _fraction("accuracy", accuracy)
    baseline = _fraction("majority_baseline", majority_baseline)
    margin = _fraction("margin", margin)
    serving = None if serving_accuracy is None else _fraction("serving_accuracy", serving_accuracy)
    threshold = required_accuracy(baseline, margin)
    deploy, reason = _reason(mode, accuracy, baseline, margin, threshold, serving)
    return Decision(deploy, reason, mode, accuracy, baseline, margin, threshold, serving)


def decide_from_report(report: Any, margin: float, serving_accuracy: float | None, mode: str) -> dict[str, Any]:
    """gate.json: the decision for evaluation.json's accuracy and majority baseline, plus the report's `n`."""
    if not isinstance(report, dict):
        raise DeployRuleError("evaluation.json must hold a JSON object")
    for field in ("accuracy", "majority_baseline"):
        if field not in report:
            raise DeployRuleError(f"evaluation.json has no '{field}' (see docs/contracts.md)")
    decision = decide(report["accuracy"], report["majority_baseline"], margin, serving_accuracy, mode)
    return {**decision.to_dict(), "n": report.get("n")}


def parse_serving_accuracy(text: str) -> float | None:
    """The CLI's --serving-accuracy: a number, or NO_SERVING_MODEL."""
    if text == NO_SERVING_MODEL:
        return None
    try:
        return float(text)
    except ValueError:
        raise DeployRuleError(f"--serving-accuracy {text!r}: expected a fraction from 0 to 1 or {NO_SERVING_MODEL!r}") from None


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write gate.json (the deploy decision) from evaluation.json")
    parser.add_argument("--evaluation", type=Path, required=True, help="path of evaluation.json")
    parser.add_argument("--margin", type=float, required=True, help="required accuracy margin over the majority-class baseline")
    parser.add_argument("--mode", required=True, help=f"deploy mode: {', '.join(DEPLOY_MODES)}")
    parser.add_argument("--serving-accuracy", required=True, help=f"the serving model's recorded accuracy, or {NO_SERVING_MODEL!r}")
    parser.add_argument("--output", type=Path, required=True, help="where to write gate.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        report = json.loads(args.evaluation.read_text())
        gate = decide_from_report(report, args.margin, parse_serving_accuracy(args.serving_accuracy), args.mode)
    except FileNotFoundError:
        print(f"gate: {args.evaluation} not found: evaluate.py must write it first", file=sys.stderr)
        return 2
    except (json.JSONDecodeError, DeployRuleError) as error:
        print(f"gate: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(gate, indent=2))
    print(f"gate: {json.dumps(gate)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
