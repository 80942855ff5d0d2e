"""Every Task of both state machines (the training pipeline and Verify bins) sends Parameters the real service
accepts, checked against botocore's own service model of that API (a reference we did not write).

Real: botocore's service models and its ParamValidator (the request shapes, required members and types the
services accept) plus the models' enums for every static value. moto's executions (tests/pipeline,
tests/verification) only see the paths a scenario takes; this covers every Task, taken or not. Values that come
from the state (".$" fields) are replaced by an example of the member's own type from the model, so the check is
that such a member exists and that everything around it is well-formed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.model import Shape
from botocore.validate import ParamValidator

from tests.pipeline.conftest import synth_app

# Step Functions' service ids where botocore's differ.
SERVICE_IDS = {"applicationautoscaling": "application-autoscaling"}
MACHINES = {"TrainingPipeline", "VerifyBins"}
# Stands for every CloudFormation reference (bucket names, ARNs): long enough for the models' minimum lengths.
PLACEHOLDER = "arn:aws:iam::123456789012:role/placeholder"


@pytest.fixture(scope="module")
def tasks() -> dict[str, dict[str, Any]]:
    synth = synth_app(nag=False)
    machines = {k: r for k, r in synth.template["Resources"].items() if r["Type"] == "AWS::StepFunctions::StateMachine"}
    assert sorted(next((m for m in MACHINES if k.startswith(m)), k) for k in machines) == sorted(MACHINES)
    found: dict[str, dict[str, Any]] = {}
    for logical_id, resource in machines.items():
        definition = _plain_definition(resource["Properties"]["DefinitionString"])
        found |= {f"{logical_id}: {name}": state for name, state in _task_states(definition["States"])}
    return found


def _plain_definition(definition: Any) -> dict[str, Any]:
    """The definition with every CloudFormation reference replaced by a placeholder inside its string."""
    if isinstance(definition, str):
        return json.loads(definition)
    return json.loads("".join(part if isinstance(part, str) else PLACEHOLDER for part in definition["Fn::Join"][1]))


def _task_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        if state["Type"] == "Task":
            yield name, state
        for branch in state.get("Branches", []) + ([state["ItemProcessor"]] if "ItemProcessor" in state else []):
            yield from _task_states(branch["States"])


def operation_of(resource: str) -> tuple[str, str]:
    """arn:aws:states:::sagemaker:createProcessingJob.sync -> (sagemaker, CreateProcessingJob); aws-sdk:s3:getObject -> (s3, GetObject)."""
    integration = resource.split(":::", 1)[1].removesuffix(".sync")
    parts = integration.split(":")
    service, action = (parts[1], parts[2]) if parts[0] == "aws-sdk" else (parts[0], parts[1])
    return SERVICE_IDS.get(service, service), action[0].upper() + action[1:]


def example(shape: Shape) -> Any:
    """A value of the shape's own type (what a ".$" field must resolve to)."""
    kind = shape.type_name
    if kind == "string":
        return shape.enum[0] if shape.enum else "x" * max(1, shape.metadata.get("min", 1))
    if kind in ("integer", "long"):
        return max(1, int(shape.metadata.get("min", 1)))
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "blob":
        return b"x"
    if kind == "timestamp":
        return "2026-01-01T00:00:00Z"
    if kind == "list":
        return [example(shape.member)]
    if kind == "map":
        return {"k": example(shape.value)}
    return {name: example(shape.members[name]) for name in shape.required_members}


def concrete(parameters: Any, shape: Shape, where: str, problems: list[str]) -> Any:
    """The Parameters with ".$" fields replaced by examples; unknown members and enum violations go to `problems`."""
    if shape.type_name == "structure" and isinstance(parameters, dict):
        out = {}
        for key, value in parameters.items():
            name = key.removesuffix(".$")
            if name not in shape.members:
                problems.append(f"{where}.{name}: not a member of {shape.name}")
                continue
            member = shape.members[name]
            out[name] = example(member) if key.endswith(".$") else concrete(value, member, f"{where}.{name}", problems)
        return out
    if shape.type_name == "list" and isinstance(parameters, list):
        return [concrete(item, shape.member, f"{where}[{i}]", problems) for i, item in enumerate(parameters)]
    if shape.type_name == "map" and isinstance(parameters, dict):
        return {k.removesuffix(".$"): example(shape.value) if k.endswith(".$") else v for k, v in parameters.items()}
    if shape.type_name == "string" and shape.enum and isinstance(parameters, str) and parameters not in shape.enum:
        problems.append(f"{where} = {parameters!r}: not one of {shape.name}'s values {shape.enum}")
    return parameters


def check_task(state: dict[str, Any]) -> list[str]:
    service, operation = operation_of(state["Resource"])
    model = botocore.session.get_session().get_service_model(service)
    if operation not in model.operation_names:
        return [f"{service} has no operation {operation}"]
    shape = model.operation_model(operation).input_shape
    problems: list[str] = []
    request = concrete(state.get("Parameters", {}), shape, operation, problems)
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        problems.append(report.generate_report())
    return problems


def test_every_task_of_both_state_machines_matches_the_service_model(tasks):
    assert len(tasks) > 20
    problems = {name: found for name, state in tasks.items() if (found := check_task(state))}
    assert problems == {}


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ({"ProcessingJobName": "x", "RoleArn": "x"}, "Missing required parameter"),  # no AppSpecification etc.
        ({"ProcessingJobNam.$": "$.names.prepare"}, "not a member of CreateProcessingJobRequest"),
    ],
)
def test_the_check_fails_on_a_broken_request(broken, expected):
    state = {"Resource": "arn:aws:states:::sagemaker:createProcessingJob.sync", "Parameters": broken}
    assert any(expected in problem for problem in check_task(state))


def test_the_check_knows_enums_from_the_model():
    state = {
        "Resource": "arn:aws:states:::sagemaker:createTransformJob.sync",
        "Parameters": {
            "TransformJobName.$": "$.names.transform",
            "ModelName.$": "$.serving.record.model",
            "BatchStrategy": "OneByOne",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.paths.batches"}}},
            "TransformOutput": {"S3OutputPath.$": "$.paths.predictions"},
            "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        },
    }
    assert check_task(state) == [
        "CreateTransformJob.BatchStrategy = 'OneByOne': not one of BatchStrategy's values ['MultiRecord', 'SingleRecord']"
    ]
