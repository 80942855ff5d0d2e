"""What the state machine definition is built from: plain values (CDK tokens allowed), checked once."""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import AppConfig, is_gpu_instance
from infra.pipeline.images import ImageUris

# Wait + DescribeEndpoint loop: 60 polls of 60 s. Blue/green baking and instance start fit well inside.
ENDPOINT_POLL_SECONDS = 60
ENDPOINT_MAX_POLLS = 60
# Where the Processing jobs unpack the code tarball, and the Udacity subset's id list inside it
# (training_code/file_lists/udacity_file_list.json, shipped with the code).
CODE_DIR = "/opt/ml/processing/input/code"
FILE_LIST_PATH = f"{CODE_DIR}/file_lists/udacity_file_list.json"
# Name parts after the prefix; the longest name must fit SageMaker's limits (tuning 32, others 63).
RUN_ID_LENGTH = 8
JOB_KINDS = {"prepare": "prep", "tuning": "tune", "training": "train", "evaluation": "eval", "model": "model", "endpointConfig": "epc"}
NAME_LIMITS = {"tuning": 32}
DEFAULT_NAME_LIMIT = 63


@dataclass(frozen=True)
class DefinitionSettings:
    config: AppConfig
    images: ImageUris
    execution_role_arn: str
    artifacts_bucket: str
    data_key_arn: str
    code_s3_url: str
    topic_arn: str
    rollback_alarm_name: str

    @property
    def prefix(self) -> str:
        return self.config.name_prefix

    @property
    def distributed(self) -> bool:
        """torchrun across instances: the PyTorch DLC supports it on GPU instances only (DESIGN.md)."""
        return is_gpu_instance(self.config.training_instance_type)

    def s3(self, key: str) -> str:
        return f"s3://{self.artifacts_bucket}/{key}"


def check_name_lengths(prefix: str) -> None:
    """Raise when the longest job name this prefix gives would break a SageMaker name limit."""
    for kind, part in JOB_KINDS.items():
        length = len(prefix) + 1 + len(part) + 1 + RUN_ID_LENGTH
        limit = NAME_LIMITS.get(kind, DEFAULT_NAME_LIMIT)
        if length > limit:
            raise ValueError(
                f"namePrefix {prefix!r} makes {kind} job names {length} characters long; SageMaker allows {limit}. Use a shorter namePrefix"
            )
