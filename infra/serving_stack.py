"""Serving: the count Lambda behind an API Gateway REST API, with its dashboard and alarms.

The SageMaker endpoint itself is created by the pipeline's state machine under config.endpoint_name;
this stack only calls it (InvokeEndpoint and DescribeEndpoint on exactly that ARN), so it deploys
before any model exists and the API answers 503 "run the training pipeline" until then.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct
from count_api.gateway import BINARY_MEDIA_TYPES, STAGE_NAME
from count_api.settings import METRICS_NAMESPACE, SERVICE_NAME, function_environment

from infra.config import AppConfig, api_settings
from infra.lambda_asset import build_asset
from infra.logs_key import logs_may_encrypt
from infra.nag import acknowledge, checkov_skip
from infra.serving.monitoring import MonitoringProps, ServingMonitoring

# API Gateway's integration limit is 29 s: the function (and its endpoint call, count_api.settings's
# invoke timeout and attempts) must end before it.
FUNCTION_TIMEOUT = Duration.seconds(28)

# Gateway responses in the handler's error shape, so every error a client sees is {"error": {...}}.
GATEWAY_ERRORS = {
    apigw.ResponseType.BAD_REQUEST_PARAMETERS: ("400", "bad_request", "$context.error.validationErrorString"),
    apigw.ResponseType.BAD_REQUEST_BODY: ("400", "bad_request", "$context.error.validationErrorString"),
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN: (
        "403",
        "forbidden",
        "missing credentials or unknown route: send x-api-key to /v1/count or /v1/health",
    ),
    apigw.ResponseType.INVALID_API_KEY: ("403", "forbidden", "the API key is missing or invalid: send it in the x-api-key header"),
    apigw.ResponseType.ACCESS_DENIED: ("403", "forbidden", "$context.error.message"),
    apigw.ResponseType.THROTTLED: ("429", "throttled", "too many requests: slow down and retry"),
    apigw.ResponseType.QUOTA_EXCEEDED: ("429", "quota_exceeded", "the API key's daily quota is used up"),
    apigw.ResponseType.REQUEST_TOO_LARGE: (
        "413",
        "payload_too_large",
        "the request is above API Gateway's 10 MB limit: send smaller photos",
    ),
    apigw.ResponseType.INTEGRATION_TIMEOUT: ("504", "timeout", "the request took longer than 29 s: retry, or send fewer images"),
}


class ServingStack(Stack):
    """Lambda + REST API (API key + usage plan, or IAM auth) + dashboard + alarms to `topic`."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, topic: sns.ITopic, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        removal = RemovalPolicy.DESTROY if config.is_destroy else RemovalPolicy.RETAIN
        self.endpoint_arn = self.format_arn(service="sagemaker", resource="endpoint", resource_name=config.endpoint_name)

        self.function_log_group_name = f"/{config.name_prefix}/serving/count-function"
        self.access_log_group_name = f"/{config.name_prefix}/serving/api-access"
        self.logs_key = self._logs_key(removal)
        self.function = self._function(removal)
        self.api, self.api_key = self._api(removal)
        dashboard_name = f"{config.name_prefix}-serving"
        self.monitoring = ServingMonitoring(
            self,
            "Monitoring",
            props=MonitoringProps(
                api=self.api,
                stage_name=STAGE_NAME,
                function=self.function,
                endpoint_name=config.endpoint_name,
                metrics_namespace=METRICS_NAMESPACE,
                service_name=SERVICE_NAME,
                topic=topic,
                dashboard_name=dashboard_name,
            ),
        )

        CfnOutput(self, "ApiUrl", value=self.api.url, description="POST photos to <ApiUrl>v1/count")
        if self.api_key is not None:
            CfnOutput(
                self,
                "ApiKeyId",
                value=self.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id> --query value --output text",
            )
        if self.api_key is not None:
            # The stage URL ends with "/": GET on it is the try-it page (docs/serving.md, "The try-it page").
            CfnOutput(
                self, "PageUrl", value=self.api.url, description="open in a browser to try counting and verification (type the API key)"
            )
        CfnOutput(self, "DashboardName", value=dashboard_name)

    # --- log encryption --------------------------------------------------------------------------------

    def _logs_key(self, removal: RemovalPolicy) -> kms.Key:
        """One key for the serving log groups; CloudWatch Logs may use it for exactly these two groups.

        The groups have fixed names so the key policy can name their ARNs (arn:aws:logs:REGION:ACCOUNT:log-group:NAME,
        the ARN CloudWatch Logs puts in the encryption context) without a key <-> log group reference cycle.
        """
        key = kms.Key(
            self,
            "ServingLogsKey",
            description=f"{self.config.name_prefix}: serving log groups (count function, API access logs)",
            enable_key_rotation=True,
            removal_policy=removal,
        )
        key.add_to_resource_policy(logs_may_encrypt(self, [self.function_log_group_name, self.access_log_group_name]))
        return key

    def _encrypted_log_group(self, construct_id: str, name: str, retention: logs.RetentionDays, removal: RemovalPolicy) -> logs.LogGroup:
        """A serving log group under the serving key; `name` must be one of the two the key policy names (_logs_key)."""
        return logs.LogGroup(
            self, construct_id, log_group_name=name, encryption_key=self.logs_key, retention=retention, removal_policy=removal
        )

    # --- the function --------------------------------------------------------------------------------

    def _function(self, removal: RemovalPolicy) -> lambda_.Function:
        log_group = self._encrypted_log_group("CountFunctionLogs", self.function_log_group_name, logs.RetentionDays.ONE_MONTH, removal)
        # Our own role: logs to this one log group instead of the AWS-managed basic execution policy.
        role = iam.Role(self, "CountFunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        role.add_to_policy(iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]))
        role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint", "sagemaker:DescribeEndpoint"], resources=[self.endpoint_arn])
        )
        function = lambda_.Function(
            self,
            "CountFunction",
            description="Preprocesses bin photos and counts their items with the SageMaker endpoint",
            # python3.13 on x86_64: the runtime whose exact asset (bytecode included) runs and is tested here (infra/lambda_asset.py).
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.lambda_handler",
            code=lambda_.Code.from_asset(str(build_asset()), exclude=[".complete"]),
            memory_size=1024,  # CPU scales with memory: decoding 8 photos stays well under a second
            timeout=FUNCTION_TIMEOUT,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment=function_environment(api_settings(self.config)),
        )
        self._acknowledge_function(role, function)
        return function

    @staticmethod
    def _acknowledge_function(role: iam.Role, function: lambda_.Function) -> None:
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Active tracing adds xray:PutTraceSegments/PutTelemetryRecords on '*': X-Ray has no resource-level permissions",
            applies_to=["Resource::*"],
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "python3.13 is deliberate: the asset's wheels and bytecode are built for exactly this runtime (infra/lambda_asset.py)",
        )
        for check_id, reason in (
            ("CKV_AWS_116", "API Gateway invokes the function synchronously (AWS_PROXY); a DLQ only receives failed asynchronous events"),
            (
                "CKV_AWS_115",
                "no reserved concurrency: the stage throttle and usage plan bound concurrency, and reserving on a new account "
                "(concurrency quota 10) fails the deploy because unreserved concurrency may not drop below 10",
            ),
            (
                "CKV_AWS_117",
                "the function calls only the SageMaker runtime's public endpoint; a VPC would add NAT or interface endpoints "
                "(~$7+/month each) and no isolation the IAM scoping does not already give",
            ),
            (
                "CKV_AWS_173",
                "the environment holds only the endpoint name and numeric limits, no secret; Lambda encrypts it at rest with its AWS-managed key",
            ),
        ):
            checkov_skip(function, check_id, reason)

    # --- the API -------------------------------------------------------------------------------------

    def _api(self, removal: RemovalPolicy) -> tuple[apigw.RestApi, apigw.IApiKey | None]:
        use_key = self.config.api_auth == "apiKey"
        api = self._rest_api(removal)
        self._gateway_responses(api)
        self._routes(api, use_key)
        api_key = self._usage_plan(api, use_key)
        self._acknowledge_api(api, use_key)
        return api, api_key

    def _rest_api(self, removal: RemovalPolicy) -> apigw.RestApi:
        """The regional REST API and its one stage, with JSON access logs in their own encrypted group."""
        access_logs = self._encrypted_log_group("ApiAccessLogs", self.access_log_group_name, logs.RetentionDays.THREE_MONTHS, removal)
        return apigw.RestApi(
            self,
            "CountApi",
            rest_api_name=f"{self.config.name_prefix}-count-api",
            description="Counts the items in bin photos (POST /v1/count)",
            binary_media_types=list(BINARY_MEDIA_TYPES),
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,  # execution logging needs the account's API Gateway logging role
            cloud_watch_role_removal_policy=removal,
            deploy_options=self._stage_options(access_logs),
        )

    def _stage_options(self, access_logs: logs.LogGroup) -> apigw.StageOptions:
        """The stage: access logs without caller or user, error-only execution logs, X-Ray, cdk.json's throttle."""
        return apigw.StageOptions(
            stage_name=STAGE_NAME,
            access_log_destination=apigw.LogGroupLogDestination(access_logs),
            access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                caller=False,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=False,
            ),  # fmt: skip
            logging_level=apigw.MethodLoggingLevel.ERROR,
            data_trace_enabled=False,  # would log request bodies (photos) to CloudWatch
            tracing_enabled=True,
            metrics_enabled=True,
            throttling_rate_limit=self.config.api_throttle_rate_limit,
            throttling_burst_limit=self.config.api_throttle_burst_limit,
        )

    @staticmethod
    def _gateway_responses(api: apigw.RestApi) -> None:
        """API Gateway's own errors (GATEWAY_ERRORS) in the handler's {"error": {...}} shape."""
        for response_type, (status, code, message) in GATEWAY_ERRORS.items():
            # The messages contain no quotes; $context.error.* variables are filled in by API Gateway.
            template = f'{{"error": {{"code": "{code}", "message": "{message}"}}}}'
            name = "Gateway" + response_type.response_type.title().replace("_", "")
            api.add_gateway_response(name, type=response_type, status_code=status, templates={"application/json": template})

    def _routes(self, api: apigw.RestApi, use_key: bool) -> None:
        """POST v1/count (validated), GET v1/health and, with an API key, the try-it page: all proxied to the function."""
        validator = apigw.RequestValidator(self, "Validator", rest_api=api, validate_request_parameters=True, validate_request_body=True)
        batch_model = self._batch_model(api)
        integration = apigw.LambdaIntegration(self.function, proxy=True, timeout=Duration.seconds(29))
        auth = {"api_key_required": True} if use_key else {"authorization_type": apigw.AuthorizationType.IAM}
        v1 = api.root.add_resource("v1")
        v1.add_resource("count").add_method(
            "POST",
            integration,
            request_validator=validator,
            request_parameters={"method.request.header.Content-Type": True},
            request_models={"application/json": batch_model},
            **auth,
        )
        v1.add_resource("health").add_method("GET", integration, **auth)
        if use_key:
            self._page_method(api, integration)

    def _batch_model(self, api: apigw.RestApi) -> apigw.Model:
        """A JSON request's shape: 1 to maxImagesPerRequest images (API Gateway rejects the rest before the function runs)."""
        return api.add_model(
            "CountBatch",
            content_type="application/json",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                type=apigw.JsonSchemaType.OBJECT,
                required=["images"],
                properties={
                    "images": apigw.JsonSchema(type=apigw.JsonSchemaType.ARRAY, min_items=1, max_items=self.config.max_images_per_request)
                },
            ),
        )

    def _usage_plan(self, api: apigw.RestApi, use_key: bool) -> apigw.IApiKey | None:
        """The stage's usage plan (throttle and daily quota) and, with apiAuth=apiKey, the floor software's key in it."""
        config = self.config
        plan = api.add_usage_plan(
            "UsagePlan",
            name=f"{config.name_prefix}-count-plan",
            throttle=apigw.ThrottleSettings(rate_limit=config.api_throttle_rate_limit, burst_limit=config.api_throttle_burst_limit),
            quota=apigw.QuotaSettings(limit=config.api_quota_per_day, period=apigw.Period.DAY),
        )
        plan.add_api_stage(stage=api.deployment_stage)
        if not use_key:
            return None
        api_key = api.add_api_key(
            "ApiKey", api_key_name=f"{config.name_prefix}-count-key", description="Floor software's key for the count API"
        )
        plan.add_api_key(api_key)
        return api_key

    def _page_method(self, api: apigw.RestApi, integration: apigw.LambdaIntegration) -> None:
        """GET / (the stage URL itself): the try-it page (count_api/page.html), served by the same function
        without a key. It is static HTML with no data; the page calls POST v1/count with the key the user
        types, so the API's data stays behind the key. Only with apiAuth=apiKey: a browser page cannot sign
        SigV4. The page is text/html, not a binary media type (image/jpeg, image/png) and the function answers
        it with isBase64Encoded false, so API Gateway passes it through as text whatever the browser's Accept
        header says (docs/serving.md, "The try-it page")."""
        method = api.root.add_method("GET", integration, authorization_type=apigw.AuthorizationType.NONE, api_key_required=False)
        reason = (
            "GET / serves the static try-it page (self-contained HTML, no data, no secrets); every data route "
            "(POST v1/count, GET v1/health) still requires the API key, which the user types into the page"
        )
        acknowledge(method, "AwsSolutions-APIG4", reason)
        acknowledge(method, "AwsSolutions-COG4", reason)
        checkov_skip(method, "CKV_AWS_59", reason)
        self.page_method = method

    def _acknowledge_api(self, api: apigw.RestApi, use_key: bool) -> None:
        acknowledge(
            api,
            "AwsSolutions-APIG3",
            "No WAF: callers are the warehouse's own floor software; API key / IAM auth, usage-plan quota and stage throttling bound abuse, "
            "and a web ACL (~$5/month + per request) can be attached to the stage without code changes",
        )
        acknowledge(
            api.node.find_child("CloudWatchRole"),
            "AwsSolutions-IAM4",
            "CDK's API Gateway CloudWatch role uses AWS's AmazonAPIGatewayPushToCloudWatchLogs policy, the documented one for execution logging",
            applies_to=["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"],
        )
        # Cognito user pools are for end users; the callers here are machines.
        acknowledge(
            api,
            "AwsSolutions-COG4",
            "Callers are machines (floor software), authenticated by API key or IAM SigV4 per config apiAuth, not Cognito users",
        )
        if use_key:
            acknowledge(
                api,
                "AwsSolutions-APIG4",
                "apiAuth=apiKey: every method requires the API key of the usage plan (x-api-key); that is the auth mode, "
                "chosen for floor software without AWS credentials. Set apiAuth=iam for SigV4 (IAM) authorization instead",
            )
        checkov_skip(
            api.deployment_stage,
            "CKV_AWS_120",
            "no API cache: every request is a POST of different photos (never the same answer twice), and a cache costs from $0.02/hour",
        )
