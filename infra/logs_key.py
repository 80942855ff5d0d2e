"""The one key-policy statement that lets CloudWatch Logs use a KMS key for named log groups."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam


def logs_may_encrypt(stack: Stack, log_group_names: list[str], *, sid: str = "LogsEncrypt") -> iam.PolicyStatement:
    """CloudWatch Logs may use the key for exactly these log groups.

    CloudWatch Logs puts the log group's ARN in the encryption context; log-group ARNs have a colon before the
    name (arn:aws:logs:REGION:ACCOUNT:log-group:NAME), so the condition names exactly that.
    """
    arns = [
        stack.format_arn(service="logs", resource="log-group", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME)
        for name in log_group_names
    ]
    return iam.PolicyStatement(
        sid=sid,
        actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:DescribeKey"],
        principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
        resources=["*"],
        conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": arns[0] if len(arns) == 1 else arns}},
    )
