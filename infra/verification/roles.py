"""Verify bins IAM: the state machine role's statements (exactly what its states call), the jobs' grants under
verify/ on the pipeline's SageMaker execution role, and the cdk-nag acknowledgments of the wildcards."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from cdk_nag import RegexAppliesTo

from infra.nag import acknowledge
from infra.pipeline.layout import SERVING_RECORD_KEY
from infra.verification import jobs
from infra.verification.props import VerifyBinsProps


def grant_jobs_role(props: VerifyBinsProps) -> None:
    """The Processing jobs and Batch Transform (which runs as the model's role) write and read under verify/ only.

    Photos and records are read where the input check allows them: the data bucket and the dataset bucket, which
    the role already reads for the training pipeline's Prepare step.
    """
    bucket = props.artifacts_bucket
    props.execution_role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="VerifyReadWrite",
            actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[bucket.arn_for_objects(f"{jobs.VERIFY_PREFIX}*")],
        )
    )
    props.execution_role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="VerifyList",
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{jobs.VERIFY_PREFIX}*"]}},
        )
    )


def state_machine_statements(stack: Stack, props: VerifyBinsProps) -> list[iam.PolicyStatement]:
    """Exactly what the Verify bins states call (CDK adds its own logging and X-Ray statements).

    tests/verification/test_verify_bins_iam.py checks them against CDK's own SageMakerCreateTransformJob task,
    the Step Functions documentation for createProcessingJob.sync and, for the failure path's
    DescribeProcessingJob / DescribeTransformJob of the job that failed, CDK's CallAwsService.
    """
    prefix = props.settings.prefix

    def sm(resource: str, part: str) -> str:
        return stack.format_arn(
            service="sagemaker", resource=resource, resource_name=f"{prefix}-{part}-*", arn_format=ArnFormat.SLASH_RESOURCE_NAME
        )

    def rule(name: str) -> str:
        return stack.format_arn(service="events", resource="rule", resource_name=name, arn_format=ArnFormat.SLASH_RESOURCE_NAME)

    processing = [sm("processing-job", jobs.JOB_PARTS["prepare"]), sm("processing-job", jobs.JOB_PARTS["report"])]
    transform = [sm("transform-job", jobs.JOB_PARTS["transform"])]
    bucket = props.artifacts_bucket
    # Describe*: .sync polls the job, and the failure path describes a failed job for its FailureReason.
    return [
        iam.PolicyStatement(
            sid="ProcessingJobs",
            actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob"],
            resources=processing,
        ),
        iam.PolicyStatement(
            sid="TransformJobs",
            actions=["sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob", "sagemaker:StopTransformJob"],
            resources=transform,
        ),
        # .sync tags every job it starts and reads the tags back (CDK's SageMakerCreateTransformJob grants both).
        iam.PolicyStatement(sid="SyncJobTags", actions=["sagemaker:AddTags"], resources=[*processing, *transform]),
        # CDK's transform task grants ListTags on "*": here on the jobs and the models this pipeline creates.
        iam.PolicyStatement(sid="ReadTags", actions=["sagemaker:ListTags"], resources=[*processing, *transform, sm("model", "model")]),
        iam.PolicyStatement(
            sid="SyncRules",
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[
                rule("StepFunctionsGetEventsForSageMakerProcessingJobsRule"),
                rule("StepFunctionsGetEventsForSageMakerTransformJobsRule"),
            ],
        ),
        iam.PolicyStatement(
            sid="PassExecutionRole",
            actions=["iam:PassRole"],
            resources=[props.execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
        iam.PolicyStatement(
            sid="ReadServingRecordAndSummary",
            actions=["s3:GetObject"],
            resources=[bucket.arn_for_objects(SERVING_RECORD_KEY), bucket.arn_for_objects(f"{jobs.VERIFY_PREFIX}*/report/summary.json")],
        ),
        # Without ListBucket, S3 answers AccessDenied instead of NoSuchKey for an absent serving record.
        iam.PolicyStatement(sid="ListArtifacts", actions=["s3:ListBucket"], resources=[bucket.bucket_arn]),
        # Decrypt: the record and summary are SSE-KMS objects. CreateGrant/DescribeKey: the jobs' KmsKeyId/VolumeKmsKeyId.
        iam.PolicyStatement(
            sid="DataKey",
            actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:DescribeKey"],
            resources=[props.data_key.key_arn],
        ),
        iam.PolicyStatement(sid="Notify", actions=["sns:Publish"], resources=[props.topic.topic_arn]),
        iam.PolicyStatement(sid="NotifyKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[props.notifications_key.key_arn]),
    ]


def acknowledge_wildcards(prefix: str, *, execution_role: iam.IRole, state_machine_role: iam.IRole) -> None:
    """Each wildcard AWS leaves no way around, acknowledged on its own (infra/pipeline/nag_findings.py explains the patterns)."""
    findings = [
        (
            execution_role,
            r"Resource::.*Artifacts[0-9A-F]{8}.*/verify/\*",
            "Verify bins jobs read and write per-run keys under verify/<id>/",
        ),
        (
            state_machine_role,
            rf"Resource::arn:.*:sagemaker:.*:(processing-job|transform-job|model)/{prefix}-(vprep|vrep|vbt|model)-\*",
            "job names are derived per run (a fresh id) under the name prefix",
        ),
        (
            state_machine_role,
            r"Resource::.*Artifacts[0-9A-F]{8}.*/verify/\*/report/summary.json",
            "each run's summary lives under its own id",
        ),
        (state_machine_role, r"Resource::\*", "CDK's log-delivery and X-Ray statements have no resource type"),
    ]
    for role, pattern, reason in findings:
        acknowledge(role, "AwsSolutions-IAM5", reason, applies_to=[RegexAppliesTo(regex=f"/^{pattern}$/g")])
