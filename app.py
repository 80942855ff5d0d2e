#!/usr/bin/env python3
"""The Inventory Monitor CDK app: storage, the training pipeline and the serving API."""

from __future__ import annotations

import os

import aws_cdk as cdk

from infra.config import ConfigError, load_config
from infra.nag import apply_nag
from infra.stacks import build_stacks


def main() -> None:
    app = cdk.App()
    try:
        config = load_config(app.node)
    except ConfigError as error:
        raise SystemExit(f"Configuration error: {error}") from None
    env = cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=config.region)
    build_stacks(app, config, env)
    apply_nag(app)
    app.synth()


if __name__ == "__main__":
    main()
