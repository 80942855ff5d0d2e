"""The serving dashboard and its alarms: API Gateway, the Lambda and the SageMaker endpoint on one page."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.pipeline.layout import VARIANT_NAME

PERIOD = Duration.minutes(5)


@dataclass(frozen=True)
class MonitoringProps:
    api: apigw.RestApi
    stage_name: str
    function: lambda_.Function
    endpoint_name: str
    metrics_namespace: str
    service_name: str
    topic: sns.ITopic
    dashboard_name: str


class ServingMonitoring(Construct):
    """Dashboard + alarms; every alarm (and its recovery) notifies the topic."""

    def __init__(self, scope: Construct, construct_id: str, *, props: MonitoringProps) -> None:
        super().__init__(scope, construct_id)
        api, fn = props.api, props.function
        api_dims = {"ApiName": api.rest_api_name, "Stage": props.stage_name}

        def api_metric(name: str, statistic: str) -> cw.Metric:
            return cw.Metric(namespace="AWS/ApiGateway", metric_name=name, dimensions_map=api_dims, statistic=statistic, period=PERIOD)

        def endpoint_metric(name: str, statistic: str) -> cw.Metric:
            # SageMaker's per-variant metrics; the pipeline deploys a single variant (infra/pipeline/layout.py).
            dims = {"EndpointName": props.endpoint_name, "VariantName": VARIANT_NAME}
            return cw.Metric(namespace="AWS/SageMaker", metric_name=name, dimensions_map=dims, statistic=statistic, period=PERIOD)

        api_4xx, api_5xx = api_metric("4XXError", "Sum"), api_metric("5XXError", "Sum")
        api_latency = api_metric("Latency", "p99")
        lambda_errors = fn.metric_errors(period=PERIOD, statistic="Sum")
        lambda_duration = fn.metric_duration(period=PERIOD, statistic="p99")
        lambda_throttles = fn.metric_throttles(period=PERIOD, statistic="Sum")
        # Powertools' capture_cold_start_metric emits ColdStart with these dimensions.
        cold_starts = cw.Metric(
            namespace=props.metrics_namespace,
            metric_name="ColdStart",
            dimensions_map={"function_name": fn.function_name, "service": props.service_name},
            statistic="Sum",
            period=PERIOD,
        )
        invocations = endpoint_metric("Invocations", "Sum")
        model_latency = endpoint_metric("ModelLatency", "p99")  # microseconds
        model_errors = endpoint_metric("InvocationModelErrors", "Sum")
        endpoint_5xx = endpoint_metric("Invocation5XXErrors", "Sum")

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=props.dashboard_name)
        self.dashboard.add_widgets(
            cw.GraphWidget(title="API requests and errors", left=[api_metric("Count", "Sum"), api_4xx, api_5xx], width=8),
            cw.GraphWidget(title="API latency p99 (ms)", left=[api_latency, api_metric("IntegrationLatency", "p99")], width=8),
            cw.GraphWidget(title="Lambda errors, throttles, cold starts", left=[lambda_errors, lambda_throttles, cold_starts], width=8),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Lambda duration p99 (ms)", left=[lambda_duration], width=8),
            cw.GraphWidget(title="Endpoint invocations and errors", left=[invocations, model_errors, endpoint_5xx], width=8),
            cw.GraphWidget(title="Endpoint model latency p99 (us)", left=[model_latency], width=8),
        )

        action = cw_actions.SnsAction(props.topic)
        self.alarms: list[cw.Alarm] = []
        for name, metric, threshold, description in (
            ("Api5xx", api_5xx, 5, "API answered 5 or more 5xx in 5 minutes: endpoint down, throttled or the Lambda failing"),
            ("ApiLatency", api_latency, 10_000, "API p99 latency above 10 s (API Gateway gives up at 29 s)"),
            ("LambdaErrors", lambda_errors, 1, "the count Lambda crashed or timed out (handled errors are not counted here)"),
            ("LambdaThrottles", lambda_throttles, 1, "the count Lambda was throttled: raise its concurrency or the account limit"),
            ("EndpointModelErrors", model_errors, 1, "the model container answered errors (ModelError)"),
            ("Endpoint5xx", endpoint_5xx, 5, "the SageMaker endpoint answered 5 or more 5xx in 5 minutes"),
        ):
            alarm = metric.create_alarm(
                self,
                name,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms.append(alarm)
