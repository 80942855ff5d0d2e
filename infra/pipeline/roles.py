"""IAM for the pipeline: the SageMaker execution role and the state machine role's statements.

Every statement names the actions the pipeline calls and the resources it calls them on (ARNs from
Stack.format_arn, so other partitions work). The few wildcards AWS leaves no way around are
acknowledged in pipeline_stack.py with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.pipeline.code_asset import CodeAsset
from infra.pipeline.images import ImageUris
from infra.pipeline.input_schema import PRETRAINED_PREFIX
from infra.pipeline.layout import CHECKPOINTS_PREFIX, DATA_CAPTURE_PREFIX, RUNS_PREFIX, SERVING_RECORD_KEY


@dataclass(frozen=True)
class PipelineResources:
    """What the roles are scoped to."""

    name_prefix: str
    endpoint_name: str
    data_bucket: s3.IBucket
    artifacts_bucket: s3.IBucket
    data_key: kms.IKey
    dataset_bucket_name: str  # the public dataset's bucket (read-only), from config.dataset_source
    pretrained_s3_prefix: str | None  # cdk.json pretrainedWeights when it is s3://bucket/prefix/ (read-only)
    code: CodeAsset
    images: ImageUris


def _arn(stack: Stack, service: str, resource: str, name: str, *, account: str | None = None) -> str:
    return stack.format_arn(
        service=service, resource=resource, resource_name=name, account=account, arn_format=ArnFormat.SLASH_RESOURCE_NAME
    )


def _s3_object_arns(bucket: s3.IBucket, prefixes: list[str]) -> list[str]:
    return [bucket.arn_for_objects(f"{prefix}*") for prefix in prefixes]


def sagemaker_execution_role(scope: Construct, construct_id: str, res: PipelineResources) -> iam.Role:
    """The role Processing, training, tuning jobs and the endpoint's model run as."""
    stack = Stack.of(scope)
    role = iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description=f"{res.name_prefix}: SageMaker jobs and model of the training pipeline",
    )
    # The order of the grants is the order of the policy's statements.
    _grant_artifacts(role, res)
    _grant_data_read(role, stack, res)
    _grant_pretrained_read(role, stack, res)
    _grant_data_key(role, res)
    _grant_code_read(role, res)
    _grant_image_pulls(role, stack, res)
    _grant_logs_and_metrics(role, stack, res)
    return role


def _grant_artifacts(role: iam.Role, res: PipelineResources) -> None:
    """Read/write under the run, checkpoint and data-capture prefixes of the artifacts bucket."""
    writable = [RUNS_PREFIX, CHECKPOINTS_PREFIX, DATA_CAPTURE_PREFIX]
    role.add_to_policy(
        iam.PolicyStatement(
            sid="ArtifactsReadWrite",
            actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
            resources=_s3_object_arns(res.artifacts_bucket, writable),
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="ArtifactsList",
            actions=["s3:ListBucket"],
            resources=[res.artifacts_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in writable]}},
        )
    )


def _grant_data_read(role: iam.Role, stack: Stack, res: PipelineResources) -> None:
    """The photos: the user's data bucket (laid out like the public dataset) and the public dataset, read only."""
    role.add_to_policy(iam.PolicyStatement(sid="DataRead", actions=["s3:GetObject"], resources=[res.data_bucket.arn_for_objects("*")]))
    role.add_to_policy(iam.PolicyStatement(sid="DataList", actions=["s3:ListBucket"], resources=[res.data_bucket.bucket_arn]))
    dataset_bucket = f"arn:{stack.partition}:s3:::{res.dataset_bucket_name}"
    role.add_to_policy(
        iam.PolicyStatement(
            sid="PublicDatasetRead", actions=["s3:GetObject", "s3:ListBucket"], resources=[dataset_bucket, f"{dataset_bucket}/*"]
        )
    )


def _grant_data_key(role: iam.Role, res: PipelineResources) -> None:
    """Jobs read and write SSE-KMS objects under the data key; training/tuning outputs name it as KmsKeyId,
    which needs kms:Encrypt (API reference, OutputDataConfig.KmsKeyId); volumes encrypted with it need grants."""
    role.add_to_policy(
        iam.PolicyStatement(
            sid="DataKey",
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey", "kms:CreateGrant"],
            resources=[res.data_key.key_arn],
        )
    )


def _grant_code_read(role: iam.Role, res: PipelineResources) -> None:
    """The code tarball (CDK's asset bucket): that one object, instead of Asset.grant_read's wildcards."""
    code_key = res.code.asset.s3_object_key
    role.add_to_policy(
        iam.PolicyStatement(sid="CodeAsset", actions=["s3:GetObject"], resources=[res.code.asset.bucket.arn_for_objects(code_key)])
    )
    # The Processing jobs' "code" input is an S3Prefix: SageMaker lists the prefix (the object's own key) first.
    role.add_to_policy(
        iam.PolicyStatement(
            sid="CodeAssetList",
            actions=["s3:ListBucket"],
            resources=[res.code.asset.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{code_key}*"]}},
        )
    )


def _grant_image_pulls(role: iam.Role, stack: Stack, res: PipelineResources) -> None:
    """Container images: the DLC account's repositories only. GetAuthorizationToken has no resource."""
    repos = [_arn(stack, "ecr", "repository", repo, account=res.images.registry_account) for repo in res.images.repositories]
    role.add_to_policy(
        iam.PolicyStatement(
            sid="PullImages",
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=repos,
        )
    )
    role.add_to_policy(iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]))


def _grant_logs_and_metrics(role: iam.Role, stack: Stack, res: PipelineResources) -> None:
    """SageMaker's own log groups: the group ARN (CreateLogGroup) and its streams (":*": CreateLogStream, PutLogEvents)."""
    log_groups = [
        stack.format_arn(
            service="logs", resource="log-group", resource_name=f"/aws/sagemaker/{kind}{suffix}", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        # TransformJobs: Verify bins runs Batch Transform on the served model, as the model's (this) role.
        for kind in ("ProcessingJobs", "TrainingJobs", "TransformJobs", "Endpoints/" + res.endpoint_name)
        for suffix in ("", ":*")
    ]
    role.add_to_policy(
        iam.PolicyStatement(
            sid="Logs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=log_groups,
        )
    )
    # PutMetricData has no resource type; the condition keeps it to SageMaker's namespaces.
    role.add_to_policy(
        iam.PolicyStatement(
            sid="Metrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}},
        )
    )


def _grant_pretrained_read(role: iam.Role, stack: Stack, res: PipelineResources) -> None:
    """Read the `pretrained` channel: the artifacts bucket's pretrained/ prefix and cdk.json's pretrainedWeights prefix.

    The execution input's "pretrained" field is checked against exactly these prefixes (input_schema.py). The channel
    is an S3Prefix, so SageMaker lists the prefix first: ListBucket, limited to it by the s3:prefix condition. Objects
    in the artifacts bucket are SSE-KMS under the data key, whose Decrypt the DataKey statement grants.
    """
    role.add_to_policy(
        iam.PolicyStatement(
            sid="PretrainedRead", actions=["s3:GetObject"], resources=[res.artifacts_bucket.arn_for_objects(f"{PRETRAINED_PREFIX}*")]
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="PretrainedList",
            actions=["s3:ListBucket"],
            resources=[res.artifacts_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{PRETRAINED_PREFIX}*"]}},
        )
    )
    if res.pretrained_s3_prefix:
        parsed = urlparse(res.pretrained_s3_prefix)
        bucket_arn = f"arn:{stack.partition}:s3:::{parsed.netloc}"
        key = parsed.path.lstrip("/")
        role.add_to_policy(
            iam.PolicyStatement(sid="PretrainedConfiguredRead", actions=["s3:GetObject"], resources=[f"{bucket_arn}/{key}*"])
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PretrainedConfiguredList",
                actions=["s3:ListBucket"],
                resources=[bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{key}*"]}},
            )
        )


@dataclass(frozen=True)
class _Arns:
    """ARNs of this stack's partition, region and account for the state machine role's statements."""

    stack: Stack
    res: PipelineResources

    def sm(self, resource: str, name: str) -> str:
        return _arn(self.stack, "sagemaker", resource, name)

    def prefixed(self, resource: str) -> str:
        """Every SageMaker resource of this kind that the pipeline names (<prefix>-...)."""
        return self.sm(resource, f"{self.res.name_prefix}-*")

    def rule(self, name: str) -> str:
        return _arn(self.stack, "events", "rule", name)

    @property
    def endpoint(self) -> str:
        return self.sm("endpoint", self.res.endpoint_name)

    @property
    def jobs(self) -> list[str]:
        return [self.prefixed(kind) for kind in ("processing-job", "hyper-parameter-tuning-job", "training-job")]


def state_machine_role(scope: Construct, construct_id: str, name_prefix: str) -> iam.Role:
    """The role the state machine runs as; its statements come from `state_machine_statements`."""
    return iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
        description=f"{name_prefix}: training pipeline state machine",
    )


def state_machine_statements(
    stack: Stack, res: PipelineResources, execution_role: iam.IRole, topic: sns.ITopic, topic_key: kms.IKey, rollback_alarm_arn: str
) -> list[iam.PolicyStatement]:
    """Exactly what the state machine calls (CDK adds its own logging and X-Ray statements).

    tests/infra/test_iam_reference.py checks these against the IAM that CDK's own Step Functions tasks
    generate for the same integrations and against the Step Functions documentation.
    """
    arns = _Arns(stack, res)
    return [
        *_job_statements(arns),
        *_deploy_statements(arns, execution_role),
        *_autoscaling_statements(arns),
        *_artifact_statements(res),
        # A blue/green update with auto-rollback reads the named alarm (DescribeAlarms) before and while it bakes.
        iam.PolicyStatement(sid="RollbackAlarm", actions=["cloudwatch:DescribeAlarms"], resources=[rollback_alarm_arn]),
        iam.PolicyStatement(sid="Notify", actions=["sns:Publish"], resources=[topic.topic_arn]),
        iam.PolicyStatement(sid="NotifyKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[topic_key.key_arn]),
    ]


def _job_statements(arns: _Arns) -> list[iam.PolicyStatement]:
    """Processing, tuning and training jobs with .sync: create, describe, stop, tags, and the managed EventBridge rules."""
    return [
        iam.PolicyStatement(
            sid="ProcessingJobs",
            actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob"],
            resources=[arns.prefixed("processing-job")],
        ),
        iam.PolicyStatement(
            sid="TuningJobs",
            actions=[
                "sagemaker:CreateHyperParameterTuningJob",
                "sagemaker:DescribeHyperParameterTuningJob",
                "sagemaker:StopHyperParameterTuningJob",
                "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
            ],
            resources=[arns.prefixed("hyper-parameter-tuning-job")],
        ),
        iam.PolicyStatement(
            sid="TrainingJobs",
            actions=["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"],
            resources=[arns.prefixed("training-job")],
        ),
        # .sync tags every job it starts (MANAGED_BY_AWS=STARTED_BY_STEP_FUNCTIONS) and reads the tags back;
        # CDK's SageMakerCreateTrainingJob/TransformJob grant both. Scoped to this pipeline's jobs.
        iam.PolicyStatement(sid="SyncJobTags", actions=["sagemaker:AddTags"], resources=arns.jobs),
        # Step Functions reads the tags of what it creates (CDK's createModel/EndpointConfig/Endpoint tasks grant it too).
        iam.PolicyStatement(
            sid="ReadTags",
            actions=["sagemaker:ListTags"],
            resources=[*arns.jobs, arns.prefixed("model"), arns.prefixed("endpoint-config"), arns.endpoint],
        ),
        # .sync: Step Functions learns of job completion through these managed EventBridge rules.
        iam.PolicyStatement(
            sid="SyncRules",
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[
                arns.rule("StepFunctionsGetEventsForSageMakerProcessingJobsRule"),
                arns.rule("StepFunctionsGetEventsForSageMakerTuningJobsRule"),
                arns.rule("StepFunctionsGetEventsForSageMakerTrainingJobsRule"),
            ],
        ),
    ]


def _deploy_statements(arns: _Arns, execution_role: iam.IRole) -> list[iam.PolicyStatement]:
    """The model, its endpoint configs and the endpoint; passing the execution role to SageMaker."""
    return [
        iam.PolicyStatement(sid="Models", actions=["sagemaker:CreateModel"], resources=[arns.prefixed("model")]),
        iam.PolicyStatement(
            sid="EndpointConfigs",
            actions=["sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig"],
            resources=[arns.prefixed("endpoint-config")],
        ),
        iam.PolicyStatement(
            sid="Endpoint",
            actions=["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint"],
            resources=[arns.endpoint, arns.prefixed("endpoint-config")],
        ),
        iam.PolicyStatement(
            sid="PassExecutionRole",
            actions=["iam:PassRole"],
            resources=[execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
    ]


def _autoscaling_statements(arns: _Arns) -> list[iam.PolicyStatement]:
    """Endpoint autoscaling: the scalable target, its policy, the alarms it makes and its service-linked role."""
    stack, endpoint_name = arns.stack, arns.res.endpoint_name
    return [
        # Scalable targets have no ARN before they exist.
        iam.PolicyStatement(
            sid="EndpointAutoscaling",
            actions=["application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy"],
            resources=["*"],
            conditions={"StringEquals": {"application-autoscaling:service-namespace": "sagemaker"}},
        ),
        iam.PolicyStatement(
            sid="AutoscalingNeeds",
            actions=["sagemaker:UpdateEndpointWeightsAndCapacities", "cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms"],
            resources=[
                arns.endpoint,
                stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name=f"TargetTracking-endpoint/{endpoint_name}/*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                ),
            ],
        ),
        iam.PolicyStatement(
            sid="AutoscalingServiceLinkedRole",
            actions=["iam:CreateServiceLinkedRole"],
            resources=[
                stack.format_arn(
                    service="iam",
                    region="",
                    resource="role",
                    resource_name="aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
                )
            ],
            conditions={"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
        ),
    ]


def _artifact_statements(res: PipelineResources) -> list[iam.PolicyStatement]:
    """The evaluation files and the serving record in the artifacts bucket, and the data key they are encrypted with."""
    return [
        iam.PolicyStatement(
            sid="ReadReports",
            actions=["s3:GetObject"],
            resources=[
                res.artifacts_bucket.arn_for_objects(f"{RUNS_PREFIX}*/evaluate/*"),
                res.artifacts_bucket.arn_for_objects(SERVING_RECORD_KEY),
            ],
        ),
        # Without ListBucket, S3 answers AccessDenied instead of NoSuchKey for the absent serving record
        # (a prefix condition would not apply to GetObject, so none is set: it lists names, reads nothing).
        iam.PolicyStatement(sid="ListArtifacts", actions=["s3:ListBucket"], resources=[res.artifacts_bucket.bucket_arn]),
        iam.PolicyStatement(
            sid="WriteServingRecord", actions=["s3:PutObject"], resources=[res.artifacts_bucket.arn_for_objects(SERVING_RECORD_KEY)]
        ),
        # Decrypt/GenerateDataKey: the reports and serving record are SSE-KMS objects. CreateGrant/DescribeKey: the
        # endpoint config's KmsKeyId (volume and data capture) is granted to the caller of CreateEndpoint/UpdateEndpoint.
        iam.PolicyStatement(
            sid="DataKey",
            actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:DescribeKey"],
            resources=[res.data_key.key_arn],
        ),
    ]
