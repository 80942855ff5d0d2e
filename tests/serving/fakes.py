"""An emulated SageMaker endpoint for the handler tests, at the HTTP level.

Real: botocore (request signing, InvokeEndpoint/DescribeEndpoint serialisation, error parsing, retries,
timeouts), the handler, Pillow, the preprocessing spec. Emulated: the endpoint itself, a tiny local HTTP
server that answers like SageMaker (reply JSON of the contract, ModelError 424, ThrottlingException 400,
"endpoint not found" ValidationError) so that boto3, pointed at it by AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME,
raises exactly what it raises on AWS.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import struct
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from PIL import Image

from local_mode.background_server import BackgroundHTTPServer

ENDPOINT_NAME = "test-count-endpoint"
CLASSES = [1, 2, 3, 4, 5]


def npy_shape(payload: bytes) -> tuple[int, ...]:
    """Parse an NPY v1 header (what the handler sent) and check it is uint8 [N, 224, 224, 3]."""
    assert payload[:8] == b"\x93NUMPY\x01\x00", "not an NPY v1.0 payload"
    (header_len,) = struct.unpack("<H", payload[8:10])
    header = ast.literal_eval(payload[10 : 10 + header_len].decode("latin1"))
    assert header["descr"] == "|u1" and header["fortran_order"] is False
    shape = tuple(header["shape"])
    assert len(payload) == 10 + header_len + shape[0] * 224 * 224 * 3
    return shape


def prediction_for(pixels: bytes) -> dict[str, Any]:
    """A deterministic 'model': the count follows the image's mean brightness (so tests can steer it)."""
    mean = sum(pixels[::97]) / len(pixels[::97])
    count = min(5, 1 + int(mean // 52))
    confidence = 0.9 if mean > 128 else 0.3
    rest = (1 - confidence) / 4
    probabilities = {str(c): (confidence if c == count else rest) for c in CLASSES}
    return {"count": count, "confidence": confidence, "probabilities": probabilities}


class FakeEndpoint(BackgroundHTTPServer):
    """mode: ok | model_error | throttle | slow | garbage | not_deployed | not_ready. status: DescribeEndpoint's."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.status = "InService"
        self.calls: list[tuple[str, tuple[int, ...]]] = []
        self.payloads: list[bytes] = []  # the NPY bodies received, for tests that compare pixels
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _reply(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
                body = document if isinstance(document, bytes) else json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the handler gave up first (timeout test)
                    self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("X-Amz-Target") == "SageMaker.DescribeEndpoint":
                    if outer.mode == "not_deployed":
                        self._reply(400, {"__type": "ValidationException", "message": f'Could not find endpoint "{ENDPOINT_NAME}".'})
                    else:
                        self._reply(
                            200,
                            {
                                "EndpointName": ENDPOINT_NAME,
                                "EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x",
                                "EndpointStatus": outer.status,
                            },
                        )
                    return
                shape = npy_shape(body)
                outer.calls.append((self.headers.get("Content-Type", ""), shape))
                outer.payloads.append(body)
                mode = outer.mode
                if mode == "not_deployed":
                    self._reply(400, {"__type": "ValidationError", "message": f"Endpoint {ENDPOINT_NAME} of account 1 not found."})
                elif mode == "model_error":
                    self._reply(
                        424,
                        {
                            "__type": "ModelError",
                            "message": "Received client error (400)",
                            "OriginalStatusCode": 400,
                            "OriginalMessage": "bad tensor",
                        },
                    )
                elif mode == "throttle":
                    self._reply(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
                elif mode == "not_ready":
                    self._reply(429, {"__type": "ModelNotReadyException", "message": "not ready"})
                elif mode == "garbage":
                    self._reply(200, b"<html>oops</html>")
                else:
                    if mode == "slow":
                        time.sleep(2.0)
                    size = 224 * 224 * 3
                    pixels = [body[len(body) - size * shape[0] + i * size :][:size] for i in range(shape[0])]
                    self._reply(200, {"predictions": [prediction_for(p) for p in pixels], "model_version": "fake-7", "classes": CLASSES})

        super().__init__(Handler, name="fake-endpoint")


def photo(fmt: str = "JPEG", size: tuple[int, int] = (320, 240), shade: int = 200) -> bytes:
    """A small bin-like photo: a flat shade with a darker box (the shade steers the fake model's count)."""
    image = Image.new("RGB", size, (shade, shade, shade))
    image.paste((shade // 2, 40, 40), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
