"""The state machine itself: its encrypted log group, the machine (definition, role, timeout, tracing) and the
alarm on failed, timed-out or aborted runs, which notifies the topic.

Resources are made in the stack's own scope, so their logical IDs stay those of the deployed stack.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn

from infra.config import AppConfig
from infra.pipeline.settings import ENDPOINT_MAX_POLLS, ENDPOINT_POLL_SECONDS


def state_machine_name(config: AppConfig) -> str:
    return f"{config.name_prefix}-training-pipeline"


def log_group_name(config: AppConfig) -> str:
    """Under /aws/vendedlogs/, the prefix AWS advises for Step Functions logs (CloudWatch Logs' resource policy stays small)."""
    return f"/aws/vendedlogs/states/{state_machine_name(config)}"


def run_timeout(config: AppConfig) -> Duration:
    """Longest a run may take: tuning rounds, training, two Processing jobs, then the endpoint polls."""
    job_wait = config.max_wait_seconds if config.use_spot else config.max_runtime_seconds
    rounds = -(-config.tuning_max_jobs // config.tuning_max_parallel_jobs)
    seconds = (rounds + 1) * job_wait + 2 * config.max_runtime_seconds + ENDPOINT_MAX_POLLS * ENDPOINT_POLL_SECONDS + 3600
    return Duration.seconds(seconds)


def add_state_machine(
    stack: Stack,
    config: AppConfig,
    *,
    start: sfn.IChainable,
    role: iam.IRole,
    logs_key: kms.IKey,
    topic: sns.ITopic,
    removal: RemovalPolicy,
) -> sfn.StateMachine:
    """The training pipeline state machine, logging every execution (with data) to its own encrypted group."""
    log_group = logs.LogGroup(
        stack,
        "StateMachineLogs",
        log_group_name=log_group_name(config),
        encryption_key=logs_key,
        retention=logs.RetentionDays.ONE_YEAR,
        removal_policy=removal,
    )
    machine = sfn.StateMachine(
        stack,
        "TrainingPipeline",
        state_machine_name=state_machine_name(config),
        definition_body=sfn.DefinitionBody.from_chainable(start),
        role=role,
        timeout=run_timeout(config),
        tracing_enabled=True,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        removal_policy=removal,
    )
    _alarm_on_failed_runs(stack, machine, topic)
    return machine


def _alarm_on_failed_runs(stack: Stack, machine: sfn.StateMachine, topic: sns.ITopic) -> cloudwatch.Alarm:
    """Any failed, timed-out or aborted run in 5 minutes notifies the topic (the run's own message names the step)."""
    period = Duration.minutes(5)
    alarm = cloudwatch.Alarm(
        stack,
        "FailedRunsAlarm",
        alarm_description="A training pipeline run failed, timed out or was aborted (see the topic's message for the step)",
        metric=cloudwatch.MathExpression(
            expression="failed + timedout + aborted",
            using_metrics={
                "failed": machine.metric_failed(period=period, statistic="Sum"),
                "timedout": machine.metric_timed_out(period=period, statistic="Sum"),
                "aborted": machine.metric_aborted(period=period, statistic="Sum"),
            },
            period=period,
        ),
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    alarm.add_alarm_action(cw_actions.SnsAction(topic))
    return alarm
