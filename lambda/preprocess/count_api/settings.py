"""The function's settings, read from environment variables (set by infra/serving_stack.py or local mode)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import verification

# Lambda's synchronous payload limit is 6 MB for the whole event; base64 adds a third, so a raw body
# above ~4.4 MB never reaches the function. 4 MB decoded leaves room for headers.
DEFAULT_MAX_BODY_BYTES = 4_000_000


@dataclass(frozen=True)
class Settings:
    endpoint_name: str
    max_images_per_request: int
    review_confidence_threshold: float
    max_body_bytes: int
    invoke_timeout_s: float
    invoke_max_attempts: int
    verify_match_threshold: float = verification.DEFAULT_MATCH_THRESHOLD
    verify_mismatch_threshold: float = verification.DEFAULT_MISMATCH_THRESHOLD


def _number(name: str, default: str, cast: type, minimum: float, maximum: float) -> float:
    raw = os.environ.get(name, default)
    try:
        value = cast(raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        raise RuntimeError(f"environment variable {name}={raw!r} must be a number from {minimum} to {maximum}")
    return value


def load_settings() -> Settings:
    """Read and check every setting; a bad value is the deployer's mistake and names the variable."""
    endpoint_name = os.environ.get("ENDPOINT_NAME", "").strip()
    if not endpoint_name:
        raise RuntimeError("environment variable ENDPOINT_NAME is not set: it names the SageMaker endpoint to call")
    match_threshold = float(_number("VERIFY_MATCH_THRESHOLD", str(verification.DEFAULT_MATCH_THRESHOLD), float, 0.0, 1.0))
    mismatch_threshold = float(_number("VERIFY_MISMATCH_THRESHOLD", str(verification.DEFAULT_MISMATCH_THRESHOLD), float, 0.0, 1.0))
    if not mismatch_threshold < match_threshold:
        raise RuntimeError(
            f"environment variable VERIFY_MISMATCH_THRESHOLD={mismatch_threshold} must be below VERIFY_MATCH_THRESHOLD={match_threshold}"
        )
    return Settings(
        endpoint_name=endpoint_name,
        max_images_per_request=int(_number("MAX_IMAGES_PER_REQUEST", "8", int, 1, 64)),
        review_confidence_threshold=float(_number("REVIEW_CONFIDENCE_THRESHOLD", "0.5", float, 0.0, 1.0)),
        max_body_bytes=int(_number("MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES), int, 1, 10_000_000)),
        # API Gateway gives up after 29 s: two attempts of 12 s plus preprocessing end before it, with a clean 504.
        invoke_timeout_s=float(_number("INVOKE_TIMEOUT_SECONDS", "12", float, 0.1, 28)),
        invoke_max_attempts=int(_number("INVOKE_MAX_ATTEMPTS", "2", int, 1, 5)),
        verify_match_threshold=match_threshold,
        verify_mismatch_threshold=mismatch_threshold,
    )
