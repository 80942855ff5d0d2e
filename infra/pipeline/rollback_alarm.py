"""The alarm a blue/green endpoint update watches while the new fleet bakes: it rolls the update back if it fires.

Made in the stack's own scope, so its logical ID stays that of the deployed stack.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch

from infra.config import AppConfig
from infra.pipeline.layout import VARIANT_NAME


def add_rollback_alarm(stack: Stack, config: AppConfig) -> cloudwatch.Alarm:
    """5xx answers from the endpoint's variant in two consecutive minutes."""
    return cloudwatch.Alarm(
        stack,
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
