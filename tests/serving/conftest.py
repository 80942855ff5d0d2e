from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from local_mode.api_server import LambdaContext, build_event
from tests.serving.fakes import ENDPOINT_NAME, FakeEndpoint


@pytest.fixture(scope="session")
def fake_endpoint() -> Iterator[FakeEndpoint]:
    server = FakeEndpoint()
    yield server
    server.close()


@pytest.fixture
def endpoint(fake_endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEndpoint]:
    """The emulated endpoint, reset to 'ok', with the handler's environment pointed at it."""
    fake_endpoint.mode, fake_endpoint.status = "ok", "InService"
    fake_endpoint.calls.clear()
    fake_endpoint.payloads.clear()
    for name, value in {
        "ENDPOINT_NAME": ENDPOINT_NAME,
        "MAX_IMAGES_PER_REQUEST": "4",
        "REVIEW_CONFIDENCE_THRESHOLD": "0.5",
        "INVOKE_TIMEOUT_SECONDS": "1",
        "INVOKE_MAX_ATTEMPTS": "1",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": fake_endpoint.url,
        "AWS_ENDPOINT_URL_SAGEMAKER": fake_endpoint.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "POWERTOOLS_METRICS_NAMESPACE": "InventoryMonitorTest",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield fake_endpoint


def rest_event(method: str, path: str, body: bytes = b"", content_type: str | None = None, **headers: str) -> dict[str, Any]:
    """A REST API proxy event as API Gateway sends it (binary media types base64-encoded)."""
    all_headers = {"x-api-key": "k", **headers}
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    return build_event(method, path, all_headers, body, "127.0.0.1")


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Call the real lambda_handler; return (status, headers, JSON body), checking the reply is well formed."""
    import handler

    reply = handler.lambda_handler(event, LambdaContext(aws_request_id="lambda-req-1", deadline=9e9))
    body = base64.b64decode(reply["body"]) if reply.get("isBase64Encoded") else reply["body"].encode()
    headers = {k.lower(): v for k, v in (reply.get("headers") or {}).items()}
    for k, values in (reply.get("multiValueHeaders") or {}).items():
        headers.setdefault(k.lower(), ", ".join(values))
    assert headers.get("content-type") == "application/json", reply
    return reply["statusCode"], headers, json.loads(body)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Metrics are disabled in these tests, so Powertools warns on each request that it has none to publish.
    for item in items:
        if "tests/serving/" in str(item.path):
            item.add_marker(pytest.mark.filterwarnings("ignore:No application metrics to publish"))
