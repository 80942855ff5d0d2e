"""The whole CDK app: every stack synthesizes with zero unacknowledged cdk-nag findings, and bad config stops synth."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import aws_cdk as cdk
from aws_cdk.assertions import Template

from infra.config import config_from_mapping
from infra.nag import apply_nag
from infra.stacks import build_stacks
from tests.conftest import ROOT
from tests.nag_findings import nag_findings, nag_rules


def test_every_stack_synthesizes_without_nag_errors_or_warnings(default_context):
    app = cdk.App()
    stacks = build_stacks(app, config_from_mapping(default_context), cdk.Environment(account="123456789012", region="us-east-1"))
    apply_nag(app)
    app.synth()
    assert sorted(stacks) == ["pipeline", "serving", "storage"]
    for name, stack in stacks.items():
        assert nag_findings(stack) == [], name


def test_every_taggable_resource_is_tagged(default_context):
    app = cdk.App()
    stacks = build_stacks(app, config_from_mapping(default_context))
    for name, stack in stacks.items():
        resources = Template.from_stack(stack).to_json()["Resources"]
        tagged = [r["Properties"]["Tags"] for r in resources.values() if isinstance(r.get("Properties", {}).get("Tags"), list)]
        assert tagged, f"{name}: no taggable resource found"
        for tags in tagged:
            assert {"Key": "project", "Value": "inventory-monitor"} in tags
            assert {"Key": "name-prefix", "Value": "invmon"} in tags


def test_app_py_stops_with_a_clear_message_on_bad_config(default_context, tmp_path):
    # What `cdk synth -c trainingInstanceCount=0` does: the CLI passes the merged context in CDK_CONTEXT_JSON.
    context = {**default_context, "trainingInstanceCount": "0"}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert (
        "Configuration error: cdk.json context 'trainingInstanceCount' = '0' is invalid: expected a whole number from 1 to 16"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_nag_gate_does_catch_an_insecure_resource():
    # The gate above can fail: the same nag set-up flags a bucket without SSL, logging or encryption.
    from aws_cdk import aws_s3 as s3

    app = cdk.App()
    stack = cdk.Stack(app, "canary")
    s3.Bucket(stack, "Insecure", encryption=s3.BucketEncryption.UNENCRYPTED, enforce_ssl=False)
    apply_nag(app)
    app.synth()
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= nag_rules(stack)
