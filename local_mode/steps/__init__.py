"""The local pipeline's steps, in the state machine's order; each module's `run(ctx, step_dir)` does one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from count_api.settings import ApiSettings

from local_mode.paths import ROOT
from local_mode.runner import Step, UsageError


@dataclass(frozen=True)
class RunConfig:
    """What the local run takes from cdk.json (the same values the deployed pipeline and function use)."""

    classes: tuple[int, ...]
    deploy_margin: float
    # The count function's settings, mapped from cdk.json as the serving stack maps them (infra.config.api_settings).
    api: ApiSettings


def load_settings(cdk_json: Path = ROOT / "cdk.json") -> RunConfig:
    from infra.config import ConfigError, api_settings, config_from_mapping

    try:
        config = config_from_mapping(json.loads(cdk_json.read_text())["context"])
    except ConfigError as error:
        raise UsageError(str(error)) from None
    except (OSError, KeyError, json.JSONDecodeError) as error:
        raise UsageError(f"cannot read {cdk_json} ({error}): the local run takes classes and the gate margin from its context") from None
    return RunConfig(classes=config.classes, deploy_margin=config.deploy_margin_over_baseline, api=api_settings(config))


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
