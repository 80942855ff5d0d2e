"""A local stand-in for a SageMaker real-time endpoint, serving a model dir through training_code/inference.py.

It speaks both sides of the endpoint:
- the container contract: GET /ping, POST /invocations (what SageMaker sends to the model container);
- the runtime API: POST /endpoints/{name}/invocations (botocore's InvokeEndpoint), so a plain
  boto3 "sagemaker-runtime" client works with AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME pointed here;
- DescribeEndpoint of the control-plane API (POST / with X-Amz-Target: SageMaker.DescribeEndpoint),
  so the Lambda's health check works with AWS_ENDPOINT_URL_SAGEMAKER pointed here.
Model errors answer 424 {"__type": "ModelError", ...}, which botocore raises as ModelError.

The one endpoint emulator of the project: local mode serves a real model dir through it (InferenceModel),
the handler tests and bench/fuzz_handler.py a scripted model (local_mode/scripted_model.py), so boto3,
pointed here by client_environment(), raises exactly what it raises on AWS.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

from infra.pipeline.layout import VARIANT_NAME
from local_mode.background_server import BackgroundHTTPServer

# SageMaker's real-time payload limit.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_INVOKE_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")


# botocore signs every request: dummy credentials where the user has none (they never leave loopback).
LOOPBACK_CREDENTIALS = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


class Predictor(Protocol):
    """The model behind the endpoint: a reply body and its content type, or an exception (a ModelError)."""

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]: ...


class SageMakerFault(Exception):  # noqa: N818 - it is a reply, named as SageMaker names it
    """Raised by a predictor to answer as SageMaker's front end does (throttling, not ready), not as a ModelError."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def client_environment(url: str) -> dict[str, str]:
    """Points the handler's botocore clients (runtime API and DescribeEndpoint) at the emulator at `url`."""
    return {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": url, "AWS_ENDPOINT_URL_SAGEMAKER": url}


class InferenceModel:
    """model_fn / input_fn / predict_fn / output_fn of training_code/inference.py on one model dir."""

    def __init__(self, model_dir: str | Path) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "model.pth").is_file():
            raise FileNotFoundError(f"{model_dir} has no model.pth: pass a model dir written by train.py (runs/<id>/train/model)")
        import inference  # training_code/inference.py: the model container's entry points

        self.inference = inference
        self.model = self.inference.model_fn(str(model_dir))
        # One prediction at a time: torch already uses every core, and handlers run in threads.
        self._lock = threading.Lock()

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        with self._lock:
            data = self.inference.input_fn(body, content_type)
            prediction = self.inference.predict_fn(data, self.model)
            output = self.inference.output_fn(prediction, accept or "application/json")
        if isinstance(output, tuple):  # (body, content type), as some toolkits allow
            output, content_type = output
        else:
            content_type = accept if accept and accept != "*/*" else "application/json"
        return (output.encode("utf-8") if isinstance(output, str) else bytes(output)), content_type


@dataclass
class _State:
    predictor: Predictor
    endpoint_name: str
    status: str = "InService"  # DescribeEndpoint's EndpointStatus
    deployed: bool = True  # False: both APIs answer "not found", as before the pipeline's first deploy
    created: float = field(default_factory=time.time)


class _Handler(BaseHTTPRequestHandler):
    server_version = "LocalSageMakerEndpoint/1"
    protocol_version = "HTTP/1.1"

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: the API server and the Lambda log each request

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up first (its read timeout)
            self.wfile.write(body)

    def _send_error(self, status: int, error_type: str, message: str, **extra: Any) -> None:
        body = json.dumps({"__type": error_type, "message": message, **extra}).encode()
        self._send(status, body, headers={"x-amzn-ErrorType": error_type})

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            self.rfile.read(length)
            self._send_error(413, "ValidationError", f"the payload is {length:,} bytes, above the 6 MB endpoint limit")
            return None
        return self.rfile.read(length)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path == "/ping":
            self._send(200, b"")
        else:
            self._send_error(404, "UnknownOperationException", f"no route GET {self.path}")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        body = self._read_body()
        if body is None:
            return
        match = _INVOKE_PATH.match(self.path)
        if self.path == "/invocations" or match:
            if match and (match["name"] != self.state.endpoint_name or not self.state.deployed):
                self._send_error(400, "ValidationError", f"Endpoint {match['name']} of account local not found.")
                return
            self._invoke(body)
        elif self.path == "/" and self.headers.get("X-Amz-Target") == "SageMaker.DescribeEndpoint":
            self._describe(body)
        else:
            self._send_error(404, "UnknownOperationException", f"no route POST {self.path}")

    def _invoke(self, body: bytes) -> None:
        content_type = self.headers.get("Content-Type", "")
        accept = self.headers.get("Accept", "application/json")
        try:
            output, output_type = self.state.predictor.invoke(body, content_type, accept)
        except SageMakerFault as fault:
            self._send_error(fault.status, fault.error_type, fault.message)
            return
        except Exception as error:  # the container's failure, reported as SageMaker does
            original = 400 if isinstance(error, ValueError) else 500
            self._send_error(
                424, "ModelError", f"Received client error ({original}) from model", OriginalStatusCode=original, OriginalMessage=str(error)
            )
            return
        self._send(200, output, output_type, {"x-Amzn-Invoked-Production-Variant": VARIANT_NAME})

    def _describe(self, body: bytes) -> None:
        try:
            name = json.loads(body or b"{}").get("EndpointName")
        except (ValueError, AttributeError):
            name = None
        if name != self.state.endpoint_name or not self.state.deployed:
            self._send_error(400, "ValidationException", f'Could not find endpoint "{name}".')
            return
        document = {
            "EndpointName": name,
            "EndpointArn": f"arn:aws:sagemaker:local:000000000000:endpoint/{name}",
            "EndpointConfigName": f"{name}-local",
            "EndpointStatus": self.state.status,
            "CreationTime": self.state.created,
            "LastModifiedTime": self.state.created,
        }
        self._send(200, json.dumps(document).encode(), "application/x-amz-json-1.1")


class EndpointServer(BackgroundHTTPServer):
    """A running local endpoint serving `predictor`: `.url`, `.client_environment()`, `.close()`."""

    def __init__(self, predictor: Predictor, endpoint_name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = _State(predictor=predictor, endpoint_name=endpoint_name)
        super().__init__(_Handler, host, port, name="local-endpoint", state=self.state)
        self.endpoint_name = endpoint_name

    def client_environment(self) -> dict[str, str]:
        return client_environment(self.url)


def start_endpoint_server(model_dir: str | Path, endpoint_name: str, host: str = "127.0.0.1", port: int = 0) -> EndpointServer:
    """Load the model dir through inference.py and serve it on host:port (0 = a free port)."""
    return EndpointServer(InferenceModel(model_dir), endpoint_name, host, port)
