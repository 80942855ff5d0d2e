"""The training pipeline: SageMaker roles, code asset, SNS topic and the Step Functions state machine.

The state machine (infra/pipeline/definition.py) prepares the data, tunes, trains on several spot
instances, evaluates, gates and deploys the endpoint `config.endpoint_name`, notifying the topic on
every outcome. docs/pipeline.md explains how to start a run and what the input may contain.
"""

from __future__ import annotations

from urllib.parse import urlparse

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
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
            self, "NotificationsKey", description=f"{config.name_prefix}: pipeline notifications and logs", enable_key_rotation=True, removal_policy=removal
        )
        self.notifications_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        self.notifications_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LogsEncrypt",
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
                resources=["*"],
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": self.format_arn(service="logs", resource="log-group", resource_name="*")}},
            )
        )
        self.topic = sns.Topic(
            self, "Notifications", display_name=f"{config.name_prefix} training pipeline", master_key=self.notifications_key, enforce_ssl=True
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
            self, "StateMachineRole", assumed_by=iam.ServicePrincipal("states.amazonaws.com"), description=f"{config.name_prefix}: training pipeline state machine"
        )
        for statement in state_machine_statements(self, resources, self.execution_role, self.topic, self.notifications_key):
            self.state_machine_role.add_to_policy(statement)

        log_group = logs.LogGroup(
            self,
            "StateMachineLogs",
            log_group_name=f"/aws/vendedlogs/states/{config.name_prefix}-training-pipeline",
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
        self._acknowledge()

    def _acknowledge(self) -> None:
        acknowledge(
            self.execution_role,
            "AwsSolutions-IAM5",
            "Wildcards only where AWS leaves no narrower form: ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource "
            "type (PutMetricData is limited to SageMaker namespaces by condition); objects under the run/checkpoint/data-capture "
            "prefixes and SageMaker's own log groups are named per job at run time; the code asset grant is CDK's.",
        )
        acknowledge(
            self.state_machine_role,
            "AwsSolutions-IAM5",
            "Job, model and config names are derived per run under the name prefix (prefix-*); scalable targets have no ARN "
            "(limited to the sagemaker namespace by condition); target-tracking alarm names are chosen by Application Auto Scaling; "
            "evaluation reports live under per-run keys; CDK adds the log-delivery and X-Ray statements, which have no resource type.",
        )
