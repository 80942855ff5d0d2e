"""Hostile requests for the count Lambda's handler and the properties it must keep under them.

Generated API Gateway events (Hypothesis strategies): random bytes, truncated and corrupted JPEG/PNG, huge
dimensions (decompression bombs: png_bomb_header, jpeg_with_dimensions), wrong and missing headers, hostile
JSON batches, and expected counts for bin verification (query parameter and per-image field: whole numbers in
and out of the classes, negatives, fractions, NaN/Infinity, strings, booleans, nested values, repeated
parameters).

Properties (run_case): the handler never raises, always answers JSON, caller faults are always 4xx (never
5xx), errors have the {"error": {"code", "message"}} shape, and a 200 carries `verification` exactly for the
photos that sent an expected count, with a known verdict and p_match in [0, 1] (null only for review).
The caller points the handler at a healthy endpoint emulator (local_mode/scripted_model.ScriptedEndpoint),
so any 5xx is the handler's fault. tests/serving/test_fuzz.py runs fuzz() a few hundred times,
bench/fuzz_handler.py 10,000 times. Needs Hypothesis (requirements-dev.txt).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import warnings
import zlib
from collections import Counter
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from local_mode.api_server import LambdaContext, build_event

# (value, weight): mostly the accepted types, so most cases reach the decoder.
CONTENT_TYPES = [
    ("image/jpeg", 8),
    ("image/png", 6),
    ("application/json", 6),
    ("IMAGE/JPEG; q=1", 1),
    ("text/plain", 1),
    ("image/gif", 1),
    ("", 1),
    (None, 1),
]
PHOTO_KINDS = [("valid", 3), ("truncated", 3), ("flipped", 3), ("png_bomb", 2), ("jpeg_dims", 2), ("random", 2), ("empty", 1)]
METHODS = [("POST", 18), ("GET", 1), ("PUT", 1)]
TAMPERING = [("none", 16), ("not_base64", 1), ("flag_flip", 1), ("no_headers", 1), ("null_body", 1)]


def _weighted(draw: st.DrawFn, options: list[tuple[Any, int]]) -> Any:
    total = sum(weight for _, weight in options)
    # Hypothesis favours small integers and list heads; scattering the draw spreads the choice by weight.
    ticket = (draw(st.integers(0, total - 1)) * 7919) % total
    for value, weight in options:
        if ticket < weight:
            return value
        ticket -= weight
    raise AssertionError("unreachable")


def _encoded(fmt: str, width: int, height: int, seed: int) -> bytes:
    image = Image.new("RGB", (width, height), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def png_bomb_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with a tiny (or absent) IDAT: the classic bomb shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def jpeg_with_dimensions(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 header is rewritten to claim other dimensions."""
    data = bytearray(_encoded("JPEG", 16, 16, 1))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


@st.composite
def photos(draw: st.DrawFn) -> bytes:
    kind = _weighted(draw, PHOTO_KINDS)
    if kind == "random":
        return draw(st.binary(max_size=2048))
    if kind == "empty":
        return b""
    if kind == "png_bomb":
        return png_bomb_header(draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1)))
    if kind == "jpeg_dims":
        return jpeg_with_dimensions(draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
    fmt = draw(st.sampled_from(["JPEG", "PNG"]))
    data = _encoded(fmt, draw(st.integers(1, 300)), draw(st.integers(1, 300)), draw(st.integers(0, 255)))
    if kind == "truncated":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "flipped":
        position = draw(st.integers(0, len(data) - 1))
        return data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1 :]
    return data


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


# Expected counts: mostly whole numbers (in and out of the classes 1..5), then everything a caller could send.
_expected_counts = st.one_of(
    st.integers(0, 7),
    st.integers(-3, 3),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2.0, "3", " 4 ", "+1", "-0", "1e3", "0x10", "", "٣", True, False]),
    st.text(max_size=12),
    st.none(),
    _json_values,
)


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    """'' or '?expected_count=...' (sometimes twice, sometimes with another parameter)."""
    # Mostly valid or absent, so that most photos still reach the decoder (a bad count is refused before it).
    kind = _weighted(draw, [("none", 8), ("count", 6), ("text", 1), ("twice", 1), ("other", 1)])
    if kind == "none":
        return ""
    if kind == "count":
        return f"?expected_count={draw(st.integers(-1, 8))}"
    if kind == "text":
        return f"?expected_count={quote(draw(st.text(max_size=12)), safe='')}"
    if kind == "twice":
        return f"?expected_count={draw(st.integers(0, 6))}&expected_count={draw(st.integers(0, 6))}"
    return f"?verbose=1&expected_count={draw(st.integers(0, 6))}"


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["batch", "anything", "broken"]))
    if kind == "anything":
        return json.dumps(draw(_json_values)).encode()
    if kind == "broken":
        return draw(st.binary(max_size=200))
    items = []
    for _ in range(draw(st.integers(0, 10))):
        item: dict[str, Any] = {}
        if draw(st.booleans()):
            item["id"] = draw(st.one_of(st.text(max_size=140), st.integers(), st.none()))
        item["data"] = draw(
            st.one_of(st.builds(lambda b: base64.b64encode(b).decode(), photos()), st.text(max_size=40), st.integers(), st.none())
        )
        if draw(st.booleans()):
            item["expected_count"] = draw(_expected_counts)
        items.append(item)
    return json.dumps({"images": items}).encode()


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    content_type = _weighted(draw, CONTENT_TYPES)
    body = draw(json_bodies()) if content_type == "application/json" else draw(photos())
    headers = {"x-api-key": "k"}
    if content_type is not None:
        headers[draw(st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE"]))] = content_type
    event = build_event(_weighted(draw, METHODS), "/v1/count" + draw(query_strings()), headers, body, "127.0.0.1")
    tamper = _weighted(draw, TAMPERING)
    if tamper == "not_base64":
        event["isBase64Encoded"], event["body"] = True, draw(st.text(max_size=50))
    elif tamper == "flag_flip":
        event["isBase64Encoded"] = not event["isBase64Encoded"]
    elif tamper == "no_headers":
        event["headers"], event["multiValueHeaders"] = None, None
    elif tamper == "null_body":
        event["body"] = None
    return event


def run_case(event: dict[str, Any]) -> tuple[int, dict[str, Any] | None, str | None]:
    """(status, JSON body or None, problem or None) for one event through the real lambda_handler."""
    from count_api import app as handler  # after the caller set the handler's environment: Powertools reads it at import

    try:
        reply = handler.lambda_handler(event, LambdaContext(aws_request_id="fuzz", deadline=time.time() + 30))
    except Exception as error:  # a crash: exactly what the fuzz looks for
        return 0, None, f"crash: {type(error).__name__}: {error}"
    try:
        raw = base64.b64decode(reply["body"]) if reply.get("isBase64Encoded") else reply["body"]
        body = json.loads(raw)
    except (KeyError, TypeError, ValueError):
        return reply.get("statusCode", 0), None, f"non-JSON reply: {str(reply)[:200]}"
    status = int(reply["statusCode"])
    if status >= 500:
        return status, body, f"5xx for a caller's request: {body}"
    if status != 200 and not (
        isinstance(body.get("error"), dict) and set(body["error"]) == {"code", "message"} and body["error"]["message"]
    ):
        return status, body, f"error without the error shape: {body}"
    if status == 200 and event.get("httpMethod") == "POST":
        return status, body, verification_problem(event, body)
    return status, body, None


def _sent_expected_counts(event: dict[str, Any], body: dict[str, Any]) -> list[bool]:
    """Which photos of an accepted POST sent an expected count (the query parameter, or a non-null field)."""
    if "results" not in body:
        return [bool((event.get("multiValueQueryStringParameters") or {}).get("expected_count"))]
    raw = event["body"]
    document = json.loads(base64.b64decode(raw) if event.get("isBase64Encoded") else raw)
    return [item.get("expected_count") is not None for item in document["images"]]


def verification_problem(event: dict[str, Any], body: dict[str, Any]) -> str | None:
    """A 200 has `verification` exactly where an expected count was sent, with a known verdict and a p_match
    in [0, 1] (null only with verdict review)."""
    results = body.get("results", [body])
    sent = _sent_expected_counts(event, body)
    if len(sent) != len(results):
        return f"{len(results)} results for {len(sent)} photos: {body}"
    for result, expected in zip(results, sent, strict=True):
        verification = result.get("verification")
        if expected != (verification is not None):
            return f"verification {'missing' if expected else 'unasked'}: {result}"
        if verification is None:
            continue
        p_match, verdict = verification.get("p_match"), verification.get("verdict")
        if verdict not in ("match", "mismatch", "review") or not verification.get("reason"):
            return f"bad verification: {verification}"
        if p_match is None and verdict != "review" or p_match is not None and not 0 <= p_match <= 1:
            return f"bad p_match: {verification}"
    return None


def fuzz(examples: int, seed: int | None = None) -> dict[str, Any]:
    """Run `examples` generated events; returns counts per status and every problem found."""
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    problems: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        derandomize=seed is not None,
        suppress_health_check=list(HealthCheck),
    )
    @given(events())
    def one(event: dict[str, Any]) -> None:
        status, body, problem = run_case(event)
        statuses[status] += 1
        if body and isinstance(body.get("error"), dict):
            codes[str(body["error"].get("code"))] += 1
        if problem:
            problems.append(problem)

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        one()
    return {
        "examples": sum(statuses.values()),
        "seconds": round(time.perf_counter() - started, 1),
        "statuses": dict(sorted(statuses.items())),
        "error_codes": dict(codes.most_common()),
        "crashes": sum(p.startswith("crash") for p in problems),
        "server_errors": sum(p.startswith("5xx") for p in problems),
        "problems": problems[:20],
    }
