"""The pipeline's notifications: an SNS topic (with its own KMS key) that hears about every run and alarm.

The key also encrypts the state machine's log group, so its policy lets CloudWatch (alarm actions) and
CloudWatch Logs (that one log group) use it. Resources are made in the stack's own scope, so their logical
IDs stay those of the deployed stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions

from infra.config import AppConfig
from infra.logs_key import logs_may_encrypt


@dataclass(frozen=True)
class Notifications:
    key: kms.Key
    topic: sns.Topic


def add_notifications(stack: Stack, config: AppConfig, *, log_group_name: str, removal: RemovalPolicy) -> Notifications:
    """The key (for the topic and the state machine's log group `log_group_name`) and the topic, e-mail subscribed if configured."""
    key = kms.Key(
        stack,
        "NotificationsKey",
        description=f"{config.name_prefix}: pipeline notifications and logs",
        enable_key_rotation=True,
        removal_policy=removal,
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        )
    )
    key.add_to_resource_policy(logs_may_encrypt(stack, [log_group_name]))
    topic = sns.Topic(
        stack,
        "Notifications",
        display_name=f"{config.name_prefix} training pipeline",
        master_key=key,
        enforce_ssl=True,
    )
    # enforce_ssl gives the topic a policy that only denies: CloudWatch alarm actions (this stack's and the
    # serving stack's) need an explicit allow, limited to alarms of this account.
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish",
            actions=["sns:Publish"],
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            resources=[topic.topic_arn],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        )
    )
    if config.alarm_email:
        topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
    return Notifications(key, topic)
