"""The execution input: its fields, their defaults, and the Choice states that reject a malformed one.

Every field is optional; `{}` runs the pipeline with cdk.json's settings. A malformed input fails the
execution at once, before any job starts, with a Cause that names the field and what to send instead
(docs/pipeline.md lists the schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import AppConfig

DEPLOY_MODES = ("auto", "force", "never")
INPUT_ERROR = "InvalidExecutionInput"

C = sfn.Condition


@dataclass(frozen=True)
class InputField:
    name: str
    description: str
    bad: sfn.Condition | None  # None: checked as a whole (the object itself)
    cause: str


def _not_whole_number_in(path: str, low: int, high: int) -> sfn.Condition:
    return C.or_(C.not_(C.is_numeric(path)), C.number_less_than(path, low), C.number_greater_than(path, high))


def _not_an_object(path: str) -> sfn.Condition:
    # ASL has no IsObject: an object is what is present and none of string, number, boolean, null or array.
    return C.or_(C.is_string(path), C.is_numeric(path), C.is_boolean(path), C.is_null(path), C.is_present(f"{path}[0]"))


def input_fields() -> list[InputField]:
    def optional(name: str, bad: sfn.Condition) -> sfn.Condition:
        return C.and_(C.is_present(f"$.{name}"), bad)

    return [
        InputField(
            "hyperparameters",
            "object of train.py flag -> string value; when given, tuning is skipped and these are used",
            optional("hyperparameters", _not_an_object("$.hyperparameters")),
            'input field "hyperparameters" must be a JSON object of name -> string value, e.g. {"lr": "0.001", "epochs": "20"}',
        ),
        InputField(
            "tuningMaxJobs",
            "whole number 1..100: training jobs the tuning job may run",
            optional("tuningMaxJobs", _not_whole_number_in("$.tuningMaxJobs", 1, 100)),
            'input field "tuningMaxJobs" must be a whole number from 1 to 100',
        ),
        InputField(
            "tuningMaxParallelJobs",
            "whole number 1..10, at most tuningMaxJobs: tuning jobs run at the same time",
            optional("tuningMaxParallelJobs", _not_whole_number_in("$.tuningMaxParallelJobs", 1, 10)),
            'input field "tuningMaxParallelJobs" must be a whole number from 1 to 10',
        ),
        InputField(
            "trainingInstanceCount",
            "whole number 1..16: instances of the final training job",
            optional("trainingInstanceCount", _not_whole_number_in("$.trainingInstanceCount", 1, 16)),
            'input field "trainingInstanceCount" must be a whole number from 1 to 16',
        ),
        InputField(
            "dataSource",
            "s3://bucket/prefix/ laid out like the public dataset (bin-images/, metadata/)",
            optional("dataSource", C.or_(C.not_(C.is_string("$.dataSource")), C.not_(C.string_matches("$.dataSource", "s3://*/*")))),
            'input field "dataSource" must be an S3 URI like "s3://my-bucket/bins/" holding bin-images/ and metadata/',
        ),
        InputField(
            "deploy",
            "auto (the gate decides), force (deploy whatever the gate says) or never (train and evaluate only)",
            optional("deploy", C.not_(C.or_(*(C.string_equals("$.deploy", mode) for mode in DEPLOY_MODES)))),
            'input field "deploy" must be one of "auto", "force", "never"',
        ),
    ]


def defaults(config: AppConfig) -> dict[str, Any]:
    """The values a field takes when the input leaves it out (from cdk.json)."""
    return {
        "tuningMaxJobs": config.tuning_max_jobs,
        "tuningMaxParallelJobs": config.tuning_max_parallel_jobs,
        "trainingInstanceCount": config.training_instance_count,
        "dataSource": config.dataset_source,
        "deploy": "auto",
    }


class InputValidation(Construct):
    """Choice states, one per field, each failing the run with a Cause naming the field.

    `.start` is the first state; `.valid` is the Pass the last check continues to.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.valid = sfn.Pass(self, "Input is valid")
        is_object = sfn.Choice(self, "Check input is an object")
        is_object.when(
            _not_an_object("$"),
            sfn.Fail(
                self,
                "Input rejected: not an object",
                error=INPUT_ERROR,
                cause='the execution input must be a JSON object such as {} or {"deploy": "never"}',
            ),
        )
        previous = is_object
        for field in input_fields():
            check = sfn.Choice(self, f"Check input {field.name}")
            previous.otherwise(check)
            check.when(field.bad, sfn.Fail(self, f"Input rejected: {field.name}", error=INPUT_ERROR, cause=field.cause))
            previous = check
        previous.otherwise(self.valid)
        self.start = is_object
