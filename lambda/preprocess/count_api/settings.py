"""The count function's environment: the one home of its variable names, their defaults and ranges.

The function reads it (load_api_settings); every writer builds it with function_environment() from typed
values: the serving stack (infra/serving_stack.py), local mode (local_mode/local_serving.py), the tests and
the benchmarks. Standard library only: this module ships in the Lambda asset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from enum import StrEnum

import verification

# The SageMaker endpoint the pipeline deploys and the function calls is "<namePrefix>-count-endpoint".
ENDPOINT_NAME_SUFFIX = "-count-endpoint"
# Powertools' service and metric namespace on AWS (the dashboard and alarms read the same names).
SERVICE_NAME = "count-api"
METRICS_NAMESPACE = "InventoryMonitor"


class Variable(StrEnum):
    """The environment variables the function reads."""

    ENDPOINT_NAME = "ENDPOINT_NAME"
    MAX_IMAGES_PER_REQUEST = "MAX_IMAGES_PER_REQUEST"
    REVIEW_CONFIDENCE_THRESHOLD = "REVIEW_CONFIDENCE_THRESHOLD"
    VERIFY_MATCH_THRESHOLD = "VERIFY_MATCH_THRESHOLD"
    VERIFY_MISMATCH_THRESHOLD = "VERIFY_MISMATCH_THRESHOLD"
    INVOKE_TIMEOUT_SECONDS = "INVOKE_TIMEOUT_SECONDS"
    INVOKE_MAX_ATTEMPTS = "INVOKE_MAX_ATTEMPTS"
    MAX_BODY_BYTES = "MAX_BODY_BYTES"
    POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
    POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
    POWERTOOLS_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
    POWERTOOLS_METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"
    POWERTOOLS_TRACE_DISABLED = "POWERTOOLS_TRACE_DISABLED"


@dataclass(frozen=True)
class ApiSettings:
    """What the function is configured with; the field defaults are the function's defaults."""

    endpoint_name: str
    max_images_per_request: int = 8
    review_confidence_threshold: float = 0.5
    verify_match_threshold: float = verification.DEFAULT_MATCH_THRESHOLD
    verify_mismatch_threshold: float = verification.DEFAULT_MISMATCH_THRESHOLD
    # API Gateway gives up after 29 s: two attempts of 12 s plus preprocessing end before the function's 28 s.
    invoke_timeout_s: float = 12
    invoke_max_attempts: int = 2
    # Lambda's synchronous payload limit is 6 MB for the whole event; base64 adds a third, so a raw body
    # above ~4.4 MB never reaches the function. 4 MB decoded leaves room for headers.
    max_body_bytes: int = 4_000_000


@dataclass(frozen=True)
class _Number:
    """One numeric setting: its variable, its ApiSettings field, its type and its allowed range."""

    variable: Variable
    field: str
    cast: type
    minimum: float
    maximum: float


NUMBERS = (
    _Number(Variable.MAX_IMAGES_PER_REQUEST, "max_images_per_request", int, 1, 64),
    _Number(Variable.REVIEW_CONFIDENCE_THRESHOLD, "review_confidence_threshold", float, 0.0, 1.0),
    _Number(Variable.VERIFY_MATCH_THRESHOLD, "verify_match_threshold", float, 0.0, 1.0),
    _Number(Variable.VERIFY_MISMATCH_THRESHOLD, "verify_mismatch_threshold", float, 0.0, 1.0),
    _Number(Variable.INVOKE_TIMEOUT_SECONDS, "invoke_timeout_s", float, 0.1, 28),
    _Number(Variable.INVOKE_MAX_ATTEMPTS, "invoke_max_attempts", int, 1, 5),
    _Number(Variable.MAX_BODY_BYTES, "max_body_bytes", int, 1, 10_000_000),
)
_DEFAULTS = {f.name: f.default for f in fields(ApiSettings)}


@dataclass(frozen=True)
class Powertools:
    """The Powertools variables: on AWS, metrics to CloudWatch and traces to X-Ray; elsewhere, neither."""

    service_name: str = SERVICE_NAME
    metrics_namespace: str = METRICS_NAMESPACE
    log_level: str = "INFO"
    outside_lambda: bool = False


def endpoint_name_for(name_prefix: str) -> str:
    """The endpoint name the pipeline deploys and the serving stack calls."""
    return f"{name_prefix}{ENDPOINT_NAME_SUFFIX}"


def api_environment(settings: ApiSettings) -> dict[str, str]:
    """The function's own variables for `settings`; MAX_BODY_BYTES only when it is not the default (the stack
    leaves it there: it follows Lambda's payload limit, not a deployment choice)."""
    environment = {Variable.ENDPOINT_NAME.value: settings.endpoint_name}
    for number in NUMBERS:
        value = getattr(settings, number.field)
        if number.variable is not Variable.MAX_BODY_BYTES or value != _DEFAULTS[number.field]:
            environment[number.variable.value] = str(value)
    return environment


def powertools_environment(powertools: Powertools) -> dict[str, str]:
    environment = {
        Variable.POWERTOOLS_SERVICE_NAME.value: powertools.service_name,
        Variable.POWERTOOLS_METRICS_NAMESPACE.value: powertools.metrics_namespace,
        Variable.POWERTOOLS_LOG_LEVEL.value: powertools.log_level,
    }
    if powertools.outside_lambda:
        environment[Variable.POWERTOOLS_METRICS_DISABLED.value] = "true"
        environment[Variable.POWERTOOLS_TRACE_DISABLED.value] = "true"
    return environment


def function_environment(settings: ApiSettings, powertools: Powertools | None = None) -> dict[str, str]:
    """The whole environment the function runs with: its settings, then Powertools'."""
    return {**api_environment(settings), **powertools_environment(powertools or Powertools())}


def _number(number: _Number) -> float:
    raw = os.environ.get(number.variable, str(_DEFAULTS[number.field]))
    try:
        value = number.cast(raw)
    except ValueError:
        value = None
    if value is None or not number.minimum <= value <= number.maximum:
        raise RuntimeError(f"environment variable {number.variable}={raw!r} must be a number from {number.minimum} to {number.maximum}")
    return value


def load_api_settings() -> ApiSettings:
    """Read and check every setting; a bad value is the deployer's mistake and names the variable."""
    endpoint_name = os.environ.get(Variable.ENDPOINT_NAME, "").strip()
    if not endpoint_name:
        raise RuntimeError(f"environment variable {Variable.ENDPOINT_NAME} is not set: it names the SageMaker endpoint to call")
    settings = ApiSettings(endpoint_name=endpoint_name, **{number.field: _number(number) for number in NUMBERS})
    if not settings.verify_mismatch_threshold < settings.verify_match_threshold:
        raise RuntimeError(
            f"environment variable {Variable.VERIFY_MISMATCH_THRESHOLD}={settings.verify_mismatch_threshold} must be below "
            f"{Variable.VERIFY_MATCH_THRESHOLD}={settings.verify_match_threshold}"
        )
    return settings
