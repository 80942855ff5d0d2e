"""Render the synthesized DefinitionString (an Fn::Join with CloudFormation references) into plain ASL.

Each reference becomes a test value: the values moto will hold (bucket, topic) or fixed test ARNs.
An unknown reference fails loudly, so a new kind of token in the definition is noticed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass(frozen=True)
class RenderValues:
    artifacts_bucket: str = "invmon-test-artifacts"
    data_bucket: str = "invmon-test-data"
    data_key_arn: str = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
    topic_name: str = "invmon-test-notifications"

    @property
    def topic_arn(self) -> str:
        return f"arn:aws:sns:{REGION}:{ACCOUNT}:{self.topic_name}"

    @staticmethod
    def role_arn(logical_id: str) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{logical_id}"


def _state_machine(template: dict[str, Any], machine: str) -> dict[str, Any]:
    """The state machine whose logical id starts with `machine` (TrainingPipeline, VerifyBins)."""
    machines = [r for k, r in template["Resources"].items() if r["Type"] == "AWS::StepFunctions::StateMachine" and k.startswith(machine)]
    assert len(machines) == 1, f"expected one state machine {machine}*, found {len(machines)}"
    return machines[0]


def render_definition(
    pipeline_template: dict[str, Any],
    storage_template: dict[str, Any],
    values: RenderValues | None = None,
    machine: str = "TrainingPipeline",
) -> str:
    values = values or RenderValues()
    resources = pipeline_template["Resources"]
    storage_outputs = storage_template.get("Outputs", {})

    def storage_value(ref: Any) -> str:
        if "Ref" in ref:
            kind = storage_template["Resources"][ref["Ref"]]["Type"]
            name = ref["Ref"].lower()
            if kind == "AWS::S3::Bucket":
                return values.artifacts_bucket if name.startswith("artifacts") else values.data_bucket
        if "Fn::GetAtt" in ref and storage_template["Resources"][ref["Fn::GetAtt"][0]]["Type"] == "AWS::KMS::Key":
            return values.data_key_arn
        raise AssertionError(f"no test value for storage reference {ref}")

    def resolve(part: Any) -> str:
        if isinstance(part, str):
            return part
        if part == {"Ref": "AWS::Partition"}:
            return "aws"
        if part == {"Ref": "AWS::Region"}:
            return REGION
        if part == {"Ref": "AWS::AccountId"}:
            return ACCOUNT
        if "Ref" in part and part["Ref"] in resources:
            resource = resources[part["Ref"]]
            if resource["Type"] == "AWS::SNS::Topic":
                return values.topic_arn
            if resource["Type"] == "AWS::CloudWatch::Alarm":
                return resource["Properties"]["AlarmName"]
        if "Fn::GetAtt" in part and resources[part["Fn::GetAtt"][0]]["Type"] == "AWS::IAM::Role":
            return values.role_arn(part["Fn::GetAtt"][0])
        for key in ("Fn::GetStackOutput", "Fn::ImportValue"):
            if key in part:
                output_name = part[key]["OutputName"] if key == "Fn::GetStackOutput" else part[key]
                matches = [
                    o for name, o in storage_outputs.items() if name == output_name or o.get("Export", {}).get("Name") == output_name
                ]
                assert matches, f"storage stack has no output {output_name}"
                return storage_value(matches[0]["Value"])
        raise AssertionError(f"no test value for reference {part}")

    definition = _state_machine(pipeline_template, machine)["Properties"]["DefinitionString"]
    if isinstance(definition, str):
        return definition
    separator, parts = definition["Fn::Join"]
    rendered = separator.join(resolve(p) for p in parts)
    json.loads(rendered)  # must be JSON after substitution
    return rendered
