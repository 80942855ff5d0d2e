"""Resource policies (KMS key policies, the SNS topic policy, bucket policies) checked for each AWS service that
must use the resource, on the real ARN shapes of that service's resources (moto enforces none of them).

References: CloudWatch Logs user guide, "Encrypt log data in CloudWatch Logs using AWS KMS" (the service
principal logs.REGION.amazonaws.com, the encryption context kms:EncryptionContext:aws:logs:arn =
arn:aws:logs:REGION:ACCOUNT:log-group:NAME); SNS developer guide, "Encryption at rest" and the CloudWatch
alarm-action note (cloudwatch.amazonaws.com needs sns:Publish on the topic and kms:GenerateDataKey*/Decrypt on
its key); S3 user guide, "Enabling Amazon S3 server access logging" (logging.s3.amazonaws.com, s3:PutObject,
aws:SourceArn = the source bucket). The evaluator is tests/infra/policy_eval.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.infra.policy_eval import PolicyEvaluator, Resolver
from tests.pipeline.render import ACCOUNT, REGION

LOGS_PRINCIPAL = {"Service": f"logs.{REGION}.amazonaws.com"}
CLOUDWATCH = {"Service": "cloudwatch.amazonaws.com"}
LOGS_KMS_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:DescribeKey"]


@dataclass
class App:
    templates: dict[str, dict[str, Any]]
    resolver: Resolver


@pytest.fixture(scope="module")
def app(default_context: dict) -> App:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import config_from_mapping
    from infra.stacks import build_stacks

    cdk_app = cdk.App(context=default_context)
    stacks = build_stacks(cdk_app, config_from_mapping(default_context), env=cdk.Environment(account=ACCOUNT, region=REGION))
    templates = {name: Template.from_stack(stack).to_json() for name, stack in stacks.items()}
    return App(templates, Resolver(templates))


def _resources(app: App, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(stack, lid, r) for stack, t in app.templates.items() for lid, r in t["Resources"].items() if r["Type"] == kind]


def _key_policy(app: App, key_ref: Any) -> PolicyEvaluator:
    logical_id = key_ref["Fn::GetAtt"][0]
    (key,) = [r for _, lid, r in _resources(app, "AWS::KMS::Key") if lid == logical_id]
    return PolicyEvaluator.from_documents([app.resolver.resolve(key["Properties"]["KeyPolicy"])])


def _log_group_arn(name: str) -> str:
    return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"


def test_every_encrypted_log_group_can_use_its_key(app: App) -> None:
    groups = [(stack, lid, r["Properties"]) for stack, lid, r in _resources(app, "AWS::Logs::LogGroup") if "KmsKeyId" in r["Properties"]]
    assert groups
    failures = []
    for stack, logical_id, props in groups:
        assert "LogGroupName" in props, f"{stack}/{logical_id}: an unnamed log group's ARN is unknown to the key policy"
        policy = _key_policy(app, props["KmsKeyId"])
        context = {"kms:EncryptionContext:aws:logs:arn": _log_group_arn(props["LogGroupName"])}
        for action in LOGS_KMS_ACTIONS:
            if not policy.allows(action, "*", context, LOGS_PRINCIPAL):
                failures.append(f"{stack}/{logical_id} ({props['LogGroupName']}): logs may not {action}")
        # Scoped: another log group of the account may not use the key.
        other = {"kms:EncryptionContext:aws:logs:arn": _log_group_arn("/some/other/group")}
        if policy.allows("kms:GenerateDataKey", "*", other, LOGS_PRINCIPAL):
            failures.append(f"{stack}/{logical_id}: any log group may use the key")
    assert not failures, "\n".join(failures)
    unencrypted = [f"{stack}/{lid}" for stack, lid, r in _resources(app, "AWS::Logs::LogGroup") if "KmsKeyId" not in r["Properties"]]
    assert not unencrypted, f"log groups without a KMS key: {unencrypted}"


def _topic(app: App) -> tuple[str, dict[str, Any]]:
    ((_, logical_id, topic),) = _resources(app, "AWS::SNS::Topic")
    return logical_id, topic


def _alarms_to_topic(app: App, topic_id: str) -> list[str]:
    """Alarms whose actions name the topic (directly or through a cross-stack reference)."""
    found = []
    for stack, logical_id, alarm in _resources(app, "AWS::CloudWatch::Alarm"):
        actions = [a for key in ("AlarmActions", "OKActions") for a in alarm["Properties"].get(key, [])]
        if any(app.resolver.resolve(a) == app.resolver.values.topic_arn for a in actions):
            found.append(f"{stack}/{logical_id}")
    assert topic_id
    return found


def test_cloudwatch_alarms_may_publish_to_the_encrypted_topic(app: App) -> None:
    topic_id, topic = _topic(app)
    alarms = _alarms_to_topic(app, topic_id)
    assert len(alarms) >= 2, "the pipeline's failed-runs alarm and the serving alarms notify the topic"
    (policy_resource,) = [r for _, _, r in _resources(app, "AWS::SNS::TopicPolicy")]
    topic_policy = PolicyEvaluator.from_documents([app.resolver.resolve(policy_resource["Properties"]["PolicyDocument"])])
    topic_arn = app.resolver.values.topic_arn
    context = {"aws:SourceAccount": ACCOUNT, "aws:SecureTransport": "true"}
    assert topic_policy.allows("sns:Publish", topic_arn, context, CLOUDWATCH), topic_policy.decide(
        "sns:Publish", topic_arn, context, CLOUDWATCH
    )
    # The allow is limited to this account's alarms, and the SSL-only deny still holds.
    assert not topic_policy.allows("sns:Publish", topic_arn, {**context, "aws:SourceAccount": "999999999999"}, CLOUDWATCH)
    assert not topic_policy.allows("sns:Publish", topic_arn, {**context, "aws:SecureTransport": "false"}, CLOUDWATCH)
    key_policy = _key_policy(app, topic["Properties"]["KmsMasterKeyId"])
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert key_policy.allows(action, "*", {"aws:SourceAccount": ACCOUNT}, CLOUDWATCH), f"cloudwatch may not {action} on the topic key"


def test_state_machine_may_publish_through_the_topic_policy(app: App) -> None:
    """The identity policy allows the role; the topic policy must not deny it over TLS."""
    (policy_resource,) = [r for _, _, r in _resources(app, "AWS::SNS::TopicPolicy")]
    topic_policy = PolicyEvaluator.from_documents([app.resolver.resolve(policy_resource["Properties"]["PolicyDocument"])])
    role = {"AWS": f"arn:aws:iam::{ACCOUNT}:role/StateMachineRole"}
    decision = topic_policy.decide("sns:Publish", app.resolver.values.topic_arn, {"aws:SecureTransport": "true"}, role)
    assert not decision.deny_sids


def test_access_log_bucket_accepts_server_access_logs_of_both_buckets(app: App) -> None:
    storage = app.templates["storage"]
    buckets = {lid: r for lid, r in storage["Resources"].items() if r["Type"] == "AWS::S3::Bucket"}
    logged = {lid: r["Properties"]["LoggingConfiguration"] for lid, r in buckets.items() if "LoggingConfiguration" in r["Properties"]}
    assert len(logged) == 2
    policies = [r for r in storage["Resources"].values() if r["Type"] == "AWS::S3::BucketPolicy"]
    for source_id, logging in logged.items():
        target = app.resolver.resolve(logging["DestinationBucketName"])
        documents = [
            app.resolver.resolve(p["Properties"]["PolicyDocument"])
            for p in policies
            if app.resolver.resolve(p["Properties"]["Bucket"]) == target
        ]
        policy = PolicyEvaluator.from_documents(documents)
        key = f"{logging['LogFilePrefix']}2026-11-26-00-00-00-0123456789ABCDEF"
        context = {
            "aws:SourceArn": f"arn:aws:s3:::{app.resolver.ref(source_id)}",
            "aws:SourceAccount": ACCOUNT,
            "aws:SecureTransport": "true",
        }
        principal = {"Service": "logging.s3.amazonaws.com"}
        assert policy.allows("s3:PutObject", f"arn:aws:s3:::{target}/{key}", context, principal), (source_id, policy.statements)
        assert not policy.allows("s3:PutObject", f"arn:aws:s3:::{target}/{key}", {**context, "aws:SecureTransport": "false"}, principal)


def test_checkov_skips_are_inline_one_by_one_with_reasons(app: App) -> None:
    """`make checkov` must end with 0 failed checks; what it skips is in each resource's Metadata, each with its reason."""
    skips = [
        (stack, lid, skip)
        for stack, t in app.templates.items()
        for lid, r in t["Resources"].items()
        for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for stack, lid, skip in skips:
        assert set(skip) == {"id", "comment"} and skip["id"].startswith("CKV_"), (stack, lid, skip)
        assert len(skip["comment"]) >= 40, f"{stack}/{lid} {skip['id']}: the reason is too short"
    ids = [(stack, lid, s["id"]) for stack, lid, s in skips]
    assert len(ids) == len(set(ids)), "a check is skipped twice on one resource"


def test_checkov_skip_refuses_an_empty_reason() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_sns as sns

    from infra.nag import checkov_skip

    topic = sns.Topic(cdk.Stack(cdk.App(), "scratch"), "T")
    with pytest.raises(ValueError, match="needs a real reason"):
        checkov_skip(topic, "CKV_AWS_26", "because")
    checkov_skip(topic, "CKV_AWS_26", "first reason, long enough to count")
    checkov_skip(topic, "CKV_AWS_26", "second reason replaces the first one")
    assert topic.node.default_child.get_metadata("checkov") == {
        "skip": [{"id": "CKV_AWS_26", "comment": "second reason replaces the first one"}]
    }
