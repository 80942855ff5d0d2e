"""The training pipeline: SageMaker roles, code asset, SNS topic, the Step Functions state machine, and the
"Verify bins" state machine that checks inventory records against photos with the model that serves.

The state machine (infra/pipeline/definition.py) prepares the data, tunes, trains on several spot
instances, evaluates, gates and deploys the endpoint `config.endpoint_name`, notifying the topic on
every outcome. docs/pipeline.md explains how to start a run and what the input may contain.
"""

from __future__ import annotations

from urllib.parse import urlparse

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import AppConfig
from infra.pipeline.code_asset import CodeAsset
from infra.pipeline.definition import PipelineDefinition
from infra.pipeline.images import ImageUris, resolve_images
from infra.pipeline.nag_findings import acknowledge_wildcards
from infra.pipeline.notifications import add_notifications
from infra.pipeline.roles import PipelineResources, sagemaker_execution_role, state_machine_role, state_machine_statements
from infra.pipeline.rollback_alarm import add_rollback_alarm
from infra.pipeline.settings import DefinitionSettings, check_name_lengths
from infra.pipeline.state_machine import add_state_machine, log_group_name
from infra.storage_stack import StorageStack
from infra.verification.verify_bins import VerifyBins, VerifyBinsProps


class PipelineStack(Stack):
    """Exposes `.topic` (for the serving stack's alarms), `.state_machine` and `.endpoint_name`."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, storage: StorageStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        check_name_lengths(config.name_prefix)
        removal = RemovalPolicy.DESTROY if config.is_destroy else RemovalPolicy.RETAIN
        self.endpoint_name = config.endpoint_name

        notifications = add_notifications(self, config, log_group_name=log_group_name(config), removal=removal)
        self.notifications_key, self.topic = notifications.key, notifications.topic
        code = CodeAsset(self, "TrainingCode")
        images = resolve_images(config)
        resources = _resources(config, storage, code, images)
        self.execution_role = sagemaker_execution_role(self, "SageMakerExecutionRole", resources)
        self.rollback_alarm = add_rollback_alarm(self, config)
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
        self.state_machine_role = state_machine_role(self, "StateMachineRole", config.name_prefix)
        statements = state_machine_statements(
            self, resources, self.execution_role, self.topic, self.notifications_key, self.rollback_alarm.alarm_arn
        )
        for statement in statements:
            self.state_machine_role.add_to_policy(statement)
        self.state_machine = add_state_machine(
            self,
            config,
            start=definition.start,
            role=self.state_machine_role,
            logs_key=self.notifications_key,
            topic=self.topic,
            removal=removal,
        )

        # The second state machine: inventory records checked against photos in bulk (docs/verification.md).
        self.verify_bins = VerifyBins(
            self,
            "VerifyBins",
            props=VerifyBinsProps(
                settings=settings,
                execution_role=self.execution_role,
                artifacts_bucket=storage.artifacts_bucket,
                data_bucket=storage.data_bucket,
                data_key=storage.key,
                dataset_bucket_name=resources.dataset_bucket_name,
                topic=self.topic,
                notifications_key=self.notifications_key,
                removal=removal,
            ),
        )

        self._outputs(config)
        acknowledge_wildcards(config, execution_role=self.execution_role, state_machine_role=self.state_machine_role)

    def _outputs(self, config: AppConfig) -> None:
        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn, description="start a run: see docs/pipeline.md")
        CfnOutput(
            self,
            "VerifyBinsStateMachineArn",
            value=self.verify_bins.state_machine.state_machine_arn,
            description="verify inventory records against photos: see docs/verification.md",
        )
        CfnOutput(self, "NotificationsTopicArn", value=self.topic.topic_arn)
        CfnOutput(self, "EndpointName", value=config.endpoint_name, description="created by the first successful run")
        CfnOutput(self, "SageMakerExecutionRoleArn", value=self.execution_role.role_arn)


def _resources(config: AppConfig, storage: StorageStack, code: CodeAsset, images: ImageUris) -> PipelineResources:
    """What the roles are scoped to."""
    return PipelineResources(
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
