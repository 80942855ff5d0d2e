"""The rendered definitions of both state machines (the training pipeline, Verify bins), walked statically
(tests/pipeline/asl_paths.py): no Choice rule on a path that may be missing, no Pass/Task reading a path or calling
an intrinsic that could fail at run time, and every failure reaching "Notify failure".

Whose behaviour: AWS's, by the Step Functions documentation (concepts-error-handling: Pass/Choice cannot Catch,
States.ALL does not match States.Runtime; state-choice: a rule on a missing Variable fails the execution). moto
5.2.5 is lenient on both (a missing Choice path is "false"; an intrinsic failure in a ResultSelector is caught),
which is why this is checked statically and not only by executing the definition. Which members a service's
answer always holds comes from botocore's service models (`required` members), not from this project.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.pipeline.asl_paths import parse_intrinsic, problems
from tests.pipeline.conftest import Synth
from tests.pipeline.render import RenderValues, render_definition

NOTIFY = {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "Parameters": {"TopicArn": "t", "Message": "m"}, "Next": "Run failed"}
RUN_FAILED = {"Type": "Fail", "Error": "PipelineFailed"}


# The state machines of the pipeline stack, by the start of their logical ids (tests/pipeline/render.py).
MACHINES = ("TrainingPipeline", "VerifyBins")


@pytest.mark.parametrize("machine", MACHINES)
def test_rendered_definition_has_no_path_that_can_fail_the_run_unnotified(synth: Synth, test_values: RenderValues, machine: str) -> None:
    definition = json.loads(render_definition(synth.template, synth.storage_template, test_values, machine=machine))
    found = problems(definition)
    assert found == [], "\n".join(found)


def _machine(states: dict[str, Any], start: str) -> dict[str, Any]:
    return {"StartAt": start, "States": {**states, "Notify failure": NOTIFY, "Run failed": RUN_FAILED}}


def _job(next_state: str, catch: bool = True) -> dict[str, Any]:
    task: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
        "Parameters": {"TrainingJobName": "j"},
        "ResultSelector": {"job.$": "$.TrainingJobName"},
        "ResultPath": "$.training",
        "Next": next_state,
    }
    if catch:
        task["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Notify failure"}]
    return task


DONE = {
    "Type": "Task",
    "Resource": "arn:aws:states:::sns:publish",
    "Parameters": {"TopicArn": "t", "Message": "ok"},
    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Notify failure"}],
    "Next": "Ok",
}


# Each case: a small definition with one defect, the text the walk must report, and the repaired definition.
CASES: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    "choice on a missing path": (
        _machine(
            {
                "Gate": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.record.accuracy", "NumericLessThan": 0.5, "Next": "Done"}],
                    "Default": "Done",
                },
                "Done": DONE,
                "Ok": {"Type": "Succeed"},
            },
            "Gate",
        ),
        "Gate: Choice rule reads $.record.accuracy, which may be missing",
        _machine(
            {
                "Gate": {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "And": [
                                {"Variable": "$.record.accuracy", "IsPresent": True},
                                {"Variable": "$.record.accuracy", "NumericLessThan": 0.5},
                            ],
                            "Next": "Done",
                        }
                    ],
                    "Default": "Done",
                },
                "Done": DONE,
                "Ok": {"Type": "Succeed"},
            },
            "Gate",
        ),
    ),
    "JsonMerge on an input not known to be an object": (
        _machine(
            {
                "Merge": {"Type": "Pass", "Parameters": {"d": {"a": 1}, "m.$": "States.JsonMerge($.d, $, false)"}, "Next": "Done"},
                "Done": DONE,
                "Ok": {"Type": "Succeed"},
            },
            "Merge",
        ),
        "Merge: Parameters m calls States.JsonMerge with argument 2 not known to be object",
        _machine(
            {
                "Describe": {
                    "Type": "Pass",
                    "Parameters": {"input.$": "$", "text.$": "States.JsonToString($)", "d": {"a": 1}},
                    "Next": "Object?",
                },
                "Object?": {
                    "Type": "Choice",
                    "Choices": [{"Not": {"Variable": "$.text", "StringMatches": "{*"}, "Next": "Rejected"}],
                    "Default": "Merge",
                },
                "Rejected": {"Type": "Fail", "Error": "InvalidExecutionInput"},
                "Merge": {"Type": "Pass", "Parameters": {"m.$": "States.JsonMerge($.d, $.input, false)"}, "Next": "Done"},
                "Done": DONE,
                "Ok": {"Type": "Succeed"},
            },
            "Describe",
        ),
    ),
    "task without a catch": (
        _machine({"Train": _job("Done", catch=False), "Done": DONE, "Ok": {"Type": "Succeed"}}, "Train"),
        "Train: Task without a States.ALL Catch",
        _machine({"Train": _job("Done"), "Done": DONE, "Ok": {"Type": "Succeed"}}, "Train"),
    ),
    "a failure after a job without a notification": (
        _machine(
            {
                "Train": _job("Check"),
                "Check": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.training.job", "StringEquals": "x", "Next": "Stop"}],
                    "Default": "Done",
                },
                "Stop": {"Type": "Fail", "Error": "Refused"},
                "Done": DONE,
                "Ok": {"Type": "Succeed"},
            },
            "Train",
        ),
        "Stop: the run can end here after a SageMaker job started, without a notification",
        _machine(
            {
                "Train": _job("Check"),
                "Check": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.training.job", "StringEquals": "x", "Next": "Notify failure"}],
                    "Default": "Done",
                },
                "Done": DONE,
                "Ok": {"Type": "Succeed"},
            },
            "Train",
        ),
    ),
    "a ResultSelector on an optional member of the API answer": (
        _machine(
            {
                "Find": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
                    "Parameters": {"EndpointName": "e"},
                    "ResultSelector": {"config.$": "$.EndpointConfigName"},  # optional in botocore's DescribeEndpointOutput
                    "ResultPath": "$.found",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Notify failure"}],
                    "Next": "Done",
                },
                "Done": DONE,
                "Ok": {"Type": "Succeed"},
            },
            "Find",
        ),
        "Find: ResultSelector config reads $.EndpointConfigName, which may be missing",
        _machine(
            {
                "Find": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
                    "Parameters": {"EndpointName": "e"},
                    "ResultSelector": {"status.$": "$.EndpointStatus"},  # required
                    "ResultPath": "$.found",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Notify failure"}],
                    "Next": "Done",
                },
                "Done": DONE,
                "Ok": {"Type": "Succeed"},
            },
            "Find",
        ),
    ),
    "StringToJson in a Pass": (
        _machine(
            {
                "Parse": {"Type": "Pass", "Parameters": {"v.$": "States.StringToJson($.body)", "body": "x"}, "Next": "Done"},
                "Done": DONE,
                "Ok": {"Type": "Succeed"},
            },
            "Parse",
        ),
        "Parse: Parameters v calls States.StringToJson outside a Task's ResultSelector",
        _machine(
            {
                "Parse": {"Type": "Pass", "Parameters": {"v.$": "States.JsonToString($)"}, "Next": "Done"},
                "Done": DONE,
                "Ok": {"Type": "Succeed"},
            },
            "Parse",
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_walk_reports_each_kind_of_defect(case: str) -> None:
    """The check can fail: each defect is reported, and its repair is not."""
    broken, expected, repaired = CASES[case]
    found = problems(broken)
    assert any(expected in p for p in found), found
    assert problems(repaired) == []


def test_intrinsic_parser_reads_nested_calls_and_quoted_commas() -> None:
    tree = parse_intrinsic("States.Format('a, {} \\' b', $.x, States.JsonToString($.y.z))")
    assert tree == ("call", "States.Format", [("lit", "string"), ("path", "$.x"), ("call", "States.JsonToString", [("path", "$.y.z")])])
