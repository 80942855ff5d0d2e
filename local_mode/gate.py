"""The deploy gate: one pure function, the rule the state machine's Gate (Choice) state applies.

Deploy when the new model's test accuracy is at least the majority-class baseline plus a margin
(cdk.json `deployMarginOverBaseline`) and not below the accuracy recorded for the model being served.
`deploy` overrides the rule: "force" always deploys, "never" never does, "auto" applies it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from infra.pipeline.container.pipeline_gate import required_accuracy

DEPLOY_MODES = ("auto", "force", "never")


@dataclass(frozen=True)
class GateDecision:
    deploy: bool
    reason: str
    accuracy: float
    threshold: float
    serving_accuracy: float | None
    mode: str

    def to_dict(self) -> dict:
        return asdict(self)


def _fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"gate input '{name}' = {value!r} is invalid: expected a fraction from 0 to 1 (evaluation.json's fields are fractions)"
        )
    return float(value)


def decide(
    accuracy: float,
    majority_baseline: float,
    margin: float,
    serving_accuracy: float | None = None,
    mode: str = "auto",
) -> GateDecision:
    """Apply the gate rule; every input is a fraction in 0..1, serving_accuracy None when nothing is served yet."""
    if mode not in DEPLOY_MODES:
        raise ValueError(f"deploy mode {mode!r} is invalid: expected one of {', '.join(DEPLOY_MODES)}")
    accuracy = _fraction("accuracy", accuracy)
    # The threshold the pipeline's Evaluate job computes for its Gate state: one definition for both.
    threshold = required_accuracy(_fraction("majority_baseline", majority_baseline), _fraction("margin", margin))
    if serving_accuracy is not None:
        serving_accuracy = _fraction("serving_accuracy", serving_accuracy)

    def result(deploy: bool, reason: str) -> GateDecision:
        return GateDecision(deploy, reason, accuracy, threshold, serving_accuracy, mode)

    if mode == "force":
        return result(True, "deploy=force: deploying without checking the rule")
    if mode == "never":
        return result(False, "deploy=never: not deploying")
    if accuracy < threshold:
        return result(
            False, f"accuracy {accuracy:.3f} is below the majority baseline {majority_baseline:.3f} + margin {margin:.3f} = {threshold:.3f}"
        )
    if serving_accuracy is not None and accuracy < serving_accuracy:
        return result(False, f"accuracy {accuracy:.3f} is below the serving model's recorded accuracy {serving_accuracy:.3f}")
    served = "" if serving_accuracy is None else f" and the serving model's {serving_accuracy:.3f}"
    return result(True, f"accuracy {accuracy:.3f} reaches the threshold {threshold:.3f}{served}")
