"""A local API Gateway: HTTP requests -> REST API proxy events (v1) -> the Lambda handler, in-process.

Like API Gateway with this project's settings: the x-api-key header must match the key (403 otherwise,
in the gateway-response shape infra/serving_stack.py configures), bodies whose Content-Type is a binary
media type (image/jpeg, image/png) arrive base64-encoded with isBase64Encoded, others as text, and
bodies above 10 MB are refused with 413. One event at a time, as one Lambda execution environment.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local_mode.background_server import BackgroundHTTPServer

BINARY_MEDIA_TYPES = ("image/jpeg", "image/png")
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024
# Lambda's synchronous invocation payload limit, for the whole event.
LAMBDA_MAX_EVENT = 6 * 1024 * 1024
STAGE = "prod"  # the AWS stage name (infra/serving_stack.py); paths below it are /v1/...

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that Powertools reads."""

    aws_request_id: str
    function_name: str = "count-api-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:count-api-local"
    log_group_name: str = "/aws/lambda/count-api-local"
    log_stream_name: str = "local"
    deadline: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


def build_event(method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict[str, Any]:
    """An API Gateway REST proxy integration event (payload format 1.0) for one request."""
    parts = urlsplit(raw_path)
    query = parse_qs(parts.query, keep_blank_values=True)
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    binary = content_type.split(";", 1)[0].strip().lower() in BINARY_MEDIA_TYPES
    if not body:
        text: str | None = None
    elif binary:
        text = base64.b64encode(body).decode("ascii")
    else:
        text = body.decode("utf-8", errors="replace")  # API Gateway passes non-binary bodies as text
    request_id = str(uuid.uuid4())
    return {
        "resource": parts.path,
        "path": parts.path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "stage": STAGE,
            "requestId": request_id,
            "httpMethod": method,
            "path": f"/{STAGE}{parts.path}",
            "resourcePath": parts.path,
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": source_ip, "apiKey": headers.get("x-api-key", ""), "userAgent": headers.get("user-agent", "")},
        },
        "body": text,
        "isBase64Encoded": bool(body) and binary,
    }


class _Handler(BaseHTTPRequestHandler):
    server_version = "LocalApiGateway/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _gateway_error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self._send(status, body, {"Content-Type": "application/json", "x-amzn-ErrorType": "GatewayError"})

    def _handle(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        if length > API_GATEWAY_MAX_BODY:
            self.close_connection = True
            self._gateway_error(413, "payload_too_large", "the request is above API Gateway's 10 MB limit: send smaller photos")
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        if not secrets.compare_digest(headers.get("x-api-key", ""), server.api_key):  # type: ignore[attr-defined]
            self._gateway_error(403, "forbidden", "the API key is missing or invalid: send it in the x-api-key header")
            return
        event = build_event(self.command, self.path, headers, body, self.client_address[0])
        if len(json.dumps(event)) > LAMBDA_MAX_EVENT:
            # On AWS, Lambda refuses such an event before the handler runs (API Gateway then answers 5xx).
            self._gateway_error(413, "payload_too_large", "the request is above Lambda's 6 MB event limit: send fewer or smaller photos")
            return
        context = LambdaContext(aws_request_id=str(uuid.uuid4()), deadline=time.time() + 30)
        with server.lock:  # type: ignore[attr-defined]
            reply = server.lambda_handler(event, context)  # type: ignore[attr-defined]
        payload = reply.get("body") or ""
        data = base64.b64decode(payload) if reply.get("isBase64Encoded") else payload.encode("utf-8")
        reply_headers = dict(reply.get("headers") or {})
        for name, values in (reply.get("multiValueHeaders") or {}).items():
            reply_headers.setdefault(name, ", ".join(values))
        reply_headers["x-amzn-RequestId"] = event["requestContext"]["requestId"]
        self._send(int(reply.get("statusCode", 502)), data, reply_headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle  # noqa: N815 - stdlib naming


class ApiServer(BackgroundHTTPServer):
    """A running local API: `.url` (the base URL; routes are /v1/count and /v1/health), `.api_key`, `.close()`."""

    def __init__(
        self, lambda_handler: LambdaHandler, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0, verbose: bool = False
    ):
        self.api_key = api_key or secrets.token_urlsafe(24)
        super().__init__(
            _Handler,
            host,
            port,
            name="local-api",
            api_key=self.api_key,
            lambda_handler=lambda_handler,
            lock=threading.Lock(),
            verbose=verbose,
        )
