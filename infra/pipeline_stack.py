"""The training pipeline: SageMaker roles, code asset, SNS topic and the Step Functions state machine.

The state machine (infra/pipeline/definition.py) prepares the data, tunes, trains on several spot
instances, evaluates, gates and deploys the endpoint `config.endpoint_name`, notifying the topic on
every outcome. docs/pipeline.md explains how to start a run and what the input may contain.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from aws_cdk import ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import RegexAppliesTo
from constructs import Construct

from infra.config import AppConfig
from infra.nag import acknowledge
from infra.pipeline.code_asset import CodeAsset
from infra.pipeline.definition import PipelineDefinition
from infra.pipeline.images import resolve_images
from infra.pipeline.roles import VARIANT_NAME, PipelineResources, sagemaker_execution_role, state_machine_statements
from infra.pipeline.settings import ENDPOINT_MAX_POLLS, ENDPOINT_POLL_SECONDS, DefinitionSettings, check_name_lengths
from infra.storage_stack import StorageStack


def run_timeout(config: AppConfig) -> Duration:
    """Longest a run may take: tuning rounds, training, two Processing jobs, then the endpoint polls."""
    job_wait = config.max_wait_seconds if config.use_spot else config.max_runtime_seconds
    rounds = -(-config.tuning_max_jobs // config.tuning_max_parallel_jobs)
    seconds = (rounds + 1) * job_wait + 2 * config.max_runtime_seconds + ENDPOINT_MAX_POLLS * ENDPOINT_POLL_SECONDS + 3600
    return Duration.seconds(seconds)


class PipelineStack(Stack):
    """Exposes `.topic` (for the serving stack's alarms), `.state_machine` and `.endpoint_name`."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, storage: StorageStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        check_name_lengths(config.name_prefix)
        removal = RemovalPolicy.DESTROY if config.is_destroy else RemovalPolicy.RETAIN
        self.endpoint_name = config.endpoint_name

        # Notifications and the state machine's logs: their own key, whose policy lets CloudWatch
        # (alarm actions) and CloudWatch Logs use it.
        self.notifications_key = kms.Key(
            self,
            "NotificationsKey",
            description=f"{config.name_prefix}: pipeline notifications and logs",
            enable_key_rotation=True,
            removal_policy=removal,
        )
        self.notifications_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        # CloudWatch Logs puts the log group's ARN in the encryption context; log-group ARNs have a colon
        # before the name (arn:aws:logs:REGION:ACCOUNT:log-group:NAME), so the condition names exactly that.
        state_machine_log_group = f"/aws/vendedlogs/states/{config.name_prefix}-training-pipeline"
        state_machine_log_group_arn = self.format_arn(
            service="logs", resource="log-group", resource_name=state_machine_log_group, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        self.notifications_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LogsEncrypt",
                actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:DescribeKey"],
                principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
                resources=["*"],
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": state_machine_log_group_arn}},
            )
        )
        self.topic = sns.Topic(
            self,
            "Notifications",
            display_name=f"{config.name_prefix} training pipeline",
            master_key=self.notifications_key,
            enforce_ssl=True,
        )
        # enforce_ssl gives the topic a policy that only denies: CloudWatch alarm actions (this stack's and the
        # serving stack's) need an explicit allow, limited to alarms of this account.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                actions=["sns:Publish"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        code = CodeAsset(self, "TrainingCode")
        images = resolve_images(config)
        resources = PipelineResources(
            name_prefix=config.name_prefix,
            endpoint_name=config.endpoint_name,
            data_bucket=storage.data_bucket,
            artifacts_bucket=storage.artifacts_bucket,
            data_key=storage.key,
            dataset_bucket_name=urlparse(config.dataset_source).netloc,
            pretrained_s3_prefix=config.pretrained_s3_prefix,
            code=code,
            images=images,
        )
        self.execution_role = sagemaker_execution_role(self, "SageMakerExecutionRole", resources)

        # The blue/green update watches this alarm while the new fleet bakes and rolls back if it fires.
        self.rollback_alarm = cloudwatch.Alarm(
            self,
            "EndpointRollbackAlarm",
            alarm_name=f"{config.name_prefix}-endpoint-5xx-rollback",
            alarm_description=f"{config.endpoint_name} answers 5xx: a blue/green update in progress rolls back",
            metric=cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name="Invocation5XXErrors",
                dimensions_map={"EndpointName": config.endpoint_name, "VariantName": VARIANT_NAME},
                statistic="Sum",
                period=Duration.minutes(1),
            ),
            threshold=1,
            evaluation_periods=2,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        # SageMaker's deployment-guardrails guide: the execution role must be allowed DescribeAlarms on the
        # auto-rollback alarms (the state machine role, which calls UpdateEndpoint, is allowed too: roles.py).
        self.execution_role.add_to_policy(
            iam.PolicyStatement(sid="RollbackAlarm", actions=["cloudwatch:DescribeAlarms"], resources=[self.rollback_alarm.alarm_arn])
        )

        settings = DefinitionSettings(
            config=config,
            images=images,
            execution_role_arn=self.execution_role.role_arn,
            artifacts_bucket=storage.artifacts_bucket.bucket_name,
            data_key_arn=storage.key.key_arn,
            code_s3_url=code.location.s3_url,
            topic_arn=self.topic.topic_arn,
            rollback_alarm_name=self.rollback_alarm.alarm_name,
        )
        definition = PipelineDefinition(self, "Definition", settings=settings)

        self.state_machine_role = iam.Role(
            self,
            "StateMachineRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{config.name_prefix}: training pipeline state machine",
        )
        statements = state_machine_statements(
            self, resources, self.execution_role, self.topic, self.notifications_key, self.rollback_alarm.alarm_arn
        )
        for statement in statements:
            self.state_machine_role.add_to_policy(statement)

        log_group = logs.LogGroup(
            self,
            "StateMachineLogs",
            log_group_name=state_machine_log_group,
            encryption_key=self.notifications_key,
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=removal,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "TrainingPipeline",
            state_machine_name=f"{config.name_prefix}-training-pipeline",
            definition_body=sfn.DefinitionBody.from_chainable(definition.start),
            role=self.state_machine_role,
            timeout=run_timeout(config),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            removal_policy=removal,
        )

        failed = cloudwatch.Alarm(
            self,
            "FailedRunsAlarm",
            alarm_description="A training pipeline run failed, timed out or was aborted (see the topic's message for the step)",
            metric=cloudwatch.MathExpression(
                expression="failed + timedout + aborted",
                using_metrics={
                    "failed": self.state_machine.metric_failed(period=Duration.minutes(5), statistic="Sum"),
                    "timedout": self.state_machine.metric_timed_out(period=Duration.minutes(5), statistic="Sum"),
                    "aborted": self.state_machine.metric_aborted(period=Duration.minutes(5), statistic="Sum"),
                },
                period=Duration.minutes(5),
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        failed.add_alarm_action(cw_actions.SnsAction(self.topic))

        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn, description="start a run: see docs/pipeline.md")
        CfnOutput(self, "NotificationsTopicArn", value=self.topic.topic_arn)
        CfnOutput(self, "EndpointName", value=config.endpoint_name, description="created by the first successful run")
        CfnOutput(self, "SageMakerExecutionRoleArn", value=self.execution_role.role_arn)
        self._acknowledge(config)

    def _acknowledge(self, config: AppConfig) -> None:
        """Each IAM5 (wildcard) finding acknowledged on its own, matched by a pattern of the finding's resource.

        Storage-stack resources appear as <Artifacts1234ABCD.Arn> or as the cross-stack reference's JSON,
        depending on when cdk-nag resolves them: the patterns accept both.
        """
        prefix = config.name_prefix
        sagemaker_kinds = "processing-job|hyper-parameter-tuning-job|training-job|model|endpoint-config"
        findings = [
            (
                self.execution_role,
                r"Resource::\*",
                "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource type (PutMetricData is limited to SageMaker namespaces by condition)",
            ),
            (
                self.execution_role,
                r"Resource::.*Artifacts[0-9A-F]{8}.*/(runs|checkpoints|datacapture)/\*",
                "jobs write per-run keys under the run, checkpoint and data-capture prefixes of the artifacts bucket, named at run time",
            ),
            (
                self.execution_role,
                r"Resource::.*Data[0-9A-F]{8}.*/\*",
                "read-only access to the user's own photos in the data bucket, any key the execution input names",
            ),
            (
                self.execution_role,
                r"Resource::arn:.*:s3:::[a-z0-9.-]+/\*",
                "read-only access to the public dataset bucket (cdk.json datasetSource): any photo id of the file list",
            ),
            (
                self.execution_role,
                r"Resource::.*Artifacts[0-9A-F]{8}.*/pretrained/\*",
                "read-only: the pretrained channel may name any object under the artifacts bucket's pretrained/ prefix",
            ),
            (
                self.execution_role,
                r"Resource::arn:.*:logs:.*:log-group:/aws/sagemaker/.*:\*",
                "SageMaker writes one log stream per job/instance inside its own log groups",
            ),
            (
                self.state_machine_role,
                rf"Resource::arn:.*:sagemaker:.*:({sagemaker_kinds})/{prefix}-\*",
                "job, model and endpoint-config names are derived per run under the name prefix",
            ),
            (
                self.state_machine_role,
                r"Resource::\*",
                "scalable targets have no ARN before they exist (condition: sagemaker namespace); CDK's log-delivery and X-Ray statements have no resource type",
            ),
            (
                self.state_machine_role,
                r"Resource::arn:.*:cloudwatch:.*:alarm:TargetTracking-endpoint/.*/\*",
                "Application Auto Scaling names the target-tracking alarms it creates for the endpoint",
            ),
            (
                self.state_machine_role,
                r"Resource::.*Artifacts[0-9A-F]{8}.*/runs/\*/evaluate/\*",
                "each run's evaluation report lives under its own run id",
            ),
        ]
        if config.pretrained_s3_prefix:
            bucket, _, key = config.pretrained_s3_prefix.removeprefix("s3://").partition("/")
            findings.append(
                (
                    self.execution_role,
                    rf"Resource::arn:.*:s3:::{re.escape(bucket)}/{re.escape(key)}\*",
                    "read-only: the pretrained channel may name any object under cdk.json's pretrainedWeights prefix",
                )
            )
        for role, pattern, reason in findings:
            acknowledge(role, "AwsSolutions-IAM5", reason, applies_to=[RegexAppliesTo(regex=f"/^{pattern}$/g")])
