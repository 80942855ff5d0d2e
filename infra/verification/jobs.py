"""Names, S3 locations and SageMaker Parameters of the "Verify bins" state machine's three jobs.

Paths read the state document that verify_bins.py builds:
  $.settings  the execution input merged over the defaults (photos, records, instanceType, instanceCount)
  $.names     job names derived from the verify id; $.paths the run's S3 locations under verify/<id>/
  $.serving   the serving record (the model the endpoint serves: Batch Transform runs that model)
"""

from __future__ import annotations

from typing import Any

import verification
import verify_prepare
import verify_report

from infra.pipeline.sagemaker_params import processing_input, processing_job
from infra.pipeline.settings import DefinitionSettings

VERIFY_PREFIX = "verify/"
# Job name parts: {prefix}-{part}-{8 hex}; SageMaker allows 63 characters for processing and transform jobs.
JOB_PARTS = {"prepare": "vprep", "transform": "vbt", "report": "vrep"}
NAME_LIMIT = 63
# One batch file is one request of SingleRecord Batch Transform: 64 photos x 150 KB (uint8 224x224x3) = 9.6 MB.
MAX_PAYLOAD_MB = 16
BATCH_CONTENT_TYPE = "application/x-npy"


def check_name_lengths(prefix: str) -> None:
    for kind, part in JOB_PARTS.items():
        length = len(prefix) + 1 + len(part) + 1 + 8
        if length > NAME_LIMIT:
            raise ValueError(
                f"namePrefix {prefix!r} makes Verify bins {kind} job names {length} characters long; SageMaker allows {NAME_LIMIT}"
            )


def names(prefix: str) -> dict[str, str]:
    return {f"{kind}.$": f"States.Format('{prefix}-{part}-{{}}', $.verify.id)" for kind, part in JOB_PARTS.items()}


def paths(artifacts_bucket: str) -> dict[str, str]:
    def uri(key: str) -> str:
        return f"States.Format('s3://{artifacts_bucket}/{VERIFY_PREFIX}{{}}/{key}', $.verify.id)"

    return {
        "prepared.$": uri("prepared/"),
        "batches.$": uri("prepared/batches/"),
        "records.$": uri("prepared/records/"),
        "predictions.$": uri("predictions/"),
        "report.$": uri("report/"),
    }


def prepare_job(s: DefinitionSettings) -> dict[str, Any]:
    """verify_prepare.py reads the photos and records straight from S3 (no copy of the prefix onto the volume)."""
    arguments = (
        f"States.Array('--source', $.settings.photos, '--records', $.settings.records, '--output', '{verify_prepare.PROCESSING_OUTPUT}')"
    )
    return processing_job(
        s,
        "$.names.prepare",
        'exec python3 verify_prepare.py "$@"',
        arguments,
        [],
        "prepared",
        verify_prepare.PROCESSING_OUTPUT,
        "$.paths.prepared",
    )


def transform_job(s: DefinitionSettings) -> dict[str, Any]:
    """SageMaker Batch Transform on the serving model: one batch file per request, replies beside them as <batch>.out."""
    return {
        "TransformJobName.$": "$.names.transform",
        "ModelName.$": "$.serving.record.model",
        "BatchStrategy": "SingleRecord",
        "MaxConcurrentTransforms": 1,
        "MaxPayloadInMB": MAX_PAYLOAD_MB,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.paths.batches"}},
            "ContentType": BATCH_CONTENT_TYPE,
            "SplitType": "None",
        },
        "TransformOutput": {
            "S3OutputPath.$": "$.paths.predictions",
            "Accept": "application/json",
            "AssembleWith": "None",
            "KmsKeyId": s.data_key_arn,
        },
        "TransformResources": {
            "InstanceType.$": "$.settings.instanceType",
            "InstanceCount.$": "$.settings.instanceCount",
            "VolumeKmsKeyId": s.data_key_arn,
        },
        # inference.py's model_fn reads it: one view (4x less compute) or the model's test-time flips too
        "Environment": {f"{verification.VIEWS_ENV}.$": "$.settings.views"},
    }


def report_job(s: DefinitionSettings) -> dict[str, Any]:
    cfg = s.config
    arguments = (
        "States.Array('--source', $.settings.photos, "
        f"'--match-threshold', '{cfg.verify_match_threshold:g}', '--mismatch-threshold', '{cfg.verify_mismatch_threshold:g}', "
        f"'--predictions', '{verify_report.PROCESSING_PREDICTIONS}', '--records', '{verify_report.PROCESSING_RECORDS}', "
        f"'--output', '{verify_report.PROCESSING_OUTPUT}')"
    )
    inputs = [
        processing_input("predictions", "$.paths.predictions", verify_report.PROCESSING_PREDICTIONS),
        processing_input("records", "$.paths.records", verify_report.PROCESSING_RECORDS),
    ]
    return processing_job(
        s,
        "$.names.report",
        'exec python3 verify_report.py "$@"',
        arguments,
        inputs,
        "report",
        verify_report.PROCESSING_OUTPUT,
        "$.paths.report",
    )
