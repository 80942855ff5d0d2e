"""The count API's Lambda: POST /v1/count (photos -> item counts), GET /v1/health, and GET / (a page to try
counting and verification in a browser: count_api/page.html, which calls POST /v1/count with the user's key).

Photos are preprocessed here with the shared spec (Pillow only, draft-mode JPEG decode) and sent to the
SageMaker endpoint as one application/x-npy uint8 batch. Every failure is a typed exception mapped to a
JSON response once, below: a caller's mistake is a 4xx that names it, endpoint trouble a 502/503/504.

Tracing is Lambda's active tracing (infra/serving_stack.py: tracing=ACTIVE), which records each
invocation's initialization and handler segments without any SDK in the function: the X-Ray SDK behind
Powertools' Tracer cost ~0.4 s of every cold start (docs/benchmarks.md section 2) for per-method subsegments.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import preprocessing_spec as spec
import verification
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from count_api.errors import IMAGE_ERROR_STATUS, ApiError, EndpointError, NotFound
from count_api.parsing import Photo, event_body, parse_photos
from count_api.settings import METRICS_NAMESPACE, SERVICE_NAME, ApiSettings, Variable, load_api_settings


class _Lazy:
    """count_api.endpoint, imported by the first request that needs it: it pulls in botocore (~0.15 s of the
    cold start, docs/benchmarks.md section 2), which a refused request (any 4xx) never needs."""

    def __getattr__(self, name: str) -> Any:
        from count_api import endpoint as module

        return getattr(module, name)


endpoint = _Lazy()
logger = Logger(service=os.environ.get(Variable.POWERTOOLS_SERVICE_NAME, SERVICE_NAME))
metrics = Metrics(namespace=os.environ.get(Variable.POWERTOOLS_METRICS_NAMESPACE, METRICS_NAMESPACE))
app = APIGatewayRestResolver()

ROUTES = {"/v1/count": "POST", "/v1/health": "GET", "/": "GET"}
PAGE_FILE = Path(__file__).resolve().parent / "page.html"
# The page is static and self-contained (inline style and script, no external assets): its CSP allows
# nothing else, it may not be framed, and it calls the API on its own origin only.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src blob: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# Powertools keeps (never flushes) metrics while POWERTOOLS_METRICS_DISABLED is set (local mode), and
# still prints the cold-start metric: record none there.
METRICS_ENABLED = os.environ.get(Variable.POWERTOOLS_METRICS_DISABLED, "false").lower() != "true"
# SageMaker real-time endpoints take at most 6 MB per call: 36 images of 224x224x3 uint8 is 5.4 MB.
MAX_IMAGES_PER_CALL = 36


# --- routes --------------------------------------------------------------------------------------------


@app.post("/v1/count")
def count() -> Response:
    _metric("CountRequests", MetricUnit.Count, 1)
    settings = load_api_settings()
    event = app.current_event
    data = event_body(event.get("body"), bool(event.get("isBase64Encoded")), settings.max_body_bytes)
    query = event.get("multiValueQueryStringParameters")
    photos, single = parse_photos(data, event.headers.get("content-type"), settings.max_images_per_request, query)
    raws = [_preprocess(photo, single) for photo in photos]
    predictions, model_version = _predict(settings, raws)
    results = [_result(photo, prediction, settings, single) for photo, prediction in zip(photos, predictions, strict=True)]
    _metric("ImagesCounted", MetricUnit.Count, len(results))
    _metric("NeedsReview", MetricUnit.Count, sum(r["needs_review"] for r in results))
    verdicts = [r["verification"]["verdict"] for r in results if "verification" in r]
    if verdicts:
        _metric("Verifications", MetricUnit.Count, len(verdicts))
        _metric("VerificationMismatches", MetricUnit.Count, verdicts.count(verification.MISMATCH))
    base = {"request_id": _request_id(), "model_version": model_version}
    body = {**base, **results[0]} if single else {**base, "results": results}
    return _json(200, body, {"X-Model-Version": model_version})


@app.get("/")
def page() -> Response:
    """The try-it page (no key needed: it holds no data; the user types the key and the page sends it)."""
    _metric("PageRequests", MetricUnit.Count, 1)
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=_page_html(),
        headers={"X-Request-Id": _request_id(), **PAGE_HEADERS},
    )


@functools.cache
def _page_html() -> str:
    return PAGE_FILE.read_text(encoding="utf-8")


@app.get("/v1/health")
def health() -> Response:
    _metric("HealthRequests", MetricUnit.Count, 1)
    settings = load_api_settings()
    described = endpoint.describe(settings)
    if described is None:
        status, serving = "not_deployed", False
        message = endpoint.NOT_DEPLOYED_MESSAGE.format(name=settings.endpoint_name)
    else:
        status = str(described.get("EndpointStatus", "Unknown"))
        serving = status in endpoint.SERVING_STATES
        message = (
            "the model endpoint is serving" if serving else f"the model endpoint is {status}: counts are unavailable until it is InService"
        )
    body = {
        "request_id": _request_id(),
        "status": "ok" if serving else "unavailable",
        "serving": serving,
        "endpoint": {"name": settings.endpoint_name, "status": status},
        "message": message,
    }
    return _json(200 if serving else 503, body, {} if serving else endpoint.retry_after_header(endpoint.RETRY_AFTER_NOT_READY_S))


# --- steps ---------------------------------------------------------------------------------------------


def _preprocess(photo: Photo, single: bool) -> bytes:
    try:
        return spec.preprocess_bytes(photo.data, draft=True)
    except spec.ImageError as error:
        # Name the image in a batch so the caller knows which one to fix.
        prefix = "" if single else f"image {photo.id!r}: "
        raise ImageProblem(error.code, prefix + error.message) from None


class ImageProblem(ApiError):
    """A photo the spec refused (spec.ImageError with the image named); status from IMAGE_ERROR_STATUS."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = IMAGE_ERROR_STATUS.get(code, 400)


def _predict(settings: ApiSettings, raws: list[bytes]) -> tuple[list[dict[str, Any]], str]:
    predictions: list[dict[str, Any]] = []
    model_version = ""
    started = time.perf_counter()
    for start in range(0, len(raws), MAX_IMAGES_PER_CALL):
        chunk = raws[start : start + MAX_IMAGES_PER_CALL]
        reply = endpoint.invoke_npy(settings, spec.encode_npy_uint8(chunk))
        chunk_predictions = reply.get("predictions")
        if not isinstance(chunk_predictions, list) or len(chunk_predictions) != len(chunk):
            raise EndpointError("bad_endpoint_reply", f"the model endpoint returned no prediction list for {len(chunk)} images")
        predictions.extend(chunk_predictions)
        model_version = str(reply.get("model_version", "unknown"))
    _metric("EndpointLatency", MetricUnit.Milliseconds, (time.perf_counter() - started) * 1000)
    return predictions, model_version


def _result(photo: Photo, prediction: Any, settings: ApiSettings, single: bool) -> dict[str, Any]:
    try:
        count = int(prediction["count"])
        confidence = float(prediction["confidence"])
        probabilities = {str(k): float(v) for k, v in dict(prediction["probabilities"]).items()}
    except (KeyError, TypeError, ValueError):
        raise EndpointError("bad_endpoint_reply", "the model endpoint's prediction lacks count, confidence or probabilities") from None
    result: dict[str, Any] = {} if single else {"id": photo.id}
    result.update(
        count=count,
        confidence=round(confidence, 6),
        probabilities={k: round(v, 6) for k, v in probabilities.items()},
        needs_review=confidence < settings.review_confidence_threshold,
    )
    if photo.expected_count is not None:
        # expected_count was checked by parse_photos: only the endpoint's probabilities can be wrong here.
        try:
            result["verification"] = verification.verify(
                probabilities, photo.expected_count, settings.verify_match_threshold, settings.verify_mismatch_threshold
            )
        except ValueError:
            raise EndpointError("bad_endpoint_reply", "the model endpoint's probabilities are not {count: probability}") from None
    return result


def _metric(name: str, unit: MetricUnit, value: float) -> None:
    if METRICS_ENABLED:
        metrics.add_metric(name=name, unit=unit, value=value)


def _request_id() -> str:
    context = app.current_event.get("requestContext") or {}
    request_id = context.get("requestId") if isinstance(context, dict) else None
    if request_id:
        return str(request_id)
    lambda_context = getattr(app, "lambda_context", None)
    return str(getattr(lambda_context, "aws_request_id", "unknown"))


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body),
        headers={"X-Request-Id": _request_id(), **(headers or {})},
    )


# --- the one place errors become responses -------------------------------------------------------------


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"error": {"code": code, "message": message}}, headers)


@app.exception_handler(ApiError)
def handle_api_error(error: ApiError) -> Response:
    log = logger.warning if error.status < 500 else logger.error
    log("request refused", extra={"status": error.status, "code": error.code, "detail": error.message})
    _metric("ClientErrors" if error.status < 500 else "EndpointErrors", MetricUnit.Count, 1)
    return _error(error.status, error.code, error.message, endpoint.retry_after_header(error.retry_after_s))


@app.exception_handler(Exception)
def handle_unexpected(error: Exception) -> Response:
    # A bug or a bad deployment setting, never the caller's fault: log it, answer without a traceback.
    logger.exception("unexpected error")
    return _error(500, "internal_error", f"the service failed unexpectedly ({type(error).__name__}); the request id is in X-Request-Id")


@app.not_found
def handle_not_found(_: Exception) -> Response:
    _metric("UnknownRoutes", MetricUnit.Count, 1)
    path = app.current_event.path
    method = app.current_event.http_method
    if path in ROUTES:
        return _error(405, "method_not_allowed", f"{method} is not allowed on {path}: use {ROUTES[path]}", {"Allow": ROUTES[path]})
    error = NotFound("not_found", f"no route {method} {path}: use POST /v1/count, GET /v1/health or GET / (the try-it page)")
    return _error(error.status, error.code, error.message)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=METRICS_ENABLED)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
