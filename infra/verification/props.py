"""What the Verify bins constructs are given by the pipeline stack."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns

from infra.pipeline.settings import DefinitionSettings


@dataclass(frozen=True)
class VerifyBinsProps:
    settings: DefinitionSettings  # the training pipeline's: images, execution role, artifacts bucket, data key, code, topic
    execution_role: iam.IRole
    artifacts_bucket: s3.IBucket
    data_bucket: s3.IBucket
    data_key: kms.IKey
    dataset_bucket_name: str
    topic: sns.ITopic
    notifications_key: kms.IKey
    removal: RemovalPolicy
