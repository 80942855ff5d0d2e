"""PyTorch container image URIs, resolved at synth from config with the SageMaker SDK's offline table."""

from __future__ import annotations

import os
from dataclasses import dataclass

from infra.config import AppConfig

# sagemaker-core must not probe the EC2 metadata address during synth (DESIGN.md).
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from sagemaker.core import image_uris  # noqa: E402


@dataclass(frozen=True)
class ImageUris:
    training: str  # tuning trials and the final training job (training_instance_type)
    tuning: str
    processing: str  # Prepare and Evaluate run on the training image, CPU flavour
    inference: str

    @property
    def registry_account(self) -> str:
        """The AWS account that hosts the Deep Learning Containers for this region (for ECR pull grants)."""
        return self.training.split(".", 1)[0]

    @property
    def repositories(self) -> list[str]:
        return sorted({uri.split("/", 1)[1].split(":", 1)[0] for uri in (self.training, self.tuning, self.processing, self.inference)})


def _retrieve(config: AppConfig, version: str, instance_type: str, scope: str) -> str:
    try:
        return image_uris.retrieve(
            "pytorch",
            region=config.region,
            version=version,
            py_version=config.python_version,
            instance_type=instance_type,
            image_scope=scope,
        )
    except ValueError as error:
        raise ValueError(
            f"no PyTorch {scope} image for version {version}, {config.python_version}, {instance_type} in {config.region}: {error}. "
            "Change trainingFrameworkVersion / inferenceFrameworkVersion / pythonVersion in cdk.json"
        ) from None


def resolve_images(config: AppConfig) -> ImageUris:
    # Serverless endpoints run on CPU; an instance endpoint follows its instance type.
    inference_instance = config.endpoint_instance_type if config.endpoint_mode == "instance" else "ml.m5.large"
    return ImageUris(
        training=_retrieve(config, config.training_framework_version, config.training_instance_type, "training"),
        tuning=_retrieve(config, config.training_framework_version, config.tuning_instance_type, "training"),
        processing=_retrieve(config, config.training_framework_version, config.processing_instance_type, "training"),
        inference=_retrieve(config, config.inference_framework_version, inference_instance, "inference"),
    )
