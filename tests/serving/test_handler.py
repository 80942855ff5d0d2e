"""The Lambda handler with real API Gateway proxy events; the endpoint is emulated at the HTTP level
(local_mode/scripted_model.py: boto3 really calls a local HTTP server through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from local_mode.hostile_inputs import jpeg_with_dimensions, png_bomb_header
from local_mode.scripted_model import ScriptedEndpoint
from tests.serving.conftest import invoke, rest_event
from tests.serving.helpers import photo

pytestmark = pytest.mark.usefixtures("endpoint")


def _error(status: int, code: str, event: dict) -> dict:
    got_status, headers, body = invoke(event)
    assert (got_status, body["error"]["code"]) == (status, code), body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert len(body["error"]["message"]) > 20 and "Traceback" not in body["error"]["message"]
    return {"headers": headers, **body}


# --- success ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,content_type", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("JPEG", "image/jpeg; charset=binary")])
def test_single_binary_photo_is_counted(endpoint: ScriptedEndpoint, fmt: str, content_type: str) -> None:
    event = rest_event("POST", "/v1/count", photo(fmt, shade=220), content_type)
    assert event["isBase64Encoded"] is True  # what API Gateway does for binary media types
    status, headers, body = invoke(event)
    assert status == 200, body
    assert body["count"] == 5 and body["confidence"] == pytest.approx(0.9)
    assert set(body["probabilities"]) == {"1", "2", "3", "4", "5"}
    assert body["needs_review"] is False
    assert body["model_version"] == "fake-7" == headers["x-model-version"]
    assert body["request_id"] == event["requestContext"]["requestId"] == headers["x-request-id"]
    # one InvokeEndpoint call with a uint8 [1, 224, 224, 3] NPY batch
    assert endpoint.calls == [("application/x-npy", (1, 224, 224, 3))]


def test_low_confidence_needs_review() -> None:
    status, _, body = invoke(rest_event("POST", "/v1/count", photo(shade=60), "image/jpeg"))
    assert status == 200 and body["confidence"] == pytest.approx(0.3) and body["needs_review"] is True


def test_json_batch_echoes_ids_in_one_call(endpoint: ScriptedEndpoint) -> None:
    images = [
        {"id": "bin-a", "data": base64.b64encode(photo(shade=220)).decode()},
        {"id": "bin-b", "data": base64.b64encode(photo("PNG", shade=40)).decode()},
    ]
    status, _, body = invoke(rest_event("POST", "/v1/count", json.dumps({"images": images}).encode(), "application/json"))
    assert status == 200, body
    assert [r["id"] for r in body["results"]] == ["bin-a", "bin-b"]
    assert [r["needs_review"] for r in body["results"]] == [False, True]
    assert endpoint.calls == [("application/x-npy", (2, 224, 224, 3))]


def test_exif_rotated_photo_is_accepted() -> None:
    image = Image.new("RGB", (300, 200), (200, 200, 200))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    status, _, body = invoke(rest_event("POST", "/v1/count", out.getvalue(), "image/jpeg"))
    assert status == 200 and body["count"] == 4


def test_health_reports_serving_endpoint() -> None:
    status, _, body = invoke(rest_event("GET", "/v1/health"))
    assert status == 200 and body["serving"] is True and body["endpoint"]["status"] == "InService"


# --- the caller's mistakes: 4xx naming the problem ---------------------------------------------------------


def test_empty_body() -> None:
    _error(400, "empty_body", rest_event("POST", "/v1/count", b"", "image/jpeg"))


def test_wrong_media_type() -> None:
    body = _error(415, "unsupported_media_type", rest_event("POST", "/v1/count", b"hello", "text/plain"))
    assert "text/plain" in body["error"]["message"]


def test_missing_media_type() -> None:
    _error(415, "unsupported_media_type", rest_event("POST", "/v1/count", photo()))


def test_not_an_image() -> None:
    _error(400, "not_an_image", rest_event("POST", "/v1/count", b"\x00\x01garbage" * 50, "image/png"))


def test_truncated_jpeg() -> None:
    data = photo(size=(640, 480))
    _error(400, "corrupt_image", rest_event("POST", "/v1/count", data[: len(data) // 3], "image/jpeg"))


def test_gif_is_refused() -> None:
    out = io.BytesIO()
    Image.new("RGB", (50, 50)).save(out, format="GIF")
    _error(415, "unsupported_image_format", rest_event("POST", "/v1/count", out.getvalue(), "image/jpeg"))


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # PNG and JPEG headers claiming 30000x30000 pixels (900 MP) with almost no data: refused from the header.
    _error(413, "image_too_large", rest_event("POST", "/v1/count", png_bomb_header(30000, 30000), "image/png"))
    _error(413, "image_too_large", rest_event("POST", "/v1/count", jpeg_with_dimensions(30000, 30000), "image/jpeg"))
    # Just above the spec's 40 MP limit, below Pillow's own bomb limit: the spec's check answers.
    body = _error(413, "image_too_large", rest_event("POST", "/v1/count", png_bomb_header(8000, 6000), "image/png"))
    assert "8000x6000" in body["error"]["message"]


def test_body_over_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "1000")
    _error(413, "payload_too_large", rest_event("POST", "/v1/count", photo(size=(800, 600)), "image/jpeg"))


def test_too_many_images() -> None:
    images = [{"id": str(i), "data": base64.b64encode(photo()).decode()} for i in range(5)]
    body = _error(400, "too_many_images", rest_event("POST", "/v1/count", json.dumps({"images": images}).encode(), "application/json"))
    assert "limit of 4" in body["error"]["message"]


@pytest.mark.parametrize(
    "document,code",
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_request"),
        (b'{"images": []}', "no_images"),
        (b'{"images": ["x"]}', "invalid_request"),
        (b'{"images": [{"id": 5, "data": "AAAA"}]}', "invalid_id"),
        (b'{"images": [{"id": "a", "data": "!!!"}]}', "invalid_base64"),
        (b'{"images": [{"id": "a", "data": "AAAA"}, {"id": "a", "data": "AAAA"}]}', "duplicate_id"),
    ],
)
def test_bad_json_batches(document: bytes, code: str) -> None:
    _error(400, code, rest_event("POST", "/v1/count", document, "application/json"))


def test_bad_image_in_batch_is_named() -> None:
    images = [{"id": "good", "data": base64.b64encode(photo()).decode()}, {"id": "bad-one", "data": base64.b64encode(b"nope").decode()}]
    body = _error(400, "not_an_image", rest_event("POST", "/v1/count", json.dumps({"images": images}).encode(), "application/json"))
    assert "'bad-one'" in body["error"]["message"]


def test_wrong_method_and_unknown_route() -> None:
    body = _error(405, "method_not_allowed", rest_event("GET", "/v1/count"))
    assert body["headers"]["allow"] == "POST"
    _error(404, "not_found", rest_event("GET", "/v2/anything"))


# --- endpoint trouble: 502 / 503 / 504 --------------------------------------------------------------------


def test_endpoint_not_deployed_tells_user_to_run_the_pipeline(endpoint: ScriptedEndpoint) -> None:
    endpoint.mode = "not_deployed"
    body = _error(503, "endpoint_not_deployed", rest_event("POST", "/v1/count", photo(), "image/jpeg"))
    assert "training pipeline" in body["error"]["message"]
    status, _, health = invoke(rest_event("GET", "/v1/health"))
    assert status == 503 and health["status"] == "unavailable" and health["endpoint"]["status"] == "not_deployed"


def test_endpoint_creating_is_not_serving(endpoint: ScriptedEndpoint) -> None:
    endpoint.status = "Creating"
    status, headers, body = invoke(rest_event("GET", "/v1/health"))
    assert status == 503 and body["serving"] is False and "retry-after" in headers


def test_model_error_is_502(endpoint: ScriptedEndpoint) -> None:
    endpoint.mode = "model_error"
    body = _error(502, "model_error", rest_event("POST", "/v1/count", photo(), "image/jpeg"))
    assert "bad tensor" in body["error"]["message"]


@pytest.mark.parametrize("mode,code", [("throttle", "endpoint_throttled"), ("not_ready", "endpoint_not_ready")])
def test_throttling_is_503_with_retry_after(endpoint: ScriptedEndpoint, mode: str, code: str) -> None:
    endpoint.mode = mode
    body = _error(503, code, rest_event("POST", "/v1/count", photo(), "image/jpeg"))
    assert int(body["headers"]["retry-after"]) > 0


def test_timeout_is_504(endpoint: ScriptedEndpoint) -> None:
    endpoint.mode = "slow"  # answers after 2 s; the handler's read timeout is 1 s here
    _error(504, "endpoint_timeout", rest_event("POST", "/v1/count", photo(), "image/jpeg"))


def test_garbage_reply_is_502(endpoint: ScriptedEndpoint) -> None:
    endpoint.mode = "garbage"
    _error(502, "bad_endpoint_reply", rest_event("POST", "/v1/count", photo(), "image/jpeg"))


def test_unreachable_endpoint_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:9")  # discard port: connection refused
    _error(503, "endpoint_unreachable", rest_event("POST", "/v1/count", photo(), "image/jpeg"))


def test_bad_deployment_setting_is_500_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENDPOINT_NAME")
    body = _error(500, "internal_error", rest_event("POST", "/v1/count", photo(), "image/jpeg"))
    assert "RuntimeError" in body["error"]["message"]


def test_metrics_are_emitted_as_emf(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from count_api import app as handler

    monkeypatch.setattr(handler, "METRICS_ENABLED", True)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    status, _, _ = invoke(rest_event("POST", "/v1/count", photo(shade=60), "image/jpeg"))
    assert status == 200
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = {m["Name"] for doc in emf for block in doc["_aws"]["CloudWatchMetrics"] for m in block["Metrics"]}
    assert {"CountRequests", "ImagesCounted", "NeedsReview", "EndpointLatency"} <= names
