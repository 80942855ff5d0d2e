"""The pipeline's state machine EXECUTED in moto's ASL interpreter, for each path a run can take.

Real: the definition rendered from the synthesized template (CloudFormation references replaced by
test values), moto 5.2.5's interpreter running it (Choice, Catch, Retry, Wait, intrinsics), botocore
validating every SageMaker / S3 / SNS / Application Auto Scaling request against the real API
models, moto's S3, SNS and Application Auto Scaling backends, and the pipeline_gate helper.
Emulated (tests/pipeline/moto_adapter.py): `.sync` (poll Describe* until a terminal status), how
SageMaker jobs end, the files the Evaluate job writes, UpdateEndpoint, and time (Wait states).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.pipeline.moto_adapter import REGION, History, Scenario, emulated_sagemaker, history, run_execution
from tests.pipeline.render import RenderValues

SM_ROLE = "arn:aws:iam::123456789012:role/test-states"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


@pytest.fixture
def pipeline(aws: Any, rendered_definition: str, test_values: RenderValues) -> Any:
    """The state machine created in moto from the rendered definition, plus the buckets and topic it uses."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=test_values.artifacts_bucket)
    s3.create_bucket(Bucket=test_values.data_bucket)
    sns = boto3.client("sns", region_name=REGION)
    sns.create_topic(Name=test_values.topic_name)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=test_values.topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name="pipeline", definition=rendered_definition, roleArn=SM_ROLE)["stateMachineArn"]

    class Pipeline:
        def run(self, name: str, execution_input: Any) -> tuple[dict[str, Any], History]:
            described = run_execution(sfn, arn, name, execution_input)
            return described, history(sfn, described["executionArn"])

        def notifications(self) -> list[str]:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            return [m["Body"] for m in messages]

    return Pipeline()


def test_first_run_creates_the_endpoint(pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with emulated_sagemaker(monkeypatch, Scenario()) as world:
        described, events = pipeline.run("first-run", {})
    print(json.dumps(events.events[-3:], default=str, indent=1)[:3000])
    print(events.entered())
    assert described["status"] == "SUCCEEDED", described
