"""A local API Gateway: HTTP requests -> REST API proxy events (v1) -> the Lambda handler, in-process.

Like API Gateway with this project's settings: the x-api-key header must match the key (403 otherwise,
in the gateway-response shape infra/serving_stack.py configures) on every route but GET / (the try-it page,
deployed without a key like the stack's root GET method), bodies whose Content-Type is a binary
media type (image/jpeg, image/png) arrive base64-encoded with isBase64Encoded, others as text, bodies
above 10 MB are refused with 413, and every refusal is JSON `{"error": {"code", "message"}}`.

The HTTP side is waitress (pure-Python WSGI server, pinned in requirements-dev.txt), not http.server:
its event loop reads each request completely (headers, Content-Length or chunked body) before a worker
thread sees it, so a slow or silent client holds a socket, never a worker, and is dropped after
READ_TIMEOUT_S; it has a bounded worker pool, a 1024-deep listen backlog, a connection cap and header /
body size limits. Malformed HTTP that waitress refuses itself (bad request line or header, bad
Content-Length, bad chunked framing, oversized headers) is answered in the same JSON shape by
_JsonErrorTask. The handler runs in a pool of `concurrency` execution environments (separate copies of
the handler module, as Lambda runs one event per environment at a time), so one request waiting on a slow
endpoint does not hold up the others.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import os
import queue
import secrets
import select
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from count_api.gateway import BINARY_MEDIA_TYPES, STAGE_NAME  # as the stack configures API Gateway; paths below the stage are /v1/...
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

API_GATEWAY_MAX_BODY = 10 * 1024 * 1024
# Lambda's synchronous invocation payload limit, for the whole event.
LAMBDA_MAX_EVENT = 6 * 1024 * 1024
# API Gateway's header limit is 10 KB for the whole request line + headers; an idle client is dropped.
MAX_HEADER_BYTES = 10 * 1024
READ_TIMEOUT_S = 10
LISTEN_BACKLOG = 1024
MAX_CONNECTIONS = 256
DEFAULT_CONCURRENCY = 4
# Methods API Gateway REST accepts on a resource; others (TRACE, CONNECT, made-up ones) answer 405 here.
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
BODY_METHODS = ("POST", "PUT", "PATCH")
# The one route without a key, as infra/serving_stack.py deploys it (apiAuth apiKey).
PAGE_ROUTE = ("GET", "/")

# Every error code this adapter answers itself (the handler's own codes are in lambda/preprocess):
# docs/serving.md and docs/openapi.yaml list each one; tests/serving/test_error_docs.py keeps them in sync.
GATEWAY_ERRORS: dict[str, int] = {
    "bad_request": 400,  # malformed HTTP: request line, header syntax, Content-Length, chunked framing
    "forbidden": 403,
    "method_not_allowed": 405,
    "length_required": 411,
    "payload_too_large": 413,
    "request_header_fields_too_large": 431,
    "internal_error": 500,
    "unsupported_transfer_encoding": 501,
    "lambda_error": 502,
    "timeout": 504,
}

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
log = logging.getLogger("local_mode.api_server")


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
            "stage": STAGE_NAME,
            "requestId": request_id,
            "httpMethod": method,
            "path": f"/{STAGE_NAME}{parts.path}",
            "resourcePath": parts.path,
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": source_ip, "apiKey": headers.get("x-api-key", ""), "userAgent": headers.get("user-agent", "")},
        },
        "body": text,
        "isBase64Encoded": bool(body) and binary,
    }


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


# --- execution environments ---------------------------------------------------------------------------

FRAME = struct.Struct(">I")
FUNCTION_TIMEOUT_S = 30  # the stack's function timeout is 28 s; API Gateway gives up at 29 s


def _write_frame(stream: Any, document: Any) -> None:
    data = json.dumps(document).encode()
    stream.write(FRAME.pack(len(data)) + data)
    stream.flush()


def _read_exactly(fd: int, size: int, deadline: float) -> bytes:
    chunks, remaining = [], size
    while remaining:
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise TimeoutError
        chunk = os.read(fd, remaining)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class EnvironmentFailed(RuntimeError):
    """The environment's process died or timed out; it is replaced before the next event."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status = code, status


class ProcessEnvironment:
    """One Lambda execution environment: a process that imported the handler and runs one event at a time.

    Separate processes, as on Lambda: Powertools keeps the current event on a class attribute
    (BaseRouter.current_event), so two events must never share an interpreter at the same time, and the
    handlers' CPU work (decode, preprocess, signing) runs on several cores. Events and replies travel as
    length-prefixed JSON over the process's stdin/stdout; its stderr (the handler's logs) is inherited.
    """

    def __init__(self, timeout_s: float = FUNCTION_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessEnvironment:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "local_mode.api_server", "--lambda-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        return self

    def wait_ready(self, timeout_s: float = 120) -> None:
        ready = self._receive(time.monotonic() + timeout_s)
        if ready != {"ready": True}:
            raise RuntimeError(f"the Lambda environment failed to start: {ready}")

    def _receive(self, deadline: float) -> Any:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        (size,) = FRAME.unpack(_read_exactly(fd, FRAME.size, deadline))
        return json.loads(_read_exactly(fd, size, deadline))

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if self._process is None or self._process.poll() is not None:
            self.start().wait_ready()
        assert self._process is not None
        try:
            _write_frame(self._process.stdin, {"event": event, "request_id": context.aws_request_id, "deadline": context.deadline})
            reply = self._receive(time.monotonic() + self.timeout_s)
        except TimeoutError:
            self.close()
            raise EnvironmentFailed("timeout", 504, f"the function did not answer within {self.timeout_s:g} s") from None
        except (EOFError, OSError, ValueError):
            self.close()
            raise EnvironmentFailed("lambda_error", 502, "the function's environment crashed: see the server log") from None
        if "error" in reply:
            raise EnvironmentFailed("lambda_error", 502, f"the function failed ({reply['error']}): see the server log")
        return reply["reply"]

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def start_environments(count: int) -> list[ProcessEnvironment]:
    """`count` environments of the count API's handler, started in parallel (the current os.environ)."""
    environments = [ProcessEnvironment().start() for _ in range(count)]
    try:
        for environment in environments:
            environment.wait_ready()
    except BaseException:
        for environment in environments:
            environment.close()
        raise
    return environments


def _lambda_worker() -> int:
    """The environment's side: import the handler once, then answer events from stdin until it closes."""
    protocol_out = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything the handler prints goes to the log, never into the protocol
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from count_api import app as handler

    _write_frame(protocol_out, {"ready": True})
    stdin = sys.stdin.buffer
    while header := stdin.read(FRAME.size):
        (size,) = FRAME.unpack(header)
        message = json.loads(stdin.read(size))
        context = LambdaContext(aws_request_id=message["request_id"], deadline=message["deadline"])
        try:
            _write_frame(protocol_out, {"reply": handler.lambda_handler(message["event"], context)})
        except Exception as error:  # an unhandled function error: the API answers 502, the log has the traceback
            log.exception("the Lambda handler raised")
            _write_frame(protocol_out, {"error": type(error).__name__})
    return 0


class _Environments:
    """A pool of handlers, each used by one request at a time (Lambda's execution environments)."""

    def __init__(self, handlers: Iterable[LambdaHandler]) -> None:
        self._free: queue.Queue[LambdaHandler] = queue.Queue()
        for handler in handlers:
            self._free.put(handler)
        self.size = self._free.qsize()
        if self.size < 1:
            raise ValueError("at least one handler is needed")

    @contextmanager
    def acquire(self) -> Iterator[LambdaHandler]:
        handler = self._free.get()
        try:
            yield handler
        finally:
            self._free.put(handler)


# --- the WSGI application: HTTP <-> proxy event -------------------------------------------------------


def _headers_from_environ(environ: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        # WSGI carries header bytes as latin-1 text; API Gateway hands the handler UTF-8 text.
        headers[name.replace("_", "-").lower()] = value.encode("latin-1").decode("utf-8", errors="replace")
    return headers


class GatewayApp:
    """The WSGI app: checks what API Gateway checks, builds the event, runs a handler, maps the reply."""

    def __init__(self, environments: _Environments, api_key: str) -> None:
        self.environments = environments
        self.api_key = api_key.encode("utf-8")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        try:
            status, headers, body = self.respond(environ)
        except Exception:  # a bug here must still be one JSON reply, never a dropped connection
            log.exception("local API adapter failed")
            status, headers, body = self._error(500, "internal_error", "the local API adapter failed unexpectedly: see its log")
        start_response(_status_line(status), list(headers.items()))
        return [body]

    @staticmethod
    def _error(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json", "x-amzn-ErrorType": "GatewayError", **(extra or {})}, error_body(code, message)

    def respond(self, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        method = environ["REQUEST_METHOD"]
        if method not in METHODS:
            return self._error(405, "method_not_allowed", f"{method} is not supported: use POST /v1/count or GET /v1/health")
        raw_length = environ.get("CONTENT_LENGTH")  # waitress sets it after reading a chunked body too
        if method in BODY_METHODS and raw_length in (None, ""):
            return self._error(411, "length_required", "send a Content-Length header (or Transfer-Encoding: chunked) with the body")
        length = int(raw_length or 0)  # waitress refused a non-numeric or negative value with 400 already
        body = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", errors="replace")
        provided = environ.get("HTTP_X_API_KEY", "").encode("latin-1")  # the header's raw bytes
        # Exactly GET / is open (the page holds no data; it calls the API with the key the user types).
        if (method, path) != PAGE_ROUTE and not hmac.compare_digest(provided, self.api_key):
            return self._error(403, "forbidden", "the API key is missing or invalid: send it in the x-api-key header")
        query = environ.get("QUERY_STRING", "")
        event = build_event(
            method, path + (f"?{query}" if query else ""), _headers_from_environ(environ), body, environ.get("REMOTE_ADDR", "")
        )
        if len(json.dumps(event)) > LAMBDA_MAX_EVENT:
            # On AWS, Lambda refuses such an event before the handler runs (API Gateway then answers 5xx).
            return self._error(413, "payload_too_large", "the request is above Lambda's 6 MB event limit: send fewer or smaller photos")
        context = LambdaContext(aws_request_id=str(uuid.uuid4()), deadline=time.time() + 30)
        with self.environments.acquire() as handler:
            try:
                reply = handler(event, context)
            except EnvironmentFailed as error:
                return self._error(error.status, error.code, str(error))
            except Exception as error:  # an unhandled function error: API Gateway answers 502
                log.exception("the Lambda handler raised")
                return self._error(502, "lambda_error", f"the function failed ({type(error).__name__}): see the server log")
        payload = reply.get("body") or ""
        data = base64.b64decode(payload) if reply.get("isBase64Encoded") else payload.encode("utf-8")
        reply_headers = {str(k): str(v) for k, v in (reply.get("headers") or {}).items()}
        for name, values in (reply.get("multiValueHeaders") or {}).items():
            reply_headers.setdefault(name, ", ".join(values))
        for hop in [k for k in reply_headers if k.lower() in ("content-length", "connection", "transfer-encoding")]:
            del reply_headers[hop]
        reply_headers["x-amzn-RequestId"] = event["requestContext"]["requestId"]
        return int(reply.get("statusCode", 502)), reply_headers, data


# --- waitress: JSON for the errors it answers itself ----------------------------------------------------

# waitress's error classes (utilities.BadRequest and subclasses) -> our codes; its message is kept.
_WAITRESS_CODES = {
    400: "bad_request",
    413: "payload_too_large",
    431: "request_header_fields_too_large",
    501: "unsupported_transfer_encoding",
}


class _JsonErrorTask(ErrorTask):
    """waitress answers malformed requests itself, in text/plain: the same replies in the API's JSON shape."""

    def execute(self) -> None:
        error = self.request.error
        status = int(getattr(error, "code", 400))
        code = _WAITRESS_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
        detail = str(getattr(error, "body", "") or getattr(error, "reason", "malformed request"))
        body = error_body(code, f"the HTTP request was refused: {detail}")
        self.status = _status_line(status)
        self.response_headers.extend([("Content-Type", "application/json"), ("x-amzn-ErrorType", "GatewayError")])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _JsonErrorChannel(HTTPChannel):
    error_task_class = _JsonErrorTask


class WaitressBackground:
    """A waitress server for `app` on a background thread until `.close()`; `.url` is its base URL."""

    def __init__(
        self,
        app: Callable[..., Any],
        host: str,
        port: int,
        threads: int,
        name: str,
        verbose: bool = False,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self._server = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            backlog=LISTEN_BACKLOG,
            connection_limit=MAX_CONNECTIONS,
            channel_timeout=read_timeout_s,
            cleanup_interval=1,
            max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=API_GATEWAY_MAX_BODY,
            ident="LocalApiGateway",
            expose_tracebacks=False,
            asyncore_use_poll=True,
            # An idle connection or a failed send is a client's business, not a log line per socket.
            log_socket_errors=verbose,
        )
        self._server.channel_class = _JsonErrorChannel
        if not verbose:  # "Task queue depth is N" on every burst: the queue is the point of a bounded pool
            logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        socket_map = self._server._map
        while not self._stop.is_set():
            wasyncore.loop(timeout=0.2, use_poll=True, map=socket_map, count=1)
        self._server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(socket_map)

    @property
    def url(self) -> str:
        return f"http://{self._server.effective_host}:{self._server.effective_port}"

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._server.pull_trigger()
            self._thread.join(timeout=10)


class ApiServer(WaitressBackground):
    """A running local API: `.url` (the base URL; routes are /v1/count and /v1/health), `.api_key`, `.close()`.

    `lambda_handler` is one in-process handler (one execution environment: events one at a time) or a
    list of environments (start_environments), which serve that many events at once and are closed with
    the server.
    """

    def __init__(
        self,
        lambda_handler: LambdaHandler | list[LambdaHandler],
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        threads: int | None = None,
        read_timeout_s: float = READ_TIMEOUT_S,
    ):
        self.api_key = api_key or secrets.token_urlsafe(24)
        handlers = lambda_handler if isinstance(lambda_handler, list) else [lambda_handler]
        environments = _Environments(handlers)
        self.concurrency = environments.size
        self._owned = [h for h in handlers if isinstance(h, ProcessEnvironment)]
        # Workers beyond the environments answer gateway refusals (403, 405, 411, 413) without waiting.
        super().__init__(
            GatewayApp(environments, self.api_key),
            host,
            port,
            threads or environments.size + 2,
            name="local-api",
            verbose=verbose,
            read_timeout_s=read_timeout_s,
        )

    def close(self) -> None:
        super().close()
        for environment in self._owned:
            environment.close()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--lambda-worker"]:
        raise SystemExit(_lambda_worker())
    print("usage: python -m local_mode.api_server --lambda-worker (started by ApiServer)", file=sys.stderr)
    raise SystemExit(2)
