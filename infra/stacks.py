"""Every stack of the product, wired with explicit cross-stack references (used by app.py and tests)."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra.config import AppConfig
from infra.storage_stack import StorageStack


def build_stacks(scope: Construct, config: AppConfig, env: cdk.Environment | None = None) -> dict[str, cdk.Stack]:
    prefix = config.name_prefix
    storage = StorageStack(scope, f"{prefix}-storage", config=config, env=env)
    stacks: dict[str, cdk.Stack] = {"storage": storage}
    # PIPELINE: stacks["pipeline"] = PipelineStack(scope, f"{prefix}-pipeline", config=config, storage=storage, env=env)
    # SERVING:  stacks["serving"] = ServingStack(scope, f"{prefix}-serving", config=config, topic=pipeline.topic, env=env)
    for stack in stacks.values():
        cdk.Tags.of(stack).add("project", "inventory-monitor")
        cdk.Tags.of(stack).add("name-prefix", prefix)
    return stacks
