from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_mode.api_server import LambdaContext, build_event
from local_mode.scripted_model import ScriptedEndpoint
from tests.serving.helpers import handler_environment

TRAINING_CODE = Path(__file__).resolve().parents[2] / "training_code"


@pytest.fixture(scope="session")
def scripted_endpoint() -> Iterator[ScriptedEndpoint]:
    """The endpoint emulator serving the scripted model, shared by the session."""
    server = ScriptedEndpoint()
    yield server
    server.close()


@pytest.fixture
def endpoint(scripted_endpoint: ScriptedEndpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedEndpoint]:
    """The emulated endpoint, reset to 'ok', with the handler's environment pointed at it."""
    scripted_endpoint.mode, scripted_endpoint.status = "ok", "InService"
    scripted_endpoint.calls.clear()
    scripted_endpoint.payloads.clear()
    for name, value in handler_environment(scripted_endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield scripted_endpoint


def rest_event(method: str, path: str, body: bytes = b"", content_type: str | None = None, **headers: str) -> dict[str, Any]:
    """A REST API proxy event as API Gateway sends it (binary media types base64-encoded)."""
    all_headers = {"x-api-key": "k", **headers}
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    return build_event(method, path, all_headers, body, "127.0.0.1")


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Call the real lambda_handler; return (status, headers, JSON body), checking the reply is well formed."""
    from count_api import app as handler

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


# --- a real model (slow): test_local_serving.py and test_page_browser.py share one ------------------------


def _run(args: list[str], **env: str) -> None:
    result = subprocess.run(
        [sys.executable, *args], cwd=TRAINING_CODE, capture_output=True, text=True, env={**os.environ, **env}, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model: synthetic bins -> prep.py -> train.py (1 epoch, mobilenet_v3_small at 64 px), as in the container."""
    work = tmp_path_factory.mktemp("trained")
    _run(["synthetic_bins.py", "--output", str(work / "src"), "--count", "30", "--seed", "3"])
    _run(["prep.py", "--source", str(work / "src"), "--output", str(work / "prep"), "--workers", "1"])
    _run(
        [
            "train.py", "--train", str(work / "prep" / "train"), "--validation", str(work / "prep" / "validation"),
            "--model", "mobilenet_v3_small", "--epochs", "1", "--batch-size", "16", "--image-size", "64", "--augment", "off",
            "--model-dir", str(work / "model"), "--output-data-dir", str(work / "output"), "--checkpoint-dir", str(work / "ckpt"),
            "--model-version", "e2e-test",
        ],
        OMP_NUM_THREADS="2",
    )  # fmt: skip
    return work / "model"
