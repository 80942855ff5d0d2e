"""One synthesized test app (StorageStack + PipelineStack, cdk-nag applied) shared by the pipeline tests.

Synth takes ~10-30 s on the shared 2-core machine, so it happens once per session.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_RUNTIME_PACKAGE_CACHE_ROOT", str(ROOT / ".cache" / "jsii"))
os.environ.setdefault("CDK_HOME", str(ROOT / ".cache" / "cdk"))
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from tests.pipeline.render import ACCOUNT, REGION, RenderValues, render_definition  # noqa: E402


def cdk_context() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


@dataclass
class Synth:
    app: Any
    storage: Any
    pipeline: Any
    template: dict[str, Any]
    storage_template: dict[str, Any]
    config: Any


def synth_app(overrides: dict[str, Any] | None = None, nag: bool = True) -> Synth:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import config_from_mapping
    from infra.nag import apply_nag
    from infra.pipeline_stack import PipelineStack
    from infra.storage_stack import StorageStack

    context = {**cdk_context(), **(overrides or {})}
    config = config_from_mapping(context)
    app = cdk.App(context=context)
    env = cdk.Environment(account=ACCOUNT, region=REGION)
    storage = StorageStack(app, "test-storage", config=config, env=env)
    pipeline = PipelineStack(app, "test-pipeline", config=config, storage=storage, env=env)
    if nag:
        apply_nag(app)
    template = Template.from_stack(pipeline).to_json()
    storage_template = Template.from_stack(storage).to_json()
    return Synth(app, storage, pipeline, template, storage_template, config)


@pytest.fixture(scope="session")
def synth() -> Synth:
    return synth_app()


@pytest.fixture(scope="session")
def test_values() -> RenderValues:
    return RenderValues()


@pytest.fixture(scope="session")
def rendered_definition(synth: Synth, test_values: RenderValues) -> str:
    return render_definition(synth.template, synth.storage_template, test_values)
