"""docs/openapi.yaml against what the handler really answers (endpoint emulated at the HTTP level, see
local_mode/scripted_model.py): every status is documented for its route, every body validates against the
documented schema (jsonschema, OpenAPI 3.1 = JSON Schema 2020-12), every error code is listed."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from PIL import Image

from local_mode.scripted_model import ScriptedEndpoint
from tests.serving.conftest import invoke, rest_event
from tests.serving.helpers import photo

DOC = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        section, kind, name = node["$ref"].removeprefix("#/").split("/")
        node = DOC[section][kind][name]
    return node


def check_against_document(event: dict[str, Any]) -> tuple[int, dict]:
    status, headers, body = invoke(event)
    operations = DOC["paths"].get(event["path"], {})
    # A wrong method on a known path answers the 405 documented on that path's operation.
    operation = operations.get(event["httpMethod"].lower()) or next(iter(operations.values()), None)
    assert operation is not None or status == 404, f"{event['path']} answered {status} but is not documented"
    if operation is None:
        jsonschema.validate(body, {"$ref": "#/components/schemas/Error", "components": DOC["components"]})
        return status, body
    assert str(status) in operation["responses"], f"{event['httpMethod']} {event['path']} answered {status}, not documented"
    response = _resolve(operation["responses"][str(status)])
    schema = response["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**schema, "components": DOC["components"]}, cls=jsonschema.Draft202012Validator)
    for name in response.get("headers", {}):
        if name in ("Retry-After", "Allow", "X-Request-Id", "X-Model-Version"):
            assert name.lower() in headers, f"{status} must send {name}"
    if "error" in body:
        assert body["error"]["code"] in response["description"], f"error code {body['error']['code']} is not listed for {status}"
    return status, body


def _batch(*images: bytes, expected: list[Any] | None = None, **extra: Any) -> bytes:
    items = [{"id": f"i{n}", "data": base64.b64encode(d).decode()} for n, d in enumerate(images)]
    for item, count in zip(items, expected or [], strict=False):
        if count is not None:
            item["expected_count"] = count
    return json.dumps({"images": items, **extra}).encode()


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 20)).save(out, format="GIF")
    return out.getvalue()


CASES = [
    ("ok", rest_event("POST", "/v1/count", photo(), "image/jpeg"), 200),
    ("ok", rest_event("POST", "/v1/count", _batch(photo(), photo("PNG")), "application/json"), 200),
    ("ok", rest_event("GET", "/v1/health"), 200),
    # bin verification: a verdict per photo, review (p_match null) outside the classes, 400 for a bad count
    ("ok", rest_event("POST", "/v1/count?expected_count=5", photo(shade=220), "image/jpeg"), 200),
    ("ok", rest_event("POST", "/v1/count?expected_count=9", photo(), "image/jpeg"), 200),
    ("ok", rest_event("POST", "/v1/count", _batch(photo(), photo(), expected=[2, None]), "application/json"), 200),
    ("ok", rest_event("POST", "/v1/count?expected_count=2.5", photo(), "image/jpeg"), 400),
    ("ok", rest_event("POST", "/v1/count", _batch(photo(), expected=[-1]), "application/json"), 400),
    ("not_deployed", rest_event("GET", "/v1/health"), 503),
    ("ok", rest_event("POST", "/v1/count", b"", "image/jpeg"), 400),
    ("ok", rest_event("POST", "/v1/count", b"abc", "image/png"), 400),
    ("ok", rest_event("POST", "/v1/count", photo()[:300], "image/jpeg"), 400),
    ("ok", rest_event("POST", "/v1/count", _batch(*[photo()] * 5), "application/json"), 400),
    ("ok", rest_event("POST", "/v1/count", b"{}", "application/json"), 400),
    ("ok", rest_event("POST", "/v1/count", b"x", "text/csv"), 415),
    ("ok", rest_event("POST", "/v1/count", _gif(), "image/jpeg"), 415),
    ("ok", rest_event("GET", "/v1/count"), 405),
    ("ok", rest_event("POST", "/nope"), 404),
    ("not_deployed", rest_event("POST", "/v1/count", photo(), "image/jpeg"), 503),
    ("throttle", rest_event("POST", "/v1/count", photo(), "image/jpeg"), 503),
    ("model_error", rest_event("POST", "/v1/count", photo(), "image/jpeg"), 502),
    ("garbage", rest_event("POST", "/v1/count", photo(), "image/jpeg"), 502),
    ("slow", rest_event("POST", "/v1/count", photo(), "image/jpeg"), 504),
]


@pytest.mark.parametrize("mode,event,expected", CASES, ids=[f"{c[1]['httpMethod']}-{c[1]['path']}-{c[0]}-{c[2]}" for c in CASES])
def test_handler_answers_as_documented(endpoint: ScriptedEndpoint, mode: str, event: dict, expected: int) -> None:
    endpoint.mode = mode
    status, _ = check_against_document(event)
    assert status == expected


def test_schema_rejects_an_undocumented_shape() -> None:
    # The check above can fail: a body the document does not describe is refused.
    schema = {"$ref": "#/components/schemas/SingleCount", "components": DOC["components"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"count": 2, "confidence": 0.5, "probabilities": {"1": 1}, "needs_review": False}, schema)
    ok = {
        "request_id": "r",
        "model_version": "m",
        "count": 2,
        "confidence": 0.5,
        "probabilities": {"1": 0.5, "2": 0.5},
        "needs_review": False,
    }
    jsonschema.validate(ok, schema)
    for verification in (
        {"expected_count": 2, "p_match": 0.5, "verdict": "maybe", "reason": "x"},  # not a verdict
        {"expected_count": -1, "p_match": 0.5, "verdict": "match", "reason": "x"},
        {"expected_count": 2, "p_match": 0.5, "verdict": "match"},  # no reason
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**ok, "verification": verification}, schema)


def test_document_refs_resolve_and_limits_match_the_config_bounds() -> None:
    text = json.dumps(DOC)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        _resolve({"$ref": ref})
    assert DOC["components"]["schemas"]["BatchRequest"]["properties"]["images"]["maxItems"] == 64  # config's upper bound
