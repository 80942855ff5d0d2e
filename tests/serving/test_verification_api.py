"""Bin verification in the API: an expected count per photo (query parameter for a raw body, a field per
image in a JSON batch) adds `verification` to each result. Real proxy events through the real handler; the
endpoint is emulated at the HTTP level (local_mode/scripted_model.py: a bright photo is count 5 at 0.9, the other
classes 0.025 each; a dark one is 0.3 for its count and 0.175 for each other class)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from local_mode.scripted_model import ScriptedEndpoint
from tests.serving.conftest import invoke, rest_event
from tests.serving.helpers import photo

pytestmark = pytest.mark.usefixtures("endpoint")

BRIGHT = photo(shade=220)  # count 5, p 0.9; every other class 0.025
DARK = photo(shade=60)  # p 0.3 for its count, 0.175 for the others: between the default thresholds


def _single(expected: str, data: bytes = BRIGHT) -> tuple[int, dict[str, Any]]:
    status, _, body = invoke(rest_event("POST", f"/v1/count?expected_count={expected}", data, "image/jpeg"))
    return status, body


def _batch(*items: tuple[bytes, Any]) -> tuple[int, dict[str, Any]]:
    images = []
    for n, (data, expected) in enumerate(items):
        image: dict[str, Any] = {"id": f"bin-{n}", "data": base64.b64encode(data).decode()}
        if expected is not ...:
            image["expected_count"] = expected
        images.append(image)
    status, _, body = invoke(rest_event("POST", "/v1/count", json.dumps({"images": images}).encode(), "application/json"))
    return status, body


def _refused(status: int, body: dict[str, Any], field: str) -> None:
    assert status == 400 and body["error"]["code"] == "invalid_expected_count", body
    assert body["error"]["message"].startswith(f"{field}: "), body
    assert "whole number" in body["error"]["message"] and "Traceback" not in body["error"]["message"]


# --- raw photo body, query parameter ------------------------------------------------------------------------


def test_match_mismatch_and_review_for_one_photo() -> None:
    status, body = _single("5")
    assert status == 200 and body["count"] == 5
    assert body["verification"] == {
        "expected_count": 5,
        "p_match": pytest.approx(0.9),
        "verdict": "match",
        "reason": "p_match 0.900 >= match threshold 0.45",
    }
    status, body = _single("3")
    assert status == 200 and body["verification"]["verdict"] == "mismatch" and body["verification"]["p_match"] == pytest.approx(0.025)
    status, body = _single("3", DARK)
    assert status == 200 and body["verification"]["verdict"] == "review"
    assert body["verification"]["p_match"] in (pytest.approx(0.3), pytest.approx(0.175))


def test_count_outside_the_classes_is_review_with_a_reason_never_a_guess() -> None:
    for expected in ("0", "6", "1000000"):
        status, body = _single(expected)
        assert status == 200, body
        verification = body["verification"]
        assert verification["verdict"] == "review" and verification["p_match"] is None
        assert verification["expected_count"] == int(expected)
        assert "cannot see" in verification["reason"] and "1 to 5" in verification["reason"]


def test_without_an_expected_count_there_is_no_verification() -> None:
    status, _, body = invoke(rest_event("POST", "/v1/count", BRIGHT, "image/jpeg"))
    assert status == 200 and "verification" not in body


def test_thresholds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERIFY_MATCH_THRESHOLD", "0.95")
    monkeypatch.setenv("VERIFY_MISMATCH_THRESHOLD", "0.01")
    status, body = _single("5")  # p 0.9: below the raised match threshold
    assert status == 200 and body["verification"]["verdict"] == "review"
    assert "0.95" in body["verification"]["reason"] and "0.01" in body["verification"]["reason"]


@pytest.mark.parametrize("variables", [{"VERIFY_MATCH_THRESHOLD": "0.1"}, {"VERIFY_MISMATCH_THRESHOLD": "nan"}])
def test_bad_threshold_setting_is_500_without_traceback(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    status, _, body = invoke(rest_event("POST", "/v1/count?expected_count=2", BRIGHT, "image/jpeg"))
    assert status == 500 and body["error"]["code"] == "internal_error" and "Traceback" not in body["error"]["message"]


@pytest.mark.parametrize("value", ["2.5", "-1", "two", "", "%20", "1e3", "0x10", "99999999999999", "1000001", "3%00"])
def test_bad_query_value_is_400_naming_the_parameter(endpoint: ScriptedEndpoint, value: str) -> None:
    status, body = _single(value)
    _refused(status, body, "query parameter expected_count")
    assert endpoint.calls == []  # refused before the model is called


def test_query_parameter_twice_is_refused(endpoint: ScriptedEndpoint) -> None:
    status, _, body = invoke(rest_event("POST", "/v1/count?expected_count=2&expected_count=3", BRIGHT, "image/jpeg"))
    assert status == 400 and body["error"]["code"] == "invalid_expected_count" and "2 times" in body["error"]["message"]
    assert endpoint.calls == []


def test_query_parameter_with_a_json_batch_points_to_the_field() -> None:
    images = [{"id": "a", "data": base64.b64encode(BRIGHT).decode()}]
    event = rest_event("POST", "/v1/count?expected_count=2", json.dumps({"images": images}).encode(), "application/json")
    status, _, body = invoke(event)
    assert status == 400 and body["error"]["code"] == "invalid_request" and '"expected_count" field' in body["error"]["message"]


# --- JSON batch, a field per image ----------------------------------------------------------------------------


def test_batch_verifies_each_image_against_its_own_count(endpoint: ScriptedEndpoint) -> None:
    status, body = _batch((BRIGHT, 5), (BRIGHT, 2), (DARK, ...), (BRIGHT, None))
    assert status == 200, body
    results = body["results"]
    assert [r["id"] for r in results] == ["bin-0", "bin-1", "bin-2", "bin-3"]
    assert results[0]["verification"]["verdict"] == "match" and results[1]["verification"]["verdict"] == "mismatch"
    assert "verification" not in results[2] and "verification" not in results[3]  # absent or null: count only
    assert endpoint.calls == [("application/x-npy", (4, 224, 224, 3))]  # still one endpoint call


def test_batch_accepts_integral_floats_and_decimal_strings_and_flags_outside_classes() -> None:
    status, body = _batch((BRIGHT, 5.0), (BRIGHT, " 5 "), (DARK, 7))
    assert status == 200, body
    verdicts = [r["verification"] for r in body["results"]]
    assert [v["expected_count"] for v in verdicts] == [5, 5, 7]
    assert [v["verdict"] for v in verdicts] == ["match", "match", "review"] and verdicts[2]["p_match"] is None


@pytest.mark.parametrize("value", [2.5, -1, "two", True, [2], {"n": 2}, 1e300, "", 10**7])
def test_bad_batch_value_is_400_naming_the_image(endpoint: ScriptedEndpoint, value: Any) -> None:
    status, body = _batch((BRIGHT, 2), (BRIGHT, value))
    _refused(status, body, "images[1].expected_count")
    assert endpoint.calls == []


def test_nan_and_infinity_in_json_are_refused() -> None:
    # Python's json accepts the non-standard NaN / Infinity literals: they are not whole numbers either.
    data = base64.b64encode(BRIGHT).decode()
    for literal in ("NaN", "Infinity", "-Infinity"):
        document = f'{{"images": [{{"id": "a", "data": "{data}", "expected_count": {literal}}}]}}'
        status, _, body = invoke(rest_event("POST", "/v1/count", document.encode(), "application/json"))
        _refused(status, body, "images[0].expected_count")


def test_verification_is_counted_in_metrics(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from count_api import app as handler

    monkeypatch.setattr(handler, "METRICS_ENABLED", True)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    status, _ = _batch((BRIGHT, 5), (BRIGHT, 1), (BRIGHT, ...))
    assert status == 200
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{") and "_aws" in line]
    assert any(m.get("Verifications") == [2.0] or m.get("Verifications") == 2.0 for m in emf), emf
    assert any(m.get("VerificationMismatches") in (1.0, [1.0]) for m in emf), emf
