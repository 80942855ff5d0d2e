"""Every stack of the product, wired with explicit cross-stack references (used by app.py and tests)."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra.config import AppConfig
from infra.pipeline_stack import PipelineStack
from infra.serving_stack import ServingStack
from infra.storage_stack import StorageStack


def build_stacks(scope: Construct, config: AppConfig, env: cdk.Environment | None = None) -> dict[str, cdk.Stack]:
    prefix = config.name_prefix
    storage = StorageStack(scope, f"{prefix}-storage", config=config, env=env)
    pipeline = PipelineStack(scope, f"{prefix}-pipeline", config=config, storage=storage, env=env)
    # The API calls the endpoint the pipeline deploys (by its fixed name) and alarms to the pipeline's topic.
    serving = ServingStack(scope, f"{prefix}-serving", config=config, topic=pipeline.topic, env=env)
    stacks: dict[str, cdk.Stack] = {"storage": storage, "pipeline": pipeline, "serving": serving}
    for stack in stacks.values():
        cdk.Tags.of(stack).add("project", "inventory-monitor")
        cdk.Tags.of(stack).add("name-prefix", prefix)
    return stacks
