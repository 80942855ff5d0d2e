"""The serving contracts' one home (count_api/settings.py, count_api/gateway.py) and their readers and writers:
the function reads back exactly what function_environment() writes, the endpoint name follows the config,
and the local gateway applies the stack's stage and binary media types."""

from __future__ import annotations

import json

import pytest
from count_api.gateway import BINARY_MEDIA_TYPES, STAGE_NAME
from count_api.settings import ApiSettings, Powertools, Variable, endpoint_name_for, function_environment, load_api_settings

from infra.config import config_from_mapping
from local_mode.api_server import build_event
from local_mode.local_serving import deployed_endpoint_name
from local_mode.paths import ROOT

NOT_DEFAULT = ApiSettings(
    endpoint_name="ep-1",
    max_images_per_request=3,
    review_confidence_threshold=0.25,
    verify_match_threshold=0.8,
    verify_mismatch_threshold=0.05,
    invoke_timeout_s=2.5,
    invoke_max_attempts=4,
    max_body_bytes=1234,
)


def _set(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> None:
    for variable in Variable:
        monkeypatch.delenv(variable.value, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("settings", [NOT_DEFAULT, ApiSettings(endpoint_name="ep-2")], ids=["changed", "defaults"])
def test_the_function_reads_back_what_the_writers_write(monkeypatch: pytest.MonkeyPatch, settings: ApiSettings) -> None:
    _set(monkeypatch, function_environment(settings))
    assert load_api_settings() == settings


def test_the_body_limit_is_written_only_when_changed() -> None:
    assert Variable.MAX_BODY_BYTES not in function_environment(ApiSettings(endpoint_name="ep"))
    assert function_environment(NOT_DEFAULT)[Variable.MAX_BODY_BYTES] == "1234"


def test_outside_lambda_metrics_and_traces_are_off() -> None:
    local = function_environment(ApiSettings(endpoint_name="ep"), Powertools(outside_lambda=True))
    on_aws = function_environment(ApiSettings(endpoint_name="ep"))
    assert local[Variable.POWERTOOLS_METRICS_DISABLED] == local[Variable.POWERTOOLS_TRACE_DISABLED] == "true"
    assert Variable.POWERTOOLS_METRICS_DISABLED not in on_aws and Variable.POWERTOOLS_TRACE_DISABLED not in on_aws


def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, {**function_environment(ApiSettings(endpoint_name="ep")), "INVOKE_MAX_ATTEMPTS": "9"})
    with pytest.raises(RuntimeError, match="INVOKE_MAX_ATTEMPTS='9'"):
        load_api_settings()


def test_local_serving_calls_the_endpoint_the_stack_calls() -> None:
    config = config_from_mapping(json.loads((ROOT / "cdk.json").read_text())["context"])
    assert deployed_endpoint_name() == config.endpoint_name == endpoint_name_for(config.name_prefix)


@pytest.mark.parametrize("content_type", ["image/jpeg", "IMAGE/PNG; q=1", "application/json", "text/plain"])
def test_the_local_gateway_applies_the_stage_and_the_binary_media_types(content_type: str) -> None:
    event = build_event("POST", "/v1/count", {"Content-Type": content_type}, b"\x89data", "127.0.0.1")
    binary = content_type.split(";")[0].lower() in BINARY_MEDIA_TYPES
    assert event["isBase64Encoded"] is binary
    assert event["requestContext"]["stage"] == STAGE_NAME and event["requestContext"]["path"] == f"/{STAGE_NAME}/v1/count"
