"""Storage: the KMS key and the three buckets every other stack writes to."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import AppConfig
from infra.nag import checkov_skip
from infra.pipeline.layout import CHECKPOINTS_PREFIX, RUNS_PREFIX


class StorageStack(Stack):
    """KMS key (rotated), data bucket, artifacts bucket and the access-log bucket."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = RemovalPolicy.DESTROY if config.is_destroy else RemovalPolicy.RETAIN

        self.key = kms.Key(
            self,
            "DataKey",
            description=f"{config.name_prefix}: encrypts datasets, models, checkpoints and reports",
            enable_key_rotation=True,
            removal_policy=removal,
        )

        # Server access logs cannot go to a KMS-encrypted bucket: S3-managed keys here.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(365))],
            removal_policy=removal,
            auto_delete_objects=False,
        )

        checkov_skip(
            self.access_logs,
            "CKV_AWS_18",
            "this is the server-access-log destination: logging it would need yet another bucket, or log into itself in a loop",
        )
        checkov_skip(
            self.access_logs,
            "CKV_AWS_21",
            "access-log objects are written once by S3's log delivery and never overwritten; versioning would only keep "
            "copies past the 365-day expiry",
        )

        self.data_bucket = self._encrypted_bucket(
            "Data",
            removal,
            lifecycle_rules=[
                s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)),
                s3.LifecycleRule(id="expire-old-versions", noncurrent_version_expiration=Duration.days(30)),
            ],
        )
        self.artifacts_bucket = self._encrypted_bucket(
            "Artifacts",
            removal,
            lifecycle_rules=[
                s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)),
                # Spot-resume checkpoints are only useful while their training job may restart.
                s3.LifecycleRule(id="expire-checkpoints", prefix=CHECKPOINTS_PREFIX, expiration=Duration.days(14)),
                # Old runs' intermediate data moves to infrequent access, then to Glacier.
                s3.LifecycleRule(
                    id="age-old-runs",
                    prefix=RUNS_PREFIX,
                    transitions=[
                        s3.Transition(storage_class=s3.StorageClass.INFREQUENT_ACCESS, transition_after=Duration.days(30)),
                        s3.Transition(storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, transition_after=Duration.days(90)),
                    ],
                ),
                s3.LifecycleRule(id="expire-old-versions", noncurrent_version_expiration=Duration.days(90)),
            ],
        )

        CfnOutput(self, "DataBucketName", value=self.data_bucket.bucket_name)
        CfnOutput(self, "ArtifactsBucketName", value=self.artifacts_bucket.bucket_name)
        CfnOutput(self, "AccessLogsBucketName", value=self.access_logs.bucket_name)
        CfnOutput(self, "DataKeyArn", value=self.key.key_arn)

    def _encrypted_bucket(self, name: str, removal: RemovalPolicy, lifecycle_rules: list[s3.LifecycleRule]) -> s3.Bucket:
        return s3.Bucket(
            self,
            name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{name.lower()}/",
            lifecycle_rules=lifecycle_rules,
            removal_policy=removal,
        )
