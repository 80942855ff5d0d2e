"""The local API (local_mode/api_server.py) under hostile but fair use, on 127.0.0.1 only, bounded in counts
and time: malformed HTTP, odd methods, oversized headers, chunked bodies, non-ASCII keys, bursts of new
connections, silent clients, a slow endpoint, and a mixed concurrent workload. Every request must get
exactly one well-formed JSON reply (or, for a request that never completes, a closed connection).

Requests are written on raw sockets (requests/urllib3 refuse to send most of these) and replies parsed with
http.client, which fails on anything that is not one well-formed HTTP response.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from local_mode.api_server import GATEWAY_ERRORS, ApiServer, start_environments
from local_mode.scripted_model import ScriptedEndpoint
from tests.serving.helpers import handler_environment, photo

KEY = "secret-key"


@pytest.fixture(scope="module")
def module_api(scripted_endpoint: ScriptedEndpoint) -> Iterator[ApiServer]:
    """Four Lambda environments (processes) started once for the module, their environment at the endpoint emulator."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in handler_environment(scripted_endpoint).items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        server = ApiServer(start_environments(4), api_key=KEY, read_timeout_s=1)
    yield server
    server.close()


@pytest.fixture
def api(module_api: ApiServer, endpoint: ScriptedEndpoint) -> ApiServer:
    return module_api


def _address(api: ApiServer) -> tuple[str, int]:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1"
    return host, int(port)


def exchange(api: ApiServer, raw: bytes, timeout: float = 10, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read exactly one HTTP response; (status, lower-cased headers, body)."""
    with socket.create_connection(_address(api), timeout=timeout) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def json_error(status: int, headers: dict[str, str], body: bytes) -> str:
    """The reply is the API's JSON error shape; returns its code."""
    assert headers.get("content-type") == "application/json", (status, headers, body[:200])
    document = json.loads(body)
    assert set(document) == {"error"} and set(document["error"]) == {"code", "message"}, document
    assert document["error"]["code"] in GATEWAY_ERRORS or status in (400, 404, 405, 413, 415, 502, 503, 504)
    return document["error"]["code"]


def post(body: bytes, *extra: str, key: str = KEY, path: str = "/v1/count", content_type: str = "image/jpeg") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"x-api-key: {key}", f"Content-Type: {content_type}", *extra]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in extra):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def test_a_good_request_is_counted(api: ApiServer) -> None:
    status, headers, body = exchange(api, post(photo()))
    assert status == 200 and json.loads(body)["count"] == 4 and headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "raw,status,code",
    [
        (post(photo(), key="ключ"), 403, "forbidden"),  # non-ASCII key: compared as bytes, no traceback
        (post(photo(), key="secret-kez"), 403, "forbidden"),
        (post(photo(), "Content-Length: abc"), 400, "bad_request"),
        (post(photo(), "Content-Length: -1"), 400, "bad_request"),
        (post(b"abc", "Content-Length: 3", "Content-Length: 4"), 400, "bad_request"),
        (b"POST /v1/count HTTP/1.1\r\nHost: x\r\nx-api-key: secret-key\r\nContent-Type: image/jpeg\r\n\r\n", 411, "length_required"),
        (post(b"abc", "Transfer-Encoding: gzip"), 501, "unsupported_transfer_encoding"),
        (post(b"zz\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), 400, "bad_request"),  # bad chunk size
        (post(b"", "X-Big: " + "a" * 20_000), 431, "request_header_fields_too_large"),
        (post(b"", path="/v1/count?" + "q" * 20_000), 431, "request_header_fields_too_large"),
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", 400, "bad_request"),
        (b"TRACE /v1/count HTTP/1.1\r\nHost: x\r\nx-api-key: secret-key\r\n\r\n", 405, "method_not_allowed"),
        (b"FOO /v1/count HTTP/1.1\r\nHost: x\r\nx-api-key: secret-key\r\n\r\n", 405, "method_not_allowed"),
        (b"OPTIONS /v1/count HTTP/1.1\r\nHost: x\r\nx-api-key: secret-key\r\n\r\n", 405, "method_not_allowed"),
        (b"DELETE /v1/health HTTP/1.1\r\nHost: x\r\nx-api-key: secret-key\r\n\r\n", 405, "method_not_allowed"),
        (post(b"", "Content-Length: 0"), 400, "empty_body"),
        (post(b"x" * 100, content_type="text/csv"), 415, "unsupported_media_type"),
        (post(b"", "Content-Length: 11000000"), 413, "payload_too_large"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_http_gets_one_json_error(api: ApiServer, raw: bytes, status: int, code: str) -> None:
    got_status, headers, body = exchange(api, raw)
    assert (got_status, json_error(got_status, headers, body)) == (status, code)


def test_head_gets_405_without_a_body(api: ApiServer) -> None:
    status, headers, body = exchange(api, b"HEAD /v1/count HTTP/1.1\r\nHost: x\r\nx-api-key: secret-key\r\n\r\n", method="HEAD")
    assert status == 405 and headers["content-type"] == "application/json" and body == b"" and headers["allow"] == "POST"


def test_chunked_bodies_are_read(api: ApiServer) -> None:
    data = photo()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (data[:1000], data[1000:])) + b"0\r\n\r\n"
    status, _, body = exchange(api, post(chunks, "Transfer-Encoding: chunked"))
    assert status == 200 and json.loads(body)["count"] == 4


def test_a_burst_of_new_connections_is_absorbed(api: ApiServer) -> None:
    # Open 200 connections before any is served (backlog 5 reset some of 80 before), then send on each.
    raw = b"GET /v1/nope HTTP/1.1\r\nHost: x\r\nx-api-key: secret-key\r\nConnection: close\r\n\r\n"
    sockets = [socket.create_connection(_address(api), timeout=20) for _ in range(200)]
    try:
        for sock in sockets:
            sock.sendall(raw)
        statuses = []
        for sock in sockets:
            response = http.client.HTTPResponse(sock)
            response.begin()
            statuses.append((response.status, json.loads(response.read())["error"]["code"]))
    finally:
        for sock in sockets:
            sock.close()
    assert statuses == [(404, "not_found")] * 200


def test_a_silent_client_holds_no_worker_and_is_dropped(api: ApiServer) -> None:
    # Ten clients send headers and half a body, then nothing: more than the workers. Others are still served,
    # and each silent connection is closed after the read timeout (1 s here, 10 s by default).
    silent = []
    for _ in range(10):
        sock = socket.create_connection(_address(api), timeout=10)
        sock.sendall(post(photo())[:-100])
        silent.append(sock)
    try:
        started = time.monotonic()
        status, _, body = exchange(api, post(photo()))
        assert status == 200 and time.monotonic() - started < 2.0
        time.sleep(3.0)  # the read timeout plus the server's 1 s cleanup interval
        for sock in silent:
            assert sock.recv(1024) == b""  # closed by the server, with no reply to an incomplete request
    finally:
        for sock in silent:
            sock.close()


def test_a_slow_endpoint_does_not_block_unrelated_requests(api: ApiServer, endpoint: ScriptedEndpoint) -> None:
    endpoint.mode = "slow"  # the scripted model answers after 2 s; the handler gives up at 1 s with a 504
    slow: dict[str, float | int] = {}

    def slow_request() -> None:
        started = time.monotonic()
        slow["status"] = exchange(api, post(photo()))[0]
        slow["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.2)  # the slow request is in its environment, waiting on the endpoint
    started = time.monotonic()
    for raw in (post(b"not a photo"), post(b"", "Content-Length: 0"), post(photo(), key="wrong")):
        status, headers, body = exchange(api, raw)
        assert status in (400, 403) and json_error(status, headers, body)
    assert time.monotonic() - started < 0.8  # answered while the slow one still waits
    thread.join(timeout=10)
    assert slow["status"] == 504 and slow["seconds"] >= 0.9


def test_mixed_concurrent_load_gets_one_json_reply_each(api: ApiServer) -> None:
    good, bad_image = photo(), b"\xff\xd8 not really a jpeg"
    workload = [
        post(good),
        post(bad_image),
        post(good, key="nope"),
        post(b"abc", "Content-Length: xyz"),
        post(photo("PNG"), content_type="image/png"),
    ]
    expected = [200, 400, 403, 400, 200]

    def one(index: int) -> tuple[int, int]:
        status, headers, body = exchange(api, workload[index % len(workload)])
        assert headers["content-type"] == "application/json"
        json.loads(body)  # well-formed JSON, every time
        return status, expected[index % len(workload)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(160)))
    assert all(got == want for got, want in results), [r for r in results if r[0] != r[1]][:5]
