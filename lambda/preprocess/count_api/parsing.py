"""Turn an API Gateway proxy event's body into photos, or raise a typed 4xx error naming the problem."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import verification

from count_api.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png")
JSON_MEDIA_TYPE = "application/json"
MAX_ID_LENGTH = 128


@dataclass(frozen=True)
class Photo:
    id: str
    data: bytes
    # The record's item count to verify the photo against (None: count only).
    expected_count: int | None = None


def media_type(content_type: str | None) -> str:
    """'Image/JPEG; charset=x' -> 'image/jpeg'; '' when absent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def event_body(body: str | None, is_base64: bool, max_bytes: int) -> bytes:
    """The request body as bytes. API Gateway base64-encodes binary media types; decode it ourselves
    (Powertools' decoded_body UTF-8-decodes and fails on JPEG bytes)."""
    if not body:
        raise BadRequest("empty_body", 'the request body is empty: send a JPEG or PNG photo, or JSON {"images": [...]}')
    # Cheap size check before decoding: base64 is 4/3 of the raw size.
    if len(body) > max_bytes * 4 // 3 + 4:
        raise _too_large(len(body) * 3 // 4 if is_base64 else len(body), max_bytes)
    if is_base64:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("invalid_base64", "the body is marked base64-encoded but is not valid base64") from None
    else:
        data = body.encode("utf-8", errors="surrogateescape")
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    if not data:
        raise BadRequest("empty_body", 'the request body is empty: send a JPEG or PNG photo, or JSON {"images": [...]}')
    return data


def _too_large(size: int, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        "payload_too_large",
        f"the request body is {size:,} bytes, above the {max_bytes:,}-byte limit: send fewer or smaller photos (224x224 is enough)",
    )


def expected_count(value: Any, where: str) -> int:
    """The record's count, a whole number >= 0 (verification.parse_expected_count), or a 400 naming `where`."""
    try:
        return verification.parse_expected_count(value, where)
    except verification.VerificationError as error:
        raise BadRequest("invalid_expected_count", f"{where}: {error.message}") from None


def query_expected_count(query: dict[str, list[str]] | None) -> int | None:
    """The query parameter expected_count (multiValueQueryStringParameters), None when absent."""
    values = (query or {}).get("expected_count")
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest("invalid_expected_count", f"query parameter expected_count is given {len(values)} times: give it once")
    return expected_count(values[0], "query parameter expected_count")


def parse_photos(
    data: bytes, content_type: str | None, max_images: int, query: dict[str, list[str]] | None = None
) -> tuple[list[Photo], bool]:
    """(photos, single): one raw image/jpeg or image/png body (its expected count in the query string), or a
    JSON batch {"images": [{"id", "data", "expected_count"?}]}."""
    kind = media_type(content_type)
    if kind in IMAGE_MEDIA_TYPES:
        return [Photo(id="0", data=data, expected_count=query_expected_count(query))], True
    if kind == JSON_MEDIA_TYPE:
        if (query or {}).get("expected_count"):
            raise BadRequest(
                "invalid_request",
                "query parameter expected_count applies to a single photo body: in a JSON batch give each image its own "
                '"expected_count" field',
            )
        return _parse_json_batch(data, max_images), False
    shown = f"'{kind}'" if kind else "missing"
    raise UnsupportedMediaType(
        "unsupported_media_type",
        f"Content-Type is {shown}: send image/jpeg or image/png with the photo as the body, "
        'or application/json {"images": [{"id": "...", "data": "<base64>"}]}',
    )


def _parse_json_batch(data: bytes, max_images: int) -> list[Photo]:
    try:
        document: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise BadRequest("invalid_json", f'the body is not valid JSON ({type(error).__name__}): send {{"images": [...]}}') from None
    images = document.get("images") if isinstance(document, dict) else None
    if not isinstance(images, list):
        raise BadRequest("invalid_request", 'the JSON body needs an "images" list: {"images": [{"id": "bin-1", "data": "<base64 JPEG>"}]}')
    if not images:
        raise BadRequest("no_images", 'the "images" list is empty: send at least one photo')
    if len(images) > max_images:
        raise BadRequest(
            "too_many_images", f"the request has {len(images)} images, above the limit of {max_images}: split it into several requests"
        )
    photos: list[Photo] = []
    seen: set[str] = set()
    for index, item in enumerate(images):
        where = f"images[{index}]"
        if not isinstance(item, dict):
            raise BadRequest("invalid_request", f'{where} must be an object {{"id": "...", "data": "<base64>"}}')
        photo_id = item.get("id", str(index))
        if not isinstance(photo_id, str) or not 1 <= len(photo_id) <= MAX_ID_LENGTH:
            raise BadRequest("invalid_id", f"{where}.id must be a string of 1 to {MAX_ID_LENGTH} characters")
        if photo_id in seen:
            raise BadRequest("duplicate_id", f"{where}.id {photo_id!r} is used twice: give each image its own id")
        seen.add(photo_id)
        encoded = item.get("data")
        if not isinstance(encoded, str) or not encoded:
            raise BadRequest("invalid_request", f"{where}.data must be the photo's bytes as a non-empty base64 string")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("invalid_base64", f"{where}.data (id {photo_id!r}) is not valid base64") from None
        # Absent or null: count only.
        expected = item.get("expected_count")
        expected = None if expected is None else expected_count(expected, f"{where}.expected_count")
        photos.append(Photo(id=photo_id, data=raw, expected_count=expected))
    return photos
