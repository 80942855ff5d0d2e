"""The try-it page (lambda/preprocess/count_api/page.html): served by the real handler at GET / as text/html,
open without the key in the local API (exactly GET /), self-contained and with labelled controls.
tests/serving/test_page_browser.py drives it in a real headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from local_mode.api_server import ApiServer, LambdaContext
from local_mode.scripted_model import ScriptedEndpoint
from tests.serving.conftest import rest_event
from tests.serving.helpers import photo

PAGE = Path(__file__).resolve().parents[2] / "lambda" / "preprocess" / "count_api" / "page.html"


def _reply(event: dict) -> dict:
    from count_api import app as handler

    reply = handler.lambda_handler(event, LambdaContext(aws_request_id="page-1", deadline=9e9))
    headers = {k.lower(): v for k, v in (reply.get("headers") or {}).items()}
    for name, values in (reply.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), ", ".join(values))
    reply["headers"] = headers
    return reply


@pytest.mark.usefixtures("endpoint")
def test_handler_serves_the_page_as_text_html() -> None:
    event = rest_event("GET", "/")
    del event["headers"]["x-api-key"]
    reply = _reply(event)
    assert reply["statusCode"] == 200
    assert reply["headers"]["content-type"] == "text/html; charset=utf-8"
    # Text, not base64: API Gateway passes it through (text/html is not a binary media type).
    assert reply["isBase64Encoded"] is False and reply["body"] == PAGE.read_text(encoding="utf-8")
    csp = reply["headers"]["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert reply["headers"]["x-content-type-options"] == "nosniff"


@pytest.mark.usefixtures("endpoint")
def test_other_methods_on_the_root_are_405_and_unknown_routes_name_the_page() -> None:
    reply = _reply(rest_event("POST", "/", b"x", "text/plain"))
    assert reply["statusCode"] == 405 and reply["headers"]["allow"] == "GET"
    reply = _reply(rest_event("GET", "/index.html"))
    assert reply["statusCode"] == 404 and "GET /" in reply["body"]


@pytest.fixture
def api(endpoint: ScriptedEndpoint) -> Iterator[ApiServer]:
    from count_api import app as handler

    server = ApiServer(handler.lambda_handler, api_key="secret-key")
    yield server
    server.close()


def test_local_api_opens_exactly_get_root_without_the_key(api: ApiServer) -> None:
    page = requests.get(f"{api.url}/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html") and "<title>" in page.text
    # Everything else still needs the key: another method on /, the data routes, a look-alike path.
    for method, path in (("POST", "/"), ("GET", "/v1/health"), ("POST", "/v1/count"), ("GET", "/v1"), ("GET", "/?x=1/../v1/health")):
        reply = requests.request(method, f"{api.url}{path}", data=photo() if method == "POST" else None, timeout=10)
        if path.startswith("/?"):
            assert reply.status_code == 200  # the query string does not change the route: still the page
            continue
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden", (method, path, reply.text)


# --- the page itself ------------------------------------------------------------------------------------------


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open_labels = 0
        self.wrapped_inputs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "label":
            self.open_labels += 1
        if tag == "input" and self.open_labels:
            self.wrapped_inputs.add(str(dict(attrs).get("id")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.open_labels -= 1


def test_page_is_self_contained() -> None:
    text = PAGE.read_text(encoding="utf-8")
    # No external scripts, styles, fonts or images: no absolute URLs, no src/href to anything but blob/data.
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!blob:|data:|#)""", text)
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE)
    assert "@import" not in text and "url(" not in text
    collector = _Collector()
    collector.feed(text)
    assert not [t for t, a in collector.tags if t in ("link", "iframe", "object", "embed")]


def test_every_control_is_labelled() -> None:
    collector = _Collector()
    collector.feed(PAGE.read_text(encoding="utf-8"))
    labelled = {a.get("for") for t, a in collector.tags if t == "label"}
    inputs = [a for t, a in collector.tags if t == "input"]
    assert inputs
    for attrs in inputs:
        assert attrs.get("id") in labelled or attrs.get("id") in collector.wrapped_inputs, attrs
    # Rows are built by script: each expected-count input gets a <label for=...> (checked in the browser test).
    assert 'el("label", { for: `expected-${id}` }' in PAGE.read_text(encoding="utf-8")
