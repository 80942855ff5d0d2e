"""A few hundred generated hostile requests through the real handler (endpoint emulated at the HTTP
level, always healthy): 0 crashes, 0 5xx, every error in the documented shape. bench/fuzz_handler.py
runs the same properties 10,000 times."""

from __future__ import annotations

import pytest

from bench.fuzz_handler import fuzz, run_case
from local_mode.api_server import build_event
from tests.serving.fakes import FakeEndpoint


def test_fuzz_properties_hold(endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "CRITICAL")
    result = fuzz(examples=300)
    assert result["examples"] == 300
    assert result["problems"] == [], result
    # The generator reaches the interesting classes, not only one kind of refusal.
    assert {400, 413, 415} <= set(result["statuses"]), result["statuses"]
    assert {"corrupt_image", "not_an_image"} <= set(result["error_codes"]), result["error_codes"]


def test_the_fuzz_oracle_does_flag_a_5xx(endpoint: FakeEndpoint) -> None:
    # The properties can fail: with the endpoint broken, a valid request's 502 is reported as a problem.
    from tests.serving.fakes import photo

    endpoint.mode = "model_error"
    status, _, problem = run_case(build_event("POST", "/v1/count", {"Content-Type": "image/jpeg"}, photo(), "127.0.0.1"))
    assert status == 502 and problem is not None and problem.startswith("5xx")
