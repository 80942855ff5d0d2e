"""Storage stack template: encryption, public-access block, SSL-only, versioning, lifecycle, outputs."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from infra.config import config_from_mapping
from infra.storage_stack import StorageStack


@pytest.fixture(scope="module")
def template(default_context) -> Template:
    app = cdk.App()
    stack = StorageStack(app, "storage", config=config_from_mapping(default_context))
    return Template.from_stack(stack)


def buckets(template: Template) -> dict:
    return template.find_resources("AWS::S3::Bucket")


def test_kms_key_rotates(template):
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_three_buckets_all_block_public_access(template):
    found = buckets(template)
    assert len(found) == 3
    for bucket in found.values():
        assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }


def test_every_bucket_is_encrypted_and_data_buckets_use_the_kms_key(template):
    algorithms = sorted(
        bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
        for bucket in buckets(template).values()
    )
    # access logs must be SSE-S3 (S3 server access logging cannot write to SSE-KMS buckets)
    assert algorithms == ["AES256", "aws:kms", "aws:kms"]


def test_every_bucket_denies_non_tls_requests(template):
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 3
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and s["Action"] == "s3:*"
            for s in statements
        )


def test_data_and_artifacts_are_versioned_and_log_access(template):
    template.resource_properties_count_is(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": Match.object_like({"DestinationBucketName": Match.any_value()}),
        },
        2,
    )


def test_checkpoints_expire_and_old_runs_age_out(template):
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {"Id": "expire-checkpoints", "Prefix": "checkpoints/", "ExpirationInDays": 14, "Status": "Enabled"}
                        ),
                        Match.object_like(
                            {
                                "Id": "age-old-runs",
                                "Prefix": "runs/",
                                "Transitions": Match.array_with([Match.object_like({"StorageClass": "STANDARD_IA"})]),
                            }
                        ),
                    ]
                )
            }
        },
    )


def test_retain_by_default_and_destroy_when_configured(default_context, template):
    assert {b["DeletionPolicy"] for b in buckets(template).values()} == {"Retain"}
    app = cdk.App()
    stack = StorageStack(app, "storage", config=config_from_mapping({**default_context, "removalPolicy": "destroy"}))
    assert {b["DeletionPolicy"] for b in Template.from_stack(stack).find_resources("AWS::S3::Bucket").values()} == {"Delete"}


def test_outputs_name_buckets_and_key(template):
    outputs = template.find_outputs("*")
    assert {"DataBucketName", "ArtifactsBucketName", "AccessLogsBucketName", "DataKeyArn"} <= set(outputs)
