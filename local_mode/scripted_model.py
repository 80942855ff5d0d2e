"""A scripted model for the endpoint emulator (local_mode/endpoint_server.py): the handler tests and
bench/fuzz_handler.py serve it instead of a trained model.

Its count follows each image's mean brightness (so a test steers it with the photo's shade), and `mode`
scripts the endpoint's trouble: ModelError, throttling, not ready, a slow or garbled reply, or no endpoint
at all. Real around it: botocore (signing, serialisation, error parsing, retries, timeouts), the handler,
Pillow and the preprocessing spec.
"""

from __future__ import annotations

import ast
import json
import struct
import time
from typing import Any, Literal

from local_mode.endpoint_server import EndpointServer, SageMakerFault

SCRIPTED_ENDPOINT_NAME = "test-count-endpoint"
CLASSES = [1, 2, 3, 4, 5]
MODEL_VERSION = "fake-7"
IMAGE_BYTES = 224 * 224 * 3
SLOW_REPLY_S = 2.0
Mode = Literal["ok", "model_error", "throttle", "slow", "garbage", "not_deployed", "not_ready"]


def npy_shape(payload: bytes) -> tuple[int, ...]:
    """Parse an NPY v1 header (what the handler sent) and check it is uint8 [N, 224, 224, 3]."""
    if payload[:8] != b"\x93NUMPY\x01\x00":
        raise ValueError("not an NPY v1.0 payload")
    (header_len,) = struct.unpack("<H", payload[8:10])
    header = ast.literal_eval(payload[10 : 10 + header_len].decode("latin1"))
    if header["descr"] != "|u1" or header["fortran_order"] is not False:
        raise ValueError(f"not a C-ordered uint8 array: {header}")
    shape = tuple(header["shape"])
    if len(shape) != 4 or shape[1:] != (224, 224, 3) or len(payload) != 10 + header_len + shape[0] * IMAGE_BYTES:
        raise ValueError(f"not a [N, 224, 224, 3] batch: shape {shape}, {len(payload)} bytes")
    return shape


def prediction_for(pixels: bytes) -> dict[str, Any]:
    """The scripted 'model': the count follows the image's mean brightness (so tests can steer it)."""
    mean = sum(pixels[::97]) / len(pixels[::97])
    count = min(5, 1 + int(mean // 52))
    confidence = 0.9 if mean > 128 else 0.3
    rest = (1 - confidence) / 4
    probabilities = {str(c): (confidence if c == count else rest) for c in CLASSES}
    return {"count": count, "confidence": confidence, "probabilities": probabilities}


class ScriptedModel:
    """A Predictor whose replies `mode` scripts; it records every batch it receives."""

    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.calls: list[tuple[str, tuple[int, ...]]] = []  # (content type, batch shape) per call
        self.payloads: list[bytes] = []  # the NPY bodies received, for tests that compare pixels

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        shape = npy_shape(body)
        self.calls.append((content_type, shape))
        self.payloads.append(body)
        if self.mode == "model_error":
            raise ValueError("bad tensor")  # the container's 400, which SageMaker reports as ModelError
        if self.mode == "throttle":
            raise SageMakerFault(400, "ThrottlingException", "Rate exceeded")
        if self.mode == "not_ready":
            raise SageMakerFault(429, "ModelNotReadyException", "not ready")
        if self.mode == "garbage":
            return b"<html>oops</html>", "application/json"
        if self.mode == "slow":
            time.sleep(SLOW_REPLY_S)
        images = body[len(body) - IMAGE_BYTES * shape[0] :]
        predictions = [prediction_for(images[i * IMAGE_BYTES : (i + 1) * IMAGE_BYTES]) for i in range(shape[0])]
        return json.dumps({"predictions": predictions, "model_version": MODEL_VERSION, "classes": CLASSES}).encode(), "application/json"


class ScriptedEndpoint(EndpointServer):
    """The endpoint emulator serving a ScriptedModel. `mode` scripts it ("not_deployed": no endpoint at all),
    `status` is DescribeEndpoint's EndpointStatus, `calls` and `payloads` are what the model received."""

    def __init__(self, endpoint_name: str = SCRIPTED_ENDPOINT_NAME, host: str = "127.0.0.1", port: int = 0) -> None:
        self.model = ScriptedModel()
        super().__init__(self.model, endpoint_name, host, port)

    @property
    def mode(self) -> Mode:
        return "not_deployed" if not self.state.deployed else self.model.mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self.state.deployed = mode != "not_deployed"
        self.model.mode = "ok" if mode == "not_deployed" else mode

    @property
    def status(self) -> str:
        return self.state.status

    @status.setter
    def status(self, status: str) -> None:
        self.state.status = status

    @property
    def calls(self) -> list[tuple[str, tuple[int, ...]]]:
        return self.model.calls

    @property
    def payloads(self) -> list[bytes]:
        return self.model.payloads
