"""The pipeline roles' wildcard resources that AWS leaves no way around, each acknowledged with its reason.

Each IAM5 finding is acknowledged on its own, matched by a pattern of the finding's resource. Storage-stack
resources appear as <Artifacts1234ABCD.Arn> or as the cross-stack reference's JSON, depending on when cdk-nag
resolves them: the patterns accept both.
"""

from __future__ import annotations

import re

from aws_cdk import aws_iam as iam
from cdk_nag import RegexAppliesTo

from infra.config import AppConfig
from infra.nag import acknowledge


def acknowledge_wildcards(config: AppConfig, *, execution_role: iam.Role, state_machine_role: iam.Role) -> None:
    findings = [
        *((execution_role, pattern, reason) for pattern, reason in _execution_role_findings(config)),
        *((state_machine_role, pattern, reason) for pattern, reason in _state_machine_role_findings(config)),
    ]
    for role, pattern, reason in findings:
        acknowledge(role, "AwsSolutions-IAM5", reason, applies_to=[RegexAppliesTo(regex=f"/^{pattern}$/g")])


def _execution_role_findings(config: AppConfig) -> list[tuple[str, str]]:
    findings = [
        (
            r"Resource::\*",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource type (PutMetricData is limited to SageMaker namespaces by condition)",
        ),
        (
            r"Resource::.*Artifacts[0-9A-F]{8}.*/(runs|checkpoints|datacapture)/\*",
            "jobs write per-run keys under the run, checkpoint and data-capture prefixes of the artifacts bucket, named at run time",
        ),
        (
            r"Resource::.*Data[0-9A-F]{8}.*/\*",
            "read-only access to the user's own photos in the data bucket, any key the execution input names",
        ),
        (
            r"Resource::arn:.*:s3:::[a-z0-9.-]+/\*",
            "read-only access to the public dataset bucket (cdk.json datasetSource): any photo id of the file list",
        ),
        (
            r"Resource::.*Artifacts[0-9A-F]{8}.*/pretrained/\*",
            "read-only: the pretrained channel may name any object under the artifacts bucket's pretrained/ prefix",
        ),
        (
            r"Resource::arn:.*:logs:.*:log-group:/aws/sagemaker/.*:\*",
            "SageMaker writes one log stream per job/instance inside its own log groups",
        ),
    ]
    if config.pretrained_s3_prefix:
        bucket, _, key = config.pretrained_s3_prefix.removeprefix("s3://").partition("/")
        findings.append(
            (
                rf"Resource::arn:.*:s3:::{re.escape(bucket)}/{re.escape(key)}\*",
                "read-only: the pretrained channel may name any object under cdk.json's pretrainedWeights prefix",
            )
        )
    return findings


def _state_machine_role_findings(config: AppConfig) -> list[tuple[str, str]]:
    sagemaker_kinds = "processing-job|hyper-parameter-tuning-job|training-job|model|endpoint-config"
    return [
        (
            rf"Resource::arn:.*:sagemaker:.*:({sagemaker_kinds})/{config.name_prefix}-\*",
            "job, model and endpoint-config names are derived per run under the name prefix",
        ),
        (
            r"Resource::\*",
            "scalable targets have no ARN before they exist (condition: sagemaker namespace); CDK's log-delivery and X-Ray statements have no resource type",
        ),
        (
            r"Resource::arn:.*:cloudwatch:.*:alarm:TargetTracking-endpoint/.*/\*",
            "Application Auto Scaling names the target-tracking alarms it creates for the endpoint",
        ),
        (r"Resource::.*Artifacts[0-9A-F]{8}.*/runs/\*/evaluate/\*", "each run's evaluation report lives under its own run id"),
    ]
