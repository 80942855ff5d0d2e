"""The local pipeline's steps, in the state machine's order; each module's `run(ctx, step_dir)` does one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from local_mode.paths import ROOT
from local_mode.runner import Step, UsageError


@dataclass(frozen=True)
class RunConfig:
    """What the local run takes from cdk.json (the same values the deployed pipeline uses)."""

    classes: tuple[int, ...]
    deploy_margin: float
    max_images_per_request: int
    review_confidence_threshold: float
    endpoint_name: str
    verify_thresholds: tuple[float, float] = (0.45, 0.15)


def load_settings(cdk_json: Path = ROOT / "cdk.json") -> RunConfig:
    from infra.config import ConfigError, config_from_mapping

    try:
        config = config_from_mapping(json.loads(cdk_json.read_text())["context"])
    except ConfigError as error:
        raise UsageError(str(error)) from None
    except (OSError, KeyError, json.JSONDecodeError) as error:
        raise UsageError(f"cannot read {cdk_json} ({error}): the local run takes classes and the gate margin from its context") from None
    return RunConfig(
        classes=config.classes,
        deploy_margin=config.deploy_margin_over_baseline,
        max_images_per_request=config.max_images_per_request,
        review_confidence_threshold=config.review_confidence_threshold,
        endpoint_name=config.endpoint_name,
        verify_thresholds=(config.verify_match_threshold, config.verify_mismatch_threshold),
    )


def build_steps() -> list[Step]:
    from local_mode.steps import count, evaluate, gate_step, prepare, serve, train, tune

    return [
        Step("prepare", "prepared data: train / validation / test channels", prepare.run),
        Step("tune", "local tuner: trials of train.py over the search space", tune.run),
        Step("train", "final training with the best hyperparameters (torchrun)", train.run),
        Step("evaluate", "evaluate.py on the test channel: report and figures", evaluate.run),
        Step("gate", "deploy or hold back (the state machine's rule)", gate_step.run),
        # Servers do not outlive the process: serve and count run on every --resume.
        Step("serve", "local endpoint (/ping, /invocations) and local REST API", serve.run, live=True),
        Step("count", "POST test photos through the local API", count.run, live=True),
    ]
