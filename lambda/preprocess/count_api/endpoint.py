"""Calls to SageMaker: InvokeEndpoint (the count) and DescribeEndpoint (the health check).

Every botocore failure becomes a typed ApiError here, so the routes never see botocore exceptions.
The same code runs on AWS and locally: local mode points AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME and
AWS_ENDPOINT_URL_SAGEMAKER at local_mode/endpoint_server.py, which answers both APIs.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ConnectTimeoutError, ReadTimeoutError

from count_api.errors import EndpointError, EndpointModelError, EndpointTimeout, EndpointUnavailable
from count_api.settings import ApiSettings

NOT_DEPLOYED_MESSAGE = (
    "the model endpoint '{name}' is not deployed yet: run the training pipeline (Step Functions state machine, "
    "or `make demo` locally); it deploys the endpoint when the model passes the gate"
)
RETRY_AFTER_THROTTLED_S = 2
RETRY_AFTER_NOT_READY_S = 30
# Endpoint states in which InvokeEndpoint is answered (Updating keeps the old variant serving).
SERVING_STATES = ("InService", "Updating", "SystemUpdating")


@lru_cache(maxsize=8)
def _client(service: str, endpoint_url: str | None, timeout_s: float, attempts: int) -> Any:
    # Keyed by the endpoint URL too, so tests and local mode can re-point the client between calls.
    config = Config(
        connect_timeout=min(timeout_s, 5),
        read_timeout=timeout_s,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )
    # botocore directly, not boto3: boto3's import pulls in s3transfer (~0.2 s of cold start, docs/benchmarks.md).
    return botocore.session.get_session().create_client(service, config=config, endpoint_url=endpoint_url)


def runtime_client(settings: ApiSettings) -> Any:
    return _client(
        "sagemaker-runtime", os.environ.get("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"), settings.invoke_timeout_s, settings.invoke_max_attempts
    )


def control_client(settings: ApiSettings) -> Any:
    return _client("sagemaker", os.environ.get("AWS_ENDPOINT_URL_SAGEMAKER"), min(settings.invoke_timeout_s, 5), 1)


def invoke_npy(settings: ApiSettings, payload: bytes) -> dict[str, Any]:
    """One InvokeEndpoint call with an application/x-npy batch; returns the endpoint's parsed JSON reply."""
    try:
        reply = runtime_client(settings).invoke_endpoint(
            EndpointName=settings.endpoint_name, ContentType="application/x-npy", Accept="application/json", Body=payload
        )
        body = reply["Body"].read()
    except ClientError as error:
        raise _from_client_error(error, settings.endpoint_name) from None
    except ReadTimeoutError:
        raise EndpointTimeout(
            "endpoint_timeout", f"the model endpoint did not answer within {settings.invoke_timeout_s:g} s: retry, or send fewer images"
        ) from None
    except (ConnectTimeoutError, ConnectionError):
        raise EndpointUnavailable(
            "endpoint_unreachable", "the model endpoint could not be reached: retry shortly", retry_after_s=RETRY_AFTER_THROTTLED_S
        ) from None
    except BotoCoreError as error:
        raise EndpointError("endpoint_error", f"calling the model endpoint failed ({type(error).__name__})") from None
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EndpointError("bad_endpoint_reply", "the model endpoint answered something that is not JSON") from None
    if not isinstance(document, dict):
        raise EndpointError("bad_endpoint_reply", "the model endpoint's reply is not a JSON object")
    return document


def describe(settings: ApiSettings) -> dict[str, Any] | None:
    """DescribeEndpoint; None when the endpoint does not exist (not deployed yet)."""
    try:
        return control_client(settings).describe_endpoint(EndpointName=settings.endpoint_name)
    except ClientError as error:
        translated = _from_client_error(error, settings.endpoint_name)
        if translated.code == "endpoint_not_deployed":
            return None
        raise translated from None
    except (ReadTimeoutError, ConnectTimeoutError, ConnectionError):
        raise EndpointUnavailable("sagemaker_unreachable", "SageMaker could not be reached: retry shortly", retry_after_s=5) from None
    except BotoCoreError as error:
        raise EndpointError("endpoint_error", f"describing the model endpoint failed ({type(error).__name__})") from None


def _from_client_error(error: ClientError, endpoint_name: str) -> Exception:
    info = error.response.get("Error", {})
    code = str(info.get("Code", ""))
    message = str(info.get("Message", ""))
    if code == "ModelError":
        original = error.response.get("OriginalMessage") or message
        return EndpointModelError("model_error", f"the model could not process the photos: {original}"[:1000])
    if code in ("ValidationError", "ValidationException") and ("not found" in message.lower() or "could not find" in message.lower()):
        return EndpointUnavailable(
            "endpoint_not_deployed", NOT_DEPLOYED_MESSAGE.format(name=endpoint_name), retry_after_s=RETRY_AFTER_NOT_READY_S
        )
    if code in ("ThrottlingException", "Throttling", "TooManyRequestsException"):
        return EndpointUnavailable(
            "endpoint_throttled", "the model endpoint is busy: retry after a short wait", retry_after_s=RETRY_AFTER_THROTTLED_S
        )
    if code in ("ModelNotReadyException", "ServiceUnavailable", "ServiceUnavailableException"):
        return EndpointUnavailable(
            "endpoint_not_ready", "the model endpoint is starting or scaling: retry shortly", retry_after_s=RETRY_AFTER_NOT_READY_S
        )
    return EndpointError("endpoint_error", f"the model endpoint call failed ({code or 'unknown error'})")


def retry_after_header(seconds: int | None) -> dict[str, str]:
    return {"Retry-After": str(math.ceil(seconds))} if seconds else {}
