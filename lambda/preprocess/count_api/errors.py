"""Typed errors of the count API. Each class carries its HTTP status; handler.py maps them once.

A caller's mistake is a 4xx that names the problem and what to do; endpoint trouble is a 502/503/504.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as {"error": {"code", "message"}} with `status`."""

    status = 400

    def __init__(self, code: str, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class BadRequest(ApiError):
    status = 400


class NotFound(ApiError):
    status = 404


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class EndpointModelError(ApiError):
    """The model container answered an error (SageMaker ModelError)."""

    status = 502


class EndpointError(ApiError):
    """The endpoint or SageMaker answered something we cannot use."""

    status = 502


class EndpointUnavailable(ApiError):
    """Not deployed, throttled or starting: the caller may retry later (Retry-After when known)."""

    status = 503


class EndpointTimeout(ApiError):
    status = 504


# Status of each preprocessing_spec.ImageError code (a bad photo is always the caller's to fix).
IMAGE_ERROR_STATUS = {
    "empty_image": 400,
    "not_an_image": 400,
    "corrupt_image": 400,
    "unsupported_image_format": 415,
    "image_too_large": 413,
}
