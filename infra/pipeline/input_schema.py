"""The execution input: its fields, their defaults, and the states that reject a malformed one.

Every field is optional; `{}` runs the pipeline with cdk.json's settings. A malformed input fails the
execution at once, before any job starts, with error `InvalidExecutionInput` and a Cause that names the
field and what to send instead (docs/pipeline.md lists the schema).

How it is checked with JSONPath states only (no Lambda; Pass states cannot Catch, so nothing here may
raise a run-time error on any input):
- object or not: `States.JsonToString($)` never fails; an object's text starts with "{" ("[]" does not:
  an empty list is not an object, which `IsPresent($[0])` could not tell);
- unknown field names: the input merged with the schema `{field: 0, ...}` on top keeps every unknown
  field and turns each known one into `0`; its JSON text then has exactly one ":" per field name, so
  splitting it on ":" gives len(fields) + 1 pieces when all names are known and more otherwise;
- per field: a Choice rule guarded by `IsPresent` in the same And (a rule on a missing path fails the
  execution with States.Runtime on AWS: only IsPresent is safe on a missing path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from deploy_rule import DEPLOY_MODES

from infra.config import MAX_PREPARE_INSTANCES, PRETRAINED_CHOICES, AppConfig

INPUT_ERROR = "InvalidExecutionInput"
# Where the raw input sits while it is checked; "Input is valid" leaves {"input": <the input>}.
INPUT = "$.input"
# The train.py flag the "pretrained" field sets for imagenet / none; an S3 URI goes in as the `pretrained` channel instead.
PRETRAINED_HYPERPARAMETER = "pretrained-weights"
# Under the artifacts bucket: where a user may always put weights for the execution input (the SageMaker role reads it).
PRETRAINED_PREFIX = "pretrained/"
# The "dataset" field: the Udacity subset (training_code/file_lists/udacity_file_list.json) or every photo of dataSource.
DATASETS = ("subset", "all")

C = sfn.Condition


@dataclass(frozen=True)
class InputField:
    name: str
    description: str
    bad: sfn.Condition
    cause: str


def _not_whole_number_in(path: str, low: int, high: int) -> sfn.Condition:
    return C.or_(C.not_(C.is_numeric(path)), C.number_less_than(path, low), C.number_greater_than(path, high))


def pretrained_prefixes(config: AppConfig, artifacts_bucket: str) -> tuple[str, ...]:
    """The S3 prefixes the "pretrained" field may name: cdk.json's pretrainedWeights prefix (if any) and the artifacts bucket's."""
    configured = (config.pretrained_s3_prefix,) if config.pretrained_s3_prefix else ()
    return (*configured, f"s3://{artifacts_bucket}/{PRETRAINED_PREFIX}")


def _pretrained_cause(prefixes: Sequence[str]) -> str:
    allowed = " or ".join(prefixes)
    return (
        'input field "pretrained" must be "imagenet" (the packaged ImageNet weights), "none" (random init) or an S3 URI '
        f'under {allowed} (the prefixes the SageMaker execution role may read) holding <model>.pth, e.g. "{prefixes[-1]}resnet18/"'
    )


def input_fields(pretrained_prefixes: Sequence[str] = ("s3://<artifacts bucket>/pretrained/",)) -> list[InputField]:
    """The fields in order; `pretrained_prefixes` are the S3 prefixes the "pretrained" field may name."""

    def optional(name: str, bad: sfn.Condition) -> sfn.Condition:
        return C.and_(C.is_present(f"{INPUT}.{name}"), bad)

    def at(name: str) -> str:
        return f"{INPUT}.{name}"

    return [
        InputField(
            "hyperparameters",
            "object of train.py flag -> string value; when given, tuning is skipped and these are used",
            # Checked only after "Describe hyperparameters" wrote the field's JSON text (the field is present).
            # The weights are chosen by the "pretrained" field only: a second way would contradict it.
            C.or_(
                C.not_(C.string_matches("$.text.hyperparameters", "{*")),
                C.string_matches("$.text.hyperparameters", f'*"{PRETRAINED_HYPERPARAMETER}":*'),
            ),
            'input field "hyperparameters" must be a JSON object of name -> string value, e.g. {"lr": "0.001", "epochs": "20"}, '
            f'without "{PRETRAINED_HYPERPARAMETER}" (choose the weights with the input field "pretrained")',
        ),
        InputField(
            "tuningMaxJobs",
            "whole number 1..100: training jobs the tuning job may run",
            optional("tuningMaxJobs", _not_whole_number_in(at("tuningMaxJobs"), 1, 100)),
            'input field "tuningMaxJobs" must be a whole number from 1 to 100',
        ),
        InputField(
            "tuningMaxParallelJobs",
            "whole number 1..10, at most tuningMaxJobs: tuning jobs run at the same time",
            optional("tuningMaxParallelJobs", _not_whole_number_in(at("tuningMaxParallelJobs"), 1, 10)),
            'input field "tuningMaxParallelJobs" must be a whole number from 1 to 10',
        ),
        InputField(
            "trainingInstanceCount",
            "whole number 1..16: instances of the final training job",
            optional("trainingInstanceCount", _not_whole_number_in(at("trainingInstanceCount"), 1, 16)),
            'input field "trainingInstanceCount" must be a whole number from 1 to 16',
        ),
        InputField(
            "dataSource",
            "s3://bucket/prefix/ laid out like the public dataset (bin-images/, metadata/)",
            optional("dataSource", C.or_(C.not_(C.is_string(at("dataSource"))), C.not_(C.string_matches(at("dataSource"), "s3://*/*")))),
            'input field "dataSource" must be an S3 URI like "s3://my-bucket/bins/" holding bin-images/ and metadata/',
        ),
        InputField(
            "dataset",
            "subset (the Udacity file list) or all (every photo under dataSource, listed with paging; always shards)",
            optional("dataset", C.not_(C.or_(*(C.string_equals(at("dataset"), name) for name in DATASETS)))),
            'input field "dataset" must be "subset" (the Udacity file list, 10,441 photos) or "all" (every photo under dataSource)',
        ),
        InputField(
            "prepareInstances",
            f"whole number 1..{MAX_PREPARE_INSTANCES}: Processing instances of Prepare; more than 1 writes shards",
            optional("prepareInstances", _not_whole_number_in(at("prepareInstances"), 1, MAX_PREPARE_INSTANCES)),
            f'input field "prepareInstances" must be a whole number from 1 to {MAX_PREPARE_INSTANCES}',
        ),
        InputField(
            "pretrained",
            "imagenet (packaged ImageNet weights), none (random init) or s3://... under an allowed prefix: the `pretrained` channel",
            optional(
                "pretrained",
                C.not_(
                    C.and_(
                        C.is_string(at("pretrained")),
                        C.or_(
                            *(C.string_equals(at("pretrained"), choice) for choice in PRETRAINED_CHOICES),
                            # The prefixes hold no "*" or backslash (config.py), so they match literally; each ends in "/".
                            *(C.string_matches(at("pretrained"), f"{prefix}*") for prefix in pretrained_prefixes),
                        ),
                    )
                ),
            ),
            _pretrained_cause(pretrained_prefixes),
        ),
        InputField(
            "deploy",
            "auto (the gate decides), force (deploy whatever the gate says) or never (train and evaluate only)",
            optional("deploy", C.not_(C.or_(*(C.string_equals(at("deploy"), mode) for mode in DEPLOY_MODES)))),
            'input field "deploy" must be one of "auto", "force", "never"',
        ),
    ]


FIELD_NAMES = tuple(field.name for field in input_fields())
UNKNOWN_FIELD_CAUSE = (
    "the execution input has a field that is not one of "
    + ", ".join(f'"{name}"' for name in FIELD_NAMES)
    + " (names are case-sensitive). Input: "
)


def defaults(config: AppConfig) -> dict[str, Any]:
    """The values a field takes when the input leaves it out (from cdk.json)."""
    return {
        "tuningMaxJobs": config.tuning_max_jobs,
        "tuningMaxParallelJobs": config.tuning_max_parallel_jobs,
        "trainingInstanceCount": config.training_instance_count,
        "dataSource": config.dataset_source,
        "dataset": "subset",
        "prepareInstances": config.prepare_instance_count,
        "pretrained": config.pretrained_weights,
        "deploy": "auto",
    }


def _format_template(text: str) -> str:
    """`text` + one `{}` placeholder, as the quoted template of States.Format (escape \\ ' { } in `text`)."""
    for char in ("\\", "'", "{", "}"):
        text = text.replace(char, "\\" + char)
    return f"'{text}{{}}'"


class InputValidation(Construct):
    """Pass and Choice states that fail the run with a Cause naming the field; none can raise an error.

    `.start` is the first state; `.valid` is the Pass the last check continues to: its output is
    {"input": <the execution input>}.
    """

    def __init__(self, scope: Construct, construct_id: str, *, pretrained_prefixes: Sequence[str]) -> None:
        super().__init__(scope, construct_id)
        fields = input_fields(pretrained_prefixes)
        schema = {name: 0 for name in FIELD_NAMES}
        self.valid = sfn.Pass(self, "Input is valid", parameters={"input.$": INPUT})
        describe = sfn.Pass(
            self,
            "Describe input",
            parameters={"input.$": "$", "text": {"input.$": "States.JsonToString($)"}, "schema": schema},
        )
        is_object = sfn.Choice(self, "Check input is an object")
        is_object.when(
            C.not_(C.string_matches("$.text.input", "{*")),
            sfn.Fail(
                self,
                "Input rejected: not an object",
                error=INPUT_ERROR,
                cause='the execution input must be a JSON object such as {} or {"deploy": "never"}',
            ),
        )
        # Only reached with an object: JsonMerge cannot fail here.
        count_fields = sfn.Pass(
            self,
            "Count input fields",
            parameters={
                "pieces.$": "States.ArrayLength(States.StringSplit(States.JsonToString(States.JsonMerge($.input, $.schema, false)), ':'))",
            },
            result_path="$.fields",
        )
        is_object.otherwise(count_fields)
        known_names = sfn.Choice(self, "Check input field names")
        count_fields.next(known_names)
        unknown = sfn.Pass(
            self,
            "Describe unknown field",
            parameters={"cause.$": f"States.Format({_format_template(UNKNOWN_FIELD_CAUSE)}, $.text.input)"},
            result_path="$.rejection",
        )
        unknown.next(sfn.Fail(self, "Input rejected: unknown field", error=INPUT_ERROR, cause_path="$.rejection.cause"))
        known_names.when(C.number_greater_than("$.fields.pieces", len(FIELD_NAMES) + 1), unknown)
        # The text of "hyperparameters" can only be written when the field is there.
        hyperparameters_given = sfn.Choice(self, "Input has hyperparameters?")
        known_names.otherwise(hyperparameters_given)
        hyperparameters_text = sfn.Pass(
            self,
            "Describe hyperparameters",
            parameters={"input.$": "$.text.input", "hyperparameters.$": f"States.JsonToString({INPUT}.hyperparameters)"},
            result_path="$.text",
        )
        hyperparameters_given.when(C.is_present(f"{INPUT}.hyperparameters"), hyperparameters_text)
        checks = [sfn.Choice(self, f"Check input {field.name}") for field in fields]
        hyperparameters_text.next(checks[0])
        hyperparameters_given.otherwise(checks[1])  # absent: nothing to check
        for field, check, following in zip(fields, checks, [*checks[1:], self.valid], strict=True):
            check.when(field.bad, sfn.Fail(self, f"Input rejected: {field.name}", error=INPUT_ERROR, cause=field.cause))
            check.otherwise(following)
        describe.next(is_object)
        self.start = describe
