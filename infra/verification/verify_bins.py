"""The "Verify bins" state machine: inventory records checked against bin photos in bulk (docs/verification.md).

Started from the console like the training pipeline, with {"photos": "s3://bucket/prefix/"} and optionally
"records" (a CSV s3:// URI), "instanceType", "instanceCount". The states are in definition.py, the IAM in roles.py.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.logs_key import logs_may_encrypt
from infra.verification import jobs
from infra.verification.definition import VerifyBinsDefinition
from infra.verification.props import VerifyBinsProps
from infra.verification.roles import acknowledge_wildcards, grant_jobs_role, state_machine_statements

__all__ = ["VerifyBins", "VerifyBinsProps"]


class VerifyBins(Construct):
    """The state machine, its role (exactly what its states call), its encrypted log group, and the S3 grants that
    the jobs' role (the training pipeline's SageMaker execution role, also the serving model's) needs under verify/."""

    def __init__(self, scope: Construct, construct_id: str, *, props: VerifyBinsProps) -> None:
        super().__init__(scope, construct_id)
        s = props.settings
        jobs.check_name_lengths(s.prefix)
        grant_jobs_role(props)
        definition = VerifyBinsDefinition(self, "Definition", props=props)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{s.prefix}: the Verify bins state machine",
        )
        for statement in state_machine_statements(Stack.of(self), props):
            self.role.add_to_policy(statement)
        acknowledge_wildcards(s.prefix, execution_role=props.execution_role, state_machine_role=self.role)
        name = f"{s.prefix}-verify-bins"
        log_group_name = f"/aws/vendedlogs/states/{name}"
        props.notifications_key.add_to_resource_policy(logs_may_encrypt(Stack.of(self), [log_group_name], sid="VerifyBinsLogsEncrypt"))
        log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=log_group_name,
            encryption_key=props.notifications_key,
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=props.removal,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=name,
            definition_body=sfn.DefinitionBody.from_chainable(definition.start),
            role=self.role,
            # Three jobs, each bounded by maxRuntimeSeconds, plus the S3 and SNS calls.
            timeout=Duration.seconds(3 * s.config.max_runtime_seconds + 3600),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            removal_policy=props.removal,
        )
