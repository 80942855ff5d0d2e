"""infra/config.py: every rule, with a bad value and the exact message it produces."""

from __future__ import annotations

import re

import pytest
from count_api.settings import ApiSettings

from infra.config import CONTEXT_KEYS, ConfigError, api_settings, config_from_mapping


def with_override(context: dict, **overrides) -> dict:
    return {**context, **overrides}


def test_defaults_in_cdk_json_are_valid(default_context):
    cfg = config_from_mapping(default_context)
    assert cfg.training_instance_count == 2
    assert cfg.classes == (1, 2, 3, 4, 5)
    assert cfg.endpoint_name == "invmon-count-endpoint"


def test_every_config_key_has_a_default_in_cdk_json(default_context):
    missing = sorted(set(CONTEXT_KEYS.values()) - set(default_context))
    assert missing == []


def test_cli_strings_are_parsed_like_json_values(default_context):
    # `cdk synth -c trainingInstanceCount=4 -c useSpot=false` delivers strings.
    cfg = config_from_mapping(
        with_override(default_context, trainingInstanceCount="4", useSpot="false", classes="[0,1,2]", reviewConfidenceThreshold="0.7")
    )
    assert (cfg.training_instance_count, cfg.use_spot, cfg.classes, cfg.review_confidence_threshold) == (4, False, (0, 1, 2), 0.7)


def test_api_settings_map_cdk_json_to_the_function_and_keep_its_invoke_defaults(default_context):
    # Values unlike the function's defaults, so a field the mapping forgets (left at its default) fails.
    context = with_override(
        default_context,
        namePrefix="shop",
        maxImagesPerRequest=3,
        reviewConfidenceThreshold=0.2,
        verifyMatchThreshold=0.9,
        verifyMismatchThreshold=0.05,
    )
    settings = api_settings(config_from_mapping(context))
    defaults = ApiSettings(endpoint_name="")
    assert (
        settings.endpoint_name,
        settings.max_images_per_request,
        settings.review_confidence_threshold,
        settings.verify_match_threshold,
        settings.verify_mismatch_threshold,
    ) == ("shop-count-endpoint", 3, 0.2, 0.9, 0.05)
    # The invoke timeout and attempts follow API Gateway's 29 s limit, and the body limit Lambda's payload limit: not cdk.json's.
    assert (settings.invoke_timeout_s, settings.invoke_max_attempts, settings.max_body_bytes) == (
        defaults.invoke_timeout_s,
        defaults.invoke_max_attempts,
        defaults.max_body_bytes,
    )


PRETRAINED_RULE = (
    "expected imagenet (the ImageNet weights packaged with efficientnet_lite0), none (random init), or an S3 prefix "
    "ending in / that holds <model>.pth (a torchvision state_dict), like s3://my-bucket/pretrained/resnet18/"
)

BAD_VALUES = [
    (
        "trainingInstanceCount",
        0,
        "cdk.json context 'trainingInstanceCount' = 0 is invalid: expected a whole number from 1 to 16. "
        "Set it in cdk.json or with -c trainingInstanceCount=...",
    ),
    ("trainingInstanceCount", "two", "'trainingInstanceCount' = 'two' is invalid: expected a whole number from 1 to 16"),
    ("trainingInstanceCount", 2.5, "'trainingInstanceCount' = 2.5 is invalid: expected a whole number from 1 to 16"),
    ("endpointMode", "async", "'endpointMode' = 'async' is invalid: expected one of instance, serverless"),
    ("apiAuth", "cognito", "'apiAuth' = 'cognito' is invalid: expected one of apiKey, iam"),
    ("removalPolicy", "snapshot", "'removalPolicy' = 'snapshot' is invalid: expected one of retain, destroy"),
    (
        "alarmEmail",
        "ops-at-example.com",
        "'alarmEmail' = 'ops-at-example.com' is invalid: expected an e-mail address like ops@example.com, or an empty string for none",
    ),
    (
        "namePrefix",
        "Inventory_Monitor",
        "'namePrefix' = 'Inventory_Monitor' is invalid: expected 3-12 characters: lowercase letters, digits and '-', starting with a letter",
    ),
    ("region", "mars-1", "'region' = 'mars-1' is invalid: expected an AWS region name like us-east-1"),
    ("useSpot", "maybe", "'useSpot' = 'maybe' is invalid: expected true or false"),
    (
        "classes",
        [3, 1],
        "'classes' = [3, 1] is invalid: expected a JSON list of at least two distinct item counts in increasing order, e.g. [1,2,3,4,5]",
    ),
    (
        "datasetSource",
        "bucket/prefix",
        "'datasetSource' = 'bucket/prefix' is invalid: expected an S3 URI like s3://aft-vbi-pds/ laid out as bin-images/ + metadata/",
    ),
    (
        "trainingInstanceType",
        "g5.xlarge",
        "'trainingInstanceType' = 'g5.xlarge' is invalid: expected a SageMaker instance type like ml.g5.xlarge",
    ),
    (
        "trainingFrameworkVersion",
        "2.13",
        "'trainingFrameworkVersion' = '2.13' is invalid: expected one of 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9, 2.10",
    ),
    ("inferenceFrameworkVersion", "2.8", "'inferenceFrameworkVersion' = '2.8' is invalid: expected one of 2.3, 2.4, 2.5, 2.6"),
    ("pythonVersion", "py39", "'pythonVersion' = 'py39' is invalid: expected one of py310, py311, py312"),
    ("deployMarginOverBaseline", 1.5, "'deployMarginOverBaseline' = 1.5 is invalid: expected a number from 0.0 to 1.0"),
    ("reviewConfidenceThreshold", "high", "'reviewConfidenceThreshold' = 'high' is invalid: expected a number from 0.0 to 1.0"),
    ("verifyMatchThreshold", "1.5", "'verifyMatchThreshold' = '1.5' is invalid: expected a number from 0.0 to 1.0"),
    ("verifyMismatchThreshold", "0.45", "'verifyMismatchThreshold' = 0.45 is invalid: must be below verifyMatchThreshold (0.45)"),
    (
        "serverlessMemoryMb",
        2500,
        "'serverlessMemoryMb' = 2500 is invalid: expected one of 1024, 2048, 3072, 4096, 5120, 6144 (serverless endpoint memory sizes)",
    ),
    ("maxImagesPerRequest", 100, "'maxImagesPerRequest' = 100 is invalid: expected a whole number from 1 to 64"),
    ("prepareInstanceCount", 0, "'prepareInstanceCount' = 0 is invalid: expected a whole number from 1 to 20"),
    ("prepareInstanceCount", 21, "'prepareInstanceCount' = 21 is invalid: expected a whole number from 1 to 20"),
    ("prepareInstanceCount", 1.5, "'prepareInstanceCount' = 1.5 is invalid: expected a whole number from 1 to 20"),
    ("dataFormat", "tar", "'dataFormat' = 'tar' is invalid: expected one of npy, shards"),
    ("dataFormat", "NPY", "'dataFormat' = 'NPY' is invalid: expected one of npy, shards"),
    ("tuningMaxJobs", 0, "'tuningMaxJobs' = 0 is invalid: expected a whole number from 1 to 100"),
    ("maxRuntimeSeconds", 60, "'maxRuntimeSeconds' = 60 is invalid: expected a whole number from 600 to 432000"),
    *(
        ("pretrainedWeights", value, f"'pretrainedWeights' = {value!r} is invalid: {PRETRAINED_RULE}")
        for value in (
            "ImageNet",  # case-sensitive, as train.py's flag
            "s3://my-bucket/pretrained/resnet18.pth",  # a file, not a prefix ending in /
            "s3://my-bucket/pretrained/*/",  # "*" would be a wildcard in IAM and in StringMatches
            "s3://My_Bucket/pretrained/",  # not a bucket name
            "my-bucket/pretrained/",
            "",
            True,
        )
    ),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_value_names_key_value_and_rule(default_context, key, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_mapping(with_override(default_context, **{key: value}))


CROSS_RULES = [
    (
        {"trainingInstanceCount": 2, "trainingInstanceType": "ml.m5.xlarge"},
        "'trainingInstanceCount' = 2 is invalid: multi-instance training needs a GPU trainingInstanceType (ml.g*/ml.p*), not ml.m5.xlarge",
    ),
    (
        {"useSpot": True, "maxRuntimeSeconds": 7200, "maxWaitSeconds": 3600},
        "'maxWaitSeconds' = 3600 is invalid: must be at least maxRuntimeSeconds (7200) when useSpot is true",
    ),
    ({"tuningMaxJobs": 2, "tuningMaxParallelJobs": 3}, "'tuningMaxParallelJobs' = 3 is invalid: must not exceed tuningMaxJobs (2)"),
    (
        {"endpointMinInstances": 3, "endpointMaxInstances": 2},
        "'endpointMinInstances' = 3 is invalid: must not exceed endpointMaxInstances (2)",
    ),
    (
        {"apiThrottleRateLimit": 1000, "apiThrottleBurstLimit": 10},
        "'apiThrottleBurstLimit' = 10 is invalid: must be at least a tenth of apiThrottleRateLimit",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), CROSS_RULES, ids=[m.split("'")[1] for _, m in CROSS_RULES])
def test_rules_across_keys(default_context, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_mapping(with_override(default_context, **overrides))


def test_spot_off_allows_any_max_wait(default_context):
    cfg = config_from_mapping(with_override(default_context, useSpot=False, maxRuntimeSeconds=7200, maxWaitSeconds=3600))
    assert cfg.use_spot is False


def test_missing_key_says_where_to_add_it(default_context):
    context = dict(default_context)
    del context["endpointMode"]
    with pytest.raises(ConfigError, match=re.escape("cdk.json context 'endpointMode' is missing: add it to cdk.json's \"context\"")):
        config_from_mapping(context)


@pytest.mark.parametrize("value", ["imagenet", "none", "s3://my-bucket/", "s3://my.bucket-1/team/weights/resnet18/"])
def test_pretrained_weights_accepts_imagenet_none_or_an_s3_prefix(default_context, value):
    cfg = config_from_mapping(with_override(default_context, pretrainedWeights=value))
    assert cfg.pretrained_weights == value
    assert cfg.pretrained_s3_prefix == (value if value.startswith("s3://") else None)


def test_pretrained_weights_default_is_imagenet(default_context):
    assert config_from_mapping(default_context).pretrained_weights == "imagenet"


def test_data_defaults_keep_the_subset_path(default_context):
    """cdk.json's defaults: one Prepare instance writing the npy splits (the state machine's request before issue 16)."""
    cfg = config_from_mapping(default_context)
    assert (cfg.prepare_instance_count, cfg.data_format) == (1, "npy")


def test_data_keys_parse_cli_strings(default_context):
    cfg = config_from_mapping(with_override(default_context, prepareInstanceCount="4", dataFormat="shards"))
    assert (cfg.prepare_instance_count, cfg.data_format) == (4, "shards")
