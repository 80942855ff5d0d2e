"""Post bin photos to the count API and print a table of counts.

    python -m local_mode.client --url URL --api-key KEY photo.jpg more/ ...

Folders are searched for .jpg/.jpeg/.png. Photos go in JSON batches of --batch-size (the API's
maxImagesPerRequest); --raw sends one photo per request as image/jpeg or image/png instead.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

SUFFIXES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


class ClientError(RuntimeError):
    """The API refused a request; the message carries its error code and message."""


def find_photos(paths: list[Path]) -> list[Path]:
    photos: list[Path] = []
    for path in paths:
        if path.is_dir():
            photos.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES))
        elif path.is_file():
            photos.append(path)
        else:
            raise ClientError(f"{path} does not exist")
    if not photos:
        raise ClientError("no photos found: pass .jpg/.jpeg/.png files or folders holding them")
    return photos


def _post(url: str, api_key: str, data: bytes, content_type: str, timeout: float) -> dict[str, Any]:
    try:
        reply = requests.post(
            f"{url.rstrip('/')}/v1/count", data=data, headers={"x-api-key": api_key, "Content-Type": content_type}, timeout=timeout
        )
    except requests.RequestException as error:
        raise ClientError(f"cannot reach {url}: {error}") from None
    try:
        document = reply.json()
    except ValueError:
        raise ClientError(f"HTTP {reply.status_code} with a non-JSON body: {reply.text[:200]!r}") from None
    if reply.status_code != 200:
        error = document.get("error") or {"code": "http_error", "message": document.get("message", str(document))}
        raise ClientError(f"HTTP {reply.status_code} {error.get('code')}: {error.get('message')}")
    return document


def count_photos(
    url: str, api_key: str, photos: list[Path], batch_size: int = 8, raw: bool = False, timeout: float = 60
) -> Iterator[dict[str, Any]]:
    """Yield one result per photo: {"id": path, "count", "confidence", "needs_review", "model_version"}."""
    if raw:
        for photo in photos:
            content_type = SUFFIXES.get(photo.suffix.lower(), "image/jpeg")
            document = _post(url, api_key, photo.read_bytes(), content_type, timeout)
            yield {"id": str(photo), **document}
        return
    for start in range(0, len(photos), batch_size):
        chunk = photos[start : start + batch_size]
        images = [{"id": str(p), "data": base64.b64encode(p.read_bytes()).decode("ascii")} for p in chunk]
        document = _post(url, api_key, json.dumps({"images": images}).encode(), "application/json", timeout)
        for result in document["results"]:
            yield {**result, "model_version": document["model_version"], "request_id": document["request_id"]}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Count the items in bin photos with the count API.")
    parser.add_argument("paths", nargs="+", type=Path, help="photos (.jpg/.png) or folders of photos")
    parser.add_argument("--url", required=True, help="the API's base URL (stack output ApiUrl, or what `make serve` prints)")
    parser.add_argument("--api-key", required=True, help="the API key (x-api-key)")
    parser.add_argument("--batch-size", type=int, default=8, help="photos per JSON request (at most the API's maxImagesPerRequest)")
    parser.add_argument("--raw", action="store_true", help="send each photo as its own image/jpeg or image/png request")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for each request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        photos = find_photos(args.paths)
        width = max(len(str(p)) for p in photos)
        if not args.json:
            print(f"{'photo':<{width}}  count  confidence  review")
        for result in count_photos(args.url, args.api_key, photos, args.batch_size, args.raw, args.timeout):
            if args.json:
                print(json.dumps(result))
            else:
                review = "yes" if result["needs_review"] else ""
                print(f"{result['id']:<{width}}  {result['count']:>5}  {result['confidence']:>10.3f}  {review}")
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
