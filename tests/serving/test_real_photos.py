"""Real bin photos (../shared/abid, skipped when absent) through the handler: the uint8 batch the Lambda
sends (Pillow draft-mode decode) matches the spec's full decode within DRAFT_MEAN_ABS_TOLERANCE.
The endpoint is emulated at the HTTP level (local_mode/scripted_model.py) and records what it received."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import preprocessing_spec as spec
import pytest

from local_mode.scripted_model import ScriptedEndpoint
from tests.serving.conftest import invoke, rest_event

pytestmark = [pytest.mark.abid, pytest.mark.usefixtures("endpoint")]


def _originals(abid_dir: Path, n: int) -> list[Path]:
    # The photos at original resolution (larger than 224 px) exercise the draft-mode decode.
    with (abid_dir / "index.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["width"]) > 2 * spec.IMAGE_SIZE or int(r["height"]) > 2 * spec.IMAGE_SIZE]
    return [abid_dir / "bin-images" / f"{r['image_id']}.jpg" for r in rows[:n]]


def test_lambda_batch_matches_the_full_decode_spec(abid_dir: Path, endpoint: ScriptedEndpoint) -> None:
    paths = _originals(abid_dir, 4)
    assert len(paths) == 4
    images = [{"id": p.stem, "data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    status, _, body = invoke(rest_event("POST", "/v1/count", json.dumps({"images": images}).encode(), "application/json"))
    assert status == 200 and [r["id"] for r in body["results"]] == [p.stem for p in paths]
    payload = endpoint.payloads[-1]
    size = spec.IMAGE_SIZE * spec.IMAGE_SIZE * spec.CHANNELS
    sent = payload[len(payload) - len(paths) * size :]
    for index, path in enumerate(paths):
        reference = spec.preprocess_bytes(path.read_bytes(), draft=False)
        got = sent[index * size : (index + 1) * size]
        mean_abs = sum(abs(a - b) for a, b in zip(got[::7], reference[::7], strict=True)) / len(reference[::7])
        assert mean_abs < spec.DRAFT_MEAN_ABS_TOLERANCE, (path.name, mean_abs)


def test_real_photo_as_raw_body(abid_dir: Path) -> None:
    path = _originals(abid_dir, 1)[0]
    status, _, body = invoke(rest_event("POST", "/v1/count", path.read_bytes(), "image/jpeg"))
    assert status == 200 and body["count"] in (1, 2, 3, 4, 5)
