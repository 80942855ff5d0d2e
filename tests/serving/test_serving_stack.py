"""Serving stack template: binary media types, API key + usage plan, the exact InvokeEndpoint resource,
alarms wired to the topic (a cross-stack reference from a tiny test stack), dashboard, cdk-nag clean."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template
from count_api.settings import ApiSettings, Variable, endpoint_name_for, function_environment

from infra.config import config_from_mapping
from infra.nag import apply_nag
from infra.serving_stack import ServingStack
from tests.nag_findings import nag_findings

ENV = cdk.Environment(account="111111111111", region="us-east-1")


def build(context: dict) -> tuple[ServingStack, cdk.Stack]:
    app = cdk.App()
    topic_stack = cdk.Stack(app, "topic", env=ENV)
    topic = sns.Topic(topic_stack, "Alarms", enforce_ssl=True)
    stack = ServingStack(app, "serving", config=config_from_mapping(context), topic=topic, env=ENV)
    apply_nag(app)
    app.synth()
    return stack, topic_stack


@pytest.fixture(scope="module")
def built(default_context) -> tuple[ServingStack, Template]:
    stack, _ = build(default_context)
    return stack, Template.from_stack(stack)


@pytest.fixture(scope="module")
def template(built) -> Template:
    return built[1]


def test_binary_media_types_and_regional_api(template):
    template.has_resource_properties(
        "AWS::ApiGateway::RestApi", {"BinaryMediaTypes": ["image/jpeg", "image/png"], "EndpointConfiguration": {"Types": ["REGIONAL"]}}
    )


def _root_methods(template) -> tuple[dict, dict]:
    """(methods on the API's root resource, the others)."""
    methods = template.find_resources("AWS::ApiGateway::Method")
    api_id = next(iter(template.find_resources("AWS::ApiGateway::RestApi")))
    root = {"Fn::GetAtt": [api_id, "RootResourceId"]}
    on_root = {k: m for k, m in methods.items() if m["Properties"]["ResourceId"] == root}
    return on_root, {k: m for k, m in methods.items() if k not in on_root}


def test_every_data_method_requires_the_api_key(template):
    on_root, others = _root_methods(template)
    assert sorted(m["Properties"]["HttpMethod"] for m in others.values()) == ["GET", "POST"]
    assert all(m["Properties"]["ApiKeyRequired"] is True for m in others.values())


def test_the_page_is_get_on_the_root_without_a_key_proxied_to_the_function(template):
    on_root, _ = _root_methods(template)
    assert len(on_root) == 1, on_root
    (page,) = on_root.values()
    properties = page["Properties"]
    assert properties["HttpMethod"] == "GET" and properties["AuthorizationType"] == "NONE" and properties["ApiKeyRequired"] is False
    assert properties["Integration"]["Type"] == "AWS_PROXY"
    function_id = next(iter(template.find_resources("AWS::Lambda::Function")))
    assert function_id in json.dumps(properties["Integration"]["Uri"])
    # checkov's open-access finding is acknowledged on exactly this method, with a reason.
    skips = page["Metadata"]["checkov"]["skip"]
    assert [s["id"] for s in skips] == ["CKV_AWS_59"] and "static" in skips[0]["comment"]


def test_binary_media_types_leave_the_page_as_text(template):
    # API Gateway converts a response to binary only for a binary media type (matched against the first
    # Accept value); text/html must not be one, nor a wildcard that would cover it.
    (api,) = template.find_resources("AWS::ApiGateway::RestApi").values()
    types = api["Properties"]["BinaryMediaTypes"]
    assert not any(t.startswith(("text/", "*")) or t.endswith("/*") for t in types), types


def test_usage_plan_throttle_and_quota_from_config(template, default_context):
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": default_context["apiThrottleRateLimit"], "BurstLimit": default_context["apiThrottleBurstLimit"]},
            "Quota": {"Limit": default_context["apiQuotaPerDay"], "Period": "DAY"},
        },
    )
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)


def test_stage_throttles_traces_and_writes_access_logs(template, default_context):
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "prod",
            "TracingEnabled": True,
            "AccessLogSetting": {"DestinationArn": Match.any_value(), "Format": Match.string_like_regexp("requestId")},
            "MethodSettings": Match.array_with(
                [Match.object_like({"ThrottlingRateLimit": default_context["apiThrottleRateLimit"], "DataTraceEnabled": False})]
            ),
        },
    )


def test_count_method_validates_content_type_and_batch_body(template, default_context):
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "RequestParameters": {"method.request.header.Content-Type": True},
            "RequestValidatorId": Match.any_value(),
            "RequestModels": {"application/json": Match.any_value()},
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::Model",
        {
            "Schema": Match.object_like(
                {"properties": {"images": {"type": "array", "minItems": 1, "maxItems": default_context["maxImagesPerRequest"]}}}
            )
        },
    )


def test_gateway_errors_use_the_api_error_shape(template):
    responses = template.find_resources("AWS::ApiGateway::GatewayResponse")
    types = {r["Properties"]["ResponseType"] for r in responses.values()}
    assert {"INVALID_API_KEY", "THROTTLED", "QUOTA_EXCEEDED", "BAD_REQUEST_BODY", "REQUEST_TOO_LARGE"} <= types
    for response in responses.values():
        assert response["Properties"]["ResponseTemplates"]["application/json"].startswith('{"error": {"code": "')


def test_invoke_endpoint_is_allowed_on_exactly_the_one_endpoint(template, default_context):
    endpoint = f"{default_context['namePrefix']}-count-endpoint"
    policies = template.find_resources("AWS::IAM::Policy")
    sagemaker = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"] if "sagemaker" in str(s["Action"])]
    assert len(sagemaker) == 1
    statement = sagemaker[0]
    assert sorted(statement["Action"]) == ["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"]
    assert statement["Resource"] == {
        "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":sagemaker:us-east-1:111111111111:endpoint/{endpoint}"]]
    }


def test_function_runtime_architecture_and_environment(template, default_context):
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.13",
            "Architectures": ["x86_64"],
            "Handler": "handler.lambda_handler",
            "TracingConfig": {"Mode": "Active"},
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "ENDPOINT_NAME": f"{default_context['namePrefix']}-count-endpoint",
                        "MAX_IMAGES_PER_REQUEST": str(default_context["maxImagesPerRequest"]),
                        "REVIEW_CONFIDENCE_THRESHOLD": str(default_context["reviewConfidenceThreshold"]),
                        "VERIFY_MATCH_THRESHOLD": str(float(default_context["verifyMatchThreshold"])),
                        "VERIFY_MISMATCH_THRESHOLD": str(float(default_context["verifyMismatchThreshold"])),
                    }
                )
            },
        },
    )


def test_the_function_environment_is_exactly_the_contracts(template, default_context):
    # Every variable the stack sets comes from count_api/settings.py, with the invoke limits at the function's defaults.
    config = config_from_mapping(default_context)
    expected = function_environment(
        ApiSettings(
            endpoint_name=endpoint_name_for(config.name_prefix),
            max_images_per_request=config.max_images_per_request,
            review_confidence_threshold=config.review_confidence_threshold,
            verify_match_threshold=config.verify_match_threshold,
            verify_mismatch_threshold=config.verify_mismatch_threshold,
        )
    )
    (function,) = template.find_resources("AWS::Lambda::Function").values()
    assert function["Properties"]["Environment"]["Variables"] == expected
    assert set(expected) == {v.value for v in Variable} - {"MAX_BODY_BYTES", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_TRACE_DISABLED"}


def test_every_alarm_notifies_the_topic_from_the_other_stack(template):
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 6
    metrics = {a["Properties"]["MetricName"] for a in alarms.values()}
    assert {"5XXError", "Errors", "InvocationModelErrors"} <= metrics
    for alarm in alarms.values():
        for actions in (alarm["Properties"]["AlarmActions"], alarm["Properties"]["OKActions"]):
            assert len(actions) == 1 and "topic" in str(actions[0]).lower()  # a cross-stack import of the topic's ARN


def test_dashboard_covers_api_lambda_and_endpoint(template):
    dashboards = template.find_resources("AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    body = str(next(iter(dashboards.values()))["Properties"]["DashboardBody"])
    for metric in (
        "4XXError",
        "5XXError",
        "Latency",
        "Errors",
        "Duration",
        "ColdStart",
        "Invocations",
        "ModelLatency",
        "InvocationModelErrors",
    ):
        assert f'\\"{metric}\\"' in body or f'"{metric}"' in body, metric


def test_outputs(template):
    outputs = template.find_outputs("*")
    assert {"ApiUrl", "ApiKeyId", "DashboardName", "PageUrl"} <= set(outputs)
    # The page URL is the stage URL (GET / on the API).
    assert outputs["PageUrl"]["Value"] == outputs["ApiUrl"]["Value"]


def test_iam_auth_mode_uses_sigv4_and_no_key(default_context):
    stack, _ = build({**default_context, "apiAuth": "iam"})
    template = Template.from_stack(stack)
    methods = template.find_resources("AWS::ApiGateway::Method")
    assert all(m["Properties"]["AuthorizationType"] == "AWS_IAM" for m in methods.values())
    template.resource_count_is("AWS::ApiGateway::ApiKey", 0)
    assert "ApiKeyId" not in template.find_outputs("*")
    assert "PageUrl" not in template.find_outputs("*")  # a browser page cannot sign SigV4: no page in iam mode
    assert nag_findings(stack, warnings=False) == []  # the default config's findings: tests/infra/test_app.py


def test_endpoint_call_budget_ends_before_the_function_and_api_gateway(template):
    function = next(iter(template.find_resources("AWS::Lambda::Function").values()))["Properties"]
    env = function["Environment"]["Variables"]
    # Every retry of the endpoint call must fit in the function's timeout, which must end before API Gateway's 29 s.
    assert float(env["INVOKE_TIMEOUT_SECONDS"]) * int(env["INVOKE_MAX_ATTEMPTS"]) < function["Timeout"] < 29
