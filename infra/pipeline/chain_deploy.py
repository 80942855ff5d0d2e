"""The deploy chain: Create model -> Create endpoint config -> Create or Update endpoint -> wait until InService
-> (instance endpoints) autoscaling -> record what serves -> Notify success -> Deployed.
"""

from __future__ import annotations

from typing import Any

import serving_record
from aws_cdk import aws_stepfunctions as sfn

from infra.pipeline import sagemaker_params as params
from infra.pipeline.layout import SERVING_RECORD_KEY
from infra.pipeline.settings import ENDPOINT_MAX_POLLS, ENDPOINT_POLL_SECONDS
from infra.pipeline.states import C, Segment, StateBuilder, final_segment

# DescribeEndpoint on an absent endpoint answers ValidationException ("Could not find endpoint");
# the aws-sdk integration names it after the service. Anything else is a real failure.
ENDPOINT_ABSENT_ERRORS = [
    "SageMaker.ValidationException",
    "SageMaker.ResourceNotFoundException",
    "SageMaker.AmazonSageMakerException",
    "SageMaker.SageMakerException",
]


class JsonPath(str):
    """A value the state machine reads from its state (a "<key>.$" parameter), not a literal."""


def deploy_chain(b: StateBuilder) -> Segment:
    deploy = _create_or_update_endpoint(b)
    in_service = _wait_until_in_service(b)
    record = _record_and_notify(b)
    deploy.connect(in_service.start)
    in_service.connect(_autoscaling(b, then=record) if b.s.config.endpoint_mode == "instance" else record)
    return final_segment(deploy.start)


def _create_or_update_endpoint(b: StateBuilder) -> Segment:
    """The model and a new endpoint config; CreateEndpoint when the endpoint is absent, else a blue/green UpdateEndpoint."""
    endpoint_name = b.s.config.endpoint_name
    create_model = b.task(
        "Create model",
        "sagemaker:createModel",
        params.model(b.s),
        result_selector={"arn.$": "$.ModelArn"},
        result_path="$.deployed.model",
    )
    create_config = b.task(
        "Create endpoint config",
        "sagemaker:createEndpointConfig",
        params.endpoint_config(b.s),
        result_selector={"arn.$": "$.EndpointConfigArn"},
        result_path="$.deployed.config",
    )
    find_endpoint = b.task(
        "Find endpoint",
        "aws-sdk:sagemaker:describeEndpoint",
        {"EndpointName": endpoint_name},
        result_selector={"status.$": "$.EndpointStatus"},
        result_path="$.previous",
        catch=False,
    )
    create_endpoint = b.task(
        "Create endpoint",
        "sagemaker:createEndpoint",
        {"EndpointName": endpoint_name, "EndpointConfigName.$": "$.names.endpointConfig"},
        result_selector={"arn.$": "$.EndpointArn"},
        result_path="$.deployed.endpoint",
    )
    find_endpoint.add_catch(create_endpoint, errors=ENDPOINT_ABSENT_ERRORS, result_path="$.previous")
    b.catch(find_endpoint, "Find endpoint")
    update_endpoint = b.task(
        "Update endpoint",
        "sagemaker:updateEndpoint",
        params.update_endpoint(b.s),
        result_selector={"arn.$": "$.EndpointArn"},
        result_path="$.deployed.endpoint",
    )
    create_model.next(create_config).next(find_endpoint).next(update_endpoint)

    def connect(following: sfn.IChainable) -> None:
        update_endpoint.next(following)
        create_endpoint.next(following)

    return Segment(create_model, connect)


def _wait_until_in_service(b: StateBuilder) -> Segment:
    """Wait + DescribeEndpoint until InService on this run's config; a rollback, a failure or too many polls fail the run."""
    endpoint_name = b.s.config.endpoint_name
    # count = DescribeEndpoint checks made once "Check endpoint" has run; at most ENDPOINT_MAX_POLLS.
    start_polls = b.pass_state("Start endpoint polls", result=sfn.Result.from_object({"count": 1}), result_path="$.poll")
    wait = b.wait("Wait for endpoint", ENDPOINT_POLL_SECONDS)
    check_endpoint = b.task(
        "Check endpoint", "aws-sdk:sagemaker:describeEndpoint", {"EndpointName": endpoint_name}, result_path="$.endpoint"
    )
    endpoint_ready = b.choice("Endpoint in service?")
    count_poll = b.pass_state("Count endpoint poll", parameters={"count.$": "States.MathAdd($.poll.count, 1)"}, result_path="$.poll")
    rolled_back = b.failure_pass(
        "Endpoint update rolled back",
        f"States.Format('{endpoint_name} rolled back: it serves an endpoint config other than {{}}, and the previous model keeps serving. "
        "DescribeEndpoint: {}', $.names.endpointConfig, States.JsonToString($.endpoint))",
    )
    endpoint_failed = b.failure_pass(
        "Endpoint failed",
        f"States.Format('{endpoint_name} is {{}}. DescribeEndpoint: {{}}', $.endpoint.EndpointStatus, States.JsonToString($.endpoint))",
    )
    endpoint_timeout = b.failure_pass(
        "Endpoint not in service in time",
        f"States.Format('{endpoint_name} still {{}} after {ENDPOINT_MAX_POLLS} checks {ENDPOINT_POLL_SECONDS} s apart', $.endpoint.EndpointStatus)",
    )
    start_polls.next(wait).next(check_endpoint).next(endpoint_ready)
    count_poll.next(wait)
    in_service = C.string_equals("$.endpoint.EndpointStatus", "InService")
    serves_this_run = C.and_(
        in_service,
        # EndpointConfigName is optional in DescribeEndpoint's answer (botocore model): guarded.
        C.is_present("$.endpoint.EndpointConfigName"),
        C.string_equals_json_path("$.endpoint.EndpointConfigName", "$.names.endpointConfig"),
    )
    failed = C.or_(*(C.string_equals("$.endpoint.EndpointStatus", st) for st in ("Failed", "UpdateRollbackFailed", "OutOfService")))

    def connect(following: sfn.IChainable) -> None:
        endpoint_ready.when(serves_this_run, following)
        endpoint_ready.when(in_service, rolled_back)
        endpoint_ready.when(failed, endpoint_failed)
        endpoint_ready.when(C.number_greater_than_equals("$.poll.count", ENDPOINT_MAX_POLLS), endpoint_timeout)
        endpoint_ready.otherwise(count_poll)

    return Segment(start_polls, connect)


def _autoscaling(b: StateBuilder, *, then: sfn.IChainable) -> sfn.IChainable:
    """Instance endpoints: register the variant as a scalable target and put the target-tracking policy."""
    register_target = b.task(
        "Register autoscaling target",
        "aws-sdk:applicationautoscaling:registerScalableTarget",
        params.scalable_target(b.s),
        result_path="$.autoscaling",
    )
    put_policy = b.task(
        "Put scaling policy",
        "aws-sdk:applicationautoscaling:putScalingPolicy",
        params.scaling_policy(b.s),
        result_path="$.autoscaling",
    )
    register_target.next(put_policy).next(then)
    return register_target


def _record_and_notify(b: StateBuilder) -> sfn.IChainable:
    """serving/current.json names what serves now (training_code/serving_record.py), then the success message."""
    endpoint_name = b.s.config.endpoint_name
    record = serving_record.pipeline_record(
        endpoint=endpoint_name,
        model=JsonPath("$.names.model"),
        endpoint_config=JsonPath("$.names.endpointConfig"),
        accuracy=JsonPath("$.gate.decision.accuracy"),
        evaluation=JsonPath("$.evaluation.report"),
        training_job=JsonPath("$.training.job"),
        model_artifacts=JsonPath("$.training.modelArtifacts"),
        hyperparameters=JsonPath("$.trainHp.values"),
        pretrained=JsonPath("$.settings.pretrained"),
        run_id=JsonPath("$.run.id"),
        execution=JsonPath("$$.Execution.Id"),
        deployed_at=JsonPath("$$.State.EnteredTime"),
        image=b.s.images.inference,
        code=b.s.code_s3_url,
    )
    describe_record = b.pass_state("Describe what serves", parameters=_as_parameters(record), result_path="$.record")
    record_serving = b.task(
        "Record serving model",
        "aws-sdk:s3:putObject",
        {
            "Bucket": b.s.artifacts_bucket,
            "Key": SERVING_RECORD_KEY,
            "ContentType": "application/json",
            "Body.$": "States.JsonToString($.record)",
        },
        result_path="$.recorded",
    )
    notify_success = b.task(
        "Notify success",
        "sns:publish",
        {
            "TopicArn": b.s.topic_arn,
            "Subject.$": f"States.Format('{b.s.prefix}: run {{}} deployed', $.run.id)",
            "Message.$": f"States.Format('Run {{}} deployed model {{}} (accuracy {{}}, baseline {{}}) to endpoint {endpoint_name} with config {{}}.', "
            "$.run.id, $.names.model, $.gate.decision.accuracy, $.gate.decision.majority_baseline, $.names.endpointConfig)",
        },
        result_path="$.notified",
    )
    describe_record.next(record_serving).next(notify_success).next(b.succeed("Deployed"))
    return describe_record


def _as_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """Pass-state Parameters: a JsonPath value becomes a "<key>.$" entry, anything else a literal."""
    return {
        f"{key}.$" if isinstance(value, JsonPath) else key: str(value) if isinstance(value, JsonPath) else value
        for key, value in values.items()
    }
