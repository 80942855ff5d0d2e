"""The one reader of `cdk.json` context: a typed, validated configuration for every stack.

Every key has a default in cdk.json; `cdk synth -c key=value` overrides it. Values given with `-c`
arrive as strings, so each field is parsed from either form. A bad value raises ConfigError naming
the key, the value and what is allowed, before any construct is built.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import verification
from count_api.settings import ApiSettings, endpoint_name_for

if TYPE_CHECKING:  # only for the type hint: keeps `python -m infra.config` free of jsii start-up
    from constructs import Node

ENDPOINT_MODES = ("instance", "serverless")
API_AUTH_MODES = ("apiKey", "iam")
REMOVAL_POLICIES = ("retain", "destroy")
# SageMaker's PyTorch DLC versions that the SDK's image table knows (DESIGN.md).
TRAINING_FRAMEWORK_VERSIONS = ("2.3", "2.4", "2.5", "2.6", "2.7", "2.8", "2.9", "2.10")
INFERENCE_FRAMEWORK_VERSIONS = ("2.3", "2.4", "2.5", "2.6")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,10}[a-z0-9]$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
# A folder-like S3 prefix: bucket, then key parts of S3's safe characters, ending in "/". No "*", "?" or backslash: the
# prefix becomes an IAM resource pattern and a Step Functions StringMatches pattern, where those are wildcards.
_S3_PREFIX = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([A-Za-z0-9!_.()=+,@-]+/)*$")
PRETRAINED_CHOICES = ("imagenet", "none")
# How Prepare writes the splits: one memory-mapped uint8 array per split, or streaming shards with manifests (docs/pipeline.md).
DATA_FORMATS = ("npy", "shards")
MAX_PREPARE_INSTANCES = 20  # the Prepare job's Processing instances (cdk.json and the execution input)


class ConfigError(ValueError):
    """A context value that cannot be used; the message names the key, the value and the rule."""


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"cdk.json context '{key}' = {value!r} is invalid: {allowed}. Set it in cdk.json or with -c {key}=...")


# --- parsers: each takes (key, raw value) and returns the typed value or raises ConfigError ------------


def _int(minimum: int, maximum: int) -> Callable[[str, Any], int]:
    def parse(key: str, raw: Any) -> int:
        text = str(raw).strip()
        whole = not isinstance(raw, (bool, float)) and re.fullmatch(r"-?\d+", text) is not None
        if not whole or not minimum <= int(text) <= maximum:
            raise _fail(key, raw, f"expected a whole number from {minimum} to {maximum}")
        return int(text)

    return parse


def _float(minimum: float, maximum: float) -> Callable[[str, Any], float]:
    def parse(key: str, raw: Any) -> float:
        try:
            value = float(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or not minimum <= value <= maximum:
            raise _fail(key, raw, f"expected a number from {minimum} to {maximum}")
        return value

    return parse


def _bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("true", "false"):
        return str(raw).lower() == "true"
    raise _fail(key, raw, "expected true or false")


def _choice(options: tuple[str, ...]) -> Callable[[str, Any], str]:
    def parse(key: str, raw: Any) -> str:
        if raw not in options:
            raise _fail(key, raw, f"expected one of {', '.join(options)}")
        return raw

    return parse


def _pattern(regex: re.Pattern[str], allowed: str) -> Callable[[str, Any], str]:
    def parse(key: str, raw: Any) -> str:
        if not isinstance(raw, str) or not regex.match(raw):
            raise _fail(key, raw, allowed)
        return raw

    return parse


def _optional_email(key: str, raw: Any) -> str:
    if raw in ("", None):
        return ""
    if not isinstance(raw, str) or not _EMAIL.match(raw):
        raise _fail(key, raw, "expected an e-mail address like ops@example.com, or an empty string for none")
    return raw


def _pretrained_weights(key: str, raw: Any) -> str:
    if raw in PRETRAINED_CHOICES or (isinstance(raw, str) and _S3_PREFIX.match(raw)):
        return raw
    raise _fail(
        key,
        raw,
        "expected imagenet (the ImageNet weights packaged with efficientnet_lite0), none (random init), or an S3 prefix "
        "ending in / that holds <model>.pth (a torchvision state_dict), like s3://my-bucket/pretrained/resnet18/",
    )


def _classes(key: str, raw: Any) -> tuple[int, ...]:
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
    ok = (
        isinstance(value, list)
        and len(value) >= 2
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 100 for c in value)
        and value == sorted(set(value))
    )
    if not ok:
        raise _fail(key, raw, "expected a JSON list of at least two distinct item counts in increasing order, e.g. [1,2,3,4,5]")
    return tuple(value)


def _memory_size(key: str, raw: Any) -> int:
    allowed = (1024, 2048, 3072, 4096, 5120, 6144)
    value = _int(1024, 6144)(key, raw)
    if value not in allowed:
        raise _fail(key, raw, f"expected one of {', '.join(map(str, allowed))} (serverless endpoint memory sizes)")
    return value


# --- the typed configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AppConfig:
    """Validated settings; field names are the snake_case form of the cdk.json context keys."""

    name_prefix: str
    region: str
    removal_policy: str
    alarm_email: str
    classes: tuple[int, ...]
    # data
    dataset_source: str
    prepare_instance_count: int
    data_format: str
    # SageMaker jobs
    processing_instance_type: str
    tuning_instance_type: str
    training_instance_type: str
    training_instance_count: int
    use_spot: bool
    max_runtime_seconds: int
    max_wait_seconds: int
    tuning_max_jobs: int
    tuning_max_parallel_jobs: int
    training_framework_version: str
    inference_framework_version: str
    python_version: str
    pretrained_weights: str
    # gate
    deploy_margin_over_baseline: float
    # endpoint
    endpoint_mode: str
    endpoint_instance_type: str
    endpoint_min_instances: int
    endpoint_max_instances: int
    endpoint_target_invocations_per_instance: int
    serverless_memory_mb: int
    serverless_max_concurrency: int
    # API
    api_auth: str
    api_throttle_rate_limit: int
    api_throttle_burst_limit: int
    api_quota_per_day: int
    max_images_per_request: int
    review_confidence_threshold: float
    verify_match_threshold: float
    verify_mismatch_threshold: float
    verify_instance_type: str
    verify_instance_count: int
    verify_views: str

    @property
    def endpoint_name(self) -> str:
        """The fixed endpoint name the pipeline deploys to and the serving stack calls."""
        return endpoint_name_for(self.name_prefix)

    @property
    def pretrained_s3_prefix(self) -> str | None:
        """The S3 prefix of pretrainedWeights, or None for imagenet / none."""
        return None if self.pretrained_weights in PRETRAINED_CHOICES else self.pretrained_weights

    @property
    def is_destroy(self) -> bool:
        return self.removal_policy == "destroy"


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


# Each field's cdk.json key and parser. The README's configuration table is checked against this.
PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "name_prefix": _pattern(_PREFIX, "expected 3-12 characters: lowercase letters, digits and '-', starting with a letter"),
    "region": _pattern(_REGION, "expected an AWS region name like us-east-1"),
    "removal_policy": _choice(REMOVAL_POLICIES),
    "alarm_email": _optional_email,
    "classes": _classes,
    "dataset_source": _pattern(_S3_URI, "expected an S3 URI like s3://aft-vbi-pds/ laid out as bin-images/ + metadata/"),
    "prepare_instance_count": _int(1, MAX_PREPARE_INSTANCES),
    "data_format": _choice(DATA_FORMATS),
    "processing_instance_type": _pattern(_INSTANCE_TYPE, "expected a SageMaker instance type like ml.m5.xlarge"),
    "tuning_instance_type": _pattern(_INSTANCE_TYPE, "expected a SageMaker instance type like ml.g5.xlarge"),
    "training_instance_type": _pattern(_INSTANCE_TYPE, "expected a SageMaker instance type like ml.g5.xlarge"),
    "training_instance_count": _int(1, 16),
    "use_spot": _bool,
    "max_runtime_seconds": _int(600, 432000),
    "max_wait_seconds": _int(600, 432000),
    "tuning_max_jobs": _int(1, 100),
    "tuning_max_parallel_jobs": _int(1, 10),
    "training_framework_version": _choice(TRAINING_FRAMEWORK_VERSIONS),
    "inference_framework_version": _choice(INFERENCE_FRAMEWORK_VERSIONS),
    "python_version": _choice(("py310", "py311", "py312")),
    "pretrained_weights": _pretrained_weights,
    "deploy_margin_over_baseline": _float(0.0, 1.0),
    "endpoint_mode": _choice(ENDPOINT_MODES),
    "endpoint_instance_type": _pattern(_INSTANCE_TYPE, "expected a SageMaker instance type like ml.m5.large"),
    "endpoint_min_instances": _int(1, 20),
    "endpoint_max_instances": _int(1, 20),
    "endpoint_target_invocations_per_instance": _int(1, 100000),
    "serverless_memory_mb": _memory_size,
    "serverless_max_concurrency": _int(1, 200),
    "api_auth": _choice(API_AUTH_MODES),
    "api_throttle_rate_limit": _int(1, 10000),
    "api_throttle_burst_limit": _int(1, 5000),
    "api_quota_per_day": _int(1, 100_000_000),
    "max_images_per_request": _int(1, 64),
    "review_confidence_threshold": _float(0.0, 1.0),
    "verify_match_threshold": _float(0.0, 1.0),
    "verify_mismatch_threshold": _float(0.0, 1.0),
    "verify_instance_type": _pattern(_INSTANCE_TYPE, "expected a SageMaker instance type like ml.m5.xlarge"),
    "verify_instance_count": _int(1, 20),
    "verify_views": _choice(verification.VIEWS),
}

CONTEXT_KEYS: dict[str, str] = {field: _camel(field) for field in PARSERS}

# What each key means; the README's configuration table is generated from this (`python -m infra.config`).
DESCRIPTIONS: dict[str, str] = {
    "name_prefix": "Prefix of every resource and job name (keeps job names inside SageMaker's length limits)",
    "region": "AWS region to deploy to",
    "removal_policy": "`retain` keeps buckets and the key on `cdk destroy`; `destroy` deletes them (test accounts)",
    "alarm_email": "E-mail subscribed to the pipeline/alarm SNS topic (empty: none)",
    "classes": "Item counts the model predicts; photos with other counts are skipped by prep and reported",
    "dataset_source": "S3 prefix laid out as `bin-images/<id>.jpg` + `metadata/<id>.json` (default: the public dataset)",
    "prepare_instance_count": "Instances of the Prepare processing job (execution input `prepareInstances` overrides); "
    "more than one writes `shards`, each instance its share of the ids",
    "data_format": "How Prepare writes the splits: `npy` (one array per split, the subset) or `shards` (streamed; "
    "the train channel streamed in FastFile mode); the execution input `dataset: all` or `prepareInstances` > 1 always uses `shards`",
    "processing_instance_type": "Instance type of the Prepare and Evaluate processing jobs",
    "tuning_instance_type": "Instance type of each tuning trial",
    "training_instance_type": "Instance type of the final (multi-instance) training job",
    "training_instance_count": "Instances in the final training job (data-parallel under torchrun)",
    "use_spot": "Managed spot training for trials and final training (with S3 checkpoints)",
    "max_runtime_seconds": "Longest a training job may run",
    "max_wait_seconds": "Longest a spot job may wait plus run (must be >= maxRuntimeSeconds with spot)",
    "tuning_max_jobs": "Tuning budget: trials in total",
    "tuning_max_parallel_jobs": "Trials that run at once",
    "training_framework_version": "PyTorch version of SageMaker's training container",
    "inference_framework_version": "PyTorch version of SageMaker's inference container",
    "python_version": "Python version of both containers",
    "pretrained_weights": "Default weights of every trial and the final training (execution input `pretrained` overrides): "
    "`imagenet` (packaged with efficientnet_lite0), `none` (random init) or `s3://bucket/prefix/` holding `<model>.pth`, "
    "passed as the `pretrained` channel; the SageMaker role may read that prefix and `s3://<artifacts>/pretrained/`",
    "deploy_margin_over_baseline": "Gate: test accuracy must beat the majority-class baseline by this much (0..1)",
    "endpoint_mode": "`instance` (real-time, autoscaled) or `serverless`",
    "endpoint_instance_type": "Instance type of a real-time endpoint",
    "endpoint_min_instances": "Autoscaling minimum (instance mode)",
    "endpoint_max_instances": "Autoscaling maximum (instance mode)",
    "endpoint_target_invocations_per_instance": "Autoscaling target: invocations per instance per minute",
    "serverless_memory_mb": "Memory of a serverless endpoint",
    "serverless_max_concurrency": "Concurrent invocations of a serverless endpoint",
    "api_auth": "REST API authentication: `apiKey` (API key + usage plan) or `iam` (SigV4)",
    "api_throttle_rate_limit": "API steady-state requests per second",
    "api_throttle_burst_limit": "API burst requests",
    "api_quota_per_day": "Requests per API key per day",
    "max_images_per_request": "Most photos one JSON request may carry",
    "review_confidence_threshold": "Predictions less confident than this are flagged `needs_review`",
    "verify_match_threshold": "Bin verification: `p_match` at or above this is verdict `match` (docs/verification.md)",
    "verify_mismatch_threshold": "Bin verification: `p_match` at or below this is verdict `mismatch`; between the two is `review`",
    "verify_instance_type": "Verify bins: Batch Transform instance type (the execution input's instanceType overrides it)",
    "verify_instance_count": "Verify bins: Batch Transform instance count (the execution input's instanceCount overrides it)",
    "verify_views": "Verify bins: `one` serves each photo alone (4x less compute), `served` the model's test-time flips too (the execution input's views overrides it)",
}


def is_gpu_instance(instance_type: str) -> bool:
    """Instance families with NVIDIA GPUs (ml.g4dn, ml.g5, ml.g6, ml.p3, ml.p4d, ml.p5 ...): multi-instance torchrun needs one."""
    return instance_type.split(".")[1].startswith(("g", "p"))


def _cross_checks(cfg: AppConfig) -> None:
    """Rules that relate two keys."""
    if cfg.use_spot and cfg.max_wait_seconds < cfg.max_runtime_seconds:
        raise _fail(
            "maxWaitSeconds", cfg.max_wait_seconds, f"must be at least maxRuntimeSeconds ({cfg.max_runtime_seconds}) when useSpot is true"
        )
    if cfg.training_instance_count > 1 and not is_gpu_instance(cfg.training_instance_type):
        # The PyTorch DLC starts torchrun across instances only on GPU instances (DESIGN.md).
        raise _fail(
            "trainingInstanceCount",
            cfg.training_instance_count,
            f"multi-instance training needs a GPU trainingInstanceType (ml.g*/ml.p*), not {cfg.training_instance_type}: use 1 instance or a GPU type",
        )
    if cfg.tuning_max_parallel_jobs > cfg.tuning_max_jobs:
        raise _fail("tuningMaxParallelJobs", cfg.tuning_max_parallel_jobs, f"must not exceed tuningMaxJobs ({cfg.tuning_max_jobs})")
    if cfg.endpoint_min_instances > cfg.endpoint_max_instances:
        raise _fail(
            "endpointMinInstances", cfg.endpoint_min_instances, f"must not exceed endpointMaxInstances ({cfg.endpoint_max_instances})"
        )
    if cfg.verify_mismatch_threshold >= cfg.verify_match_threshold:
        raise _fail(
            "verifyMismatchThreshold",
            cfg.verify_mismatch_threshold,
            f"must be below verifyMatchThreshold ({cfg.verify_match_threshold}): the band between them is verdict review",
        )
    if cfg.api_throttle_burst_limit < cfg.api_throttle_rate_limit / 10:
        raise _fail("apiThrottleBurstLimit", cfg.api_throttle_burst_limit, "must be at least a tenth of apiThrottleRateLimit")


def config_from_mapping(context: Mapping[str, Any]) -> AppConfig:
    """Build the config from a {cdkJsonKey: value} mapping (cdk.json context or a test's dict)."""
    values: dict[str, Any] = {}
    for field in fields(AppConfig):
        key = CONTEXT_KEYS[field.name]
        if key not in context or context[key] is None:
            raise ConfigError(f"cdk.json context '{key}' is missing: add it to cdk.json's \"context\" (see README, Configuration)")
        values[field.name] = PARSERS[field.name](key, context[key])
    cfg = AppConfig(**values)
    _cross_checks(cfg)
    return cfg


def api_settings(config: AppConfig) -> ApiSettings:
    """The count function's settings from cdk.json (the serving stack and local serving both use this); the invoke
    timeout and attempts keep the function's defaults: they follow API Gateway's 29 s limit, not a deployment choice."""
    return ApiSettings(
        endpoint_name=config.endpoint_name,
        max_images_per_request=config.max_images_per_request,
        review_confidence_threshold=config.review_confidence_threshold,
        verify_match_threshold=config.verify_match_threshold,
        verify_mismatch_threshold=config.verify_mismatch_threshold,
    )


def load_config(node: Node) -> AppConfig:
    """Read every key from the app's context (cdk.json plus -c overrides)."""
    return config_from_mapping({key: node.try_get_context(key) for key in CONTEXT_KEYS.values()})


def markdown_table(context: Mapping[str, Any]) -> str:
    """The README's configuration table: key, default (from cdk.json) and meaning."""
    rows = ["| Context key | Default | Meaning |", "| --- | --- | --- |"]
    for field, key in CONTEXT_KEYS.items():
        rows.append(f"| `{key}` | `{json.dumps(context.get(key))}` | {DESCRIPTIONS[field]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    from pathlib import Path

    print(markdown_table(json.loads((Path(__file__).resolve().parents[1] / "cdk.json").read_text())["context"]))
