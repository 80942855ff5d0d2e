"""Fixtures for the verification tests: photo folders built by hand, and the training tests' tiny model."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.training.conftest import prepared, synthetic_bucket, trained  # noqa: F401 - the tiny trained model, reused


def jpeg(seed: int, size: tuple[int, int] = (60, 40)) -> bytes:
    image = Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256))
    image.paste((255 - seed % 256, 20, 200), (5, 5, 5 + seed % 30, 25))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def make_bucket(root: Path, photos: dict[str, bytes], metadata: dict[str, bytes] | None = None) -> Path:
    (root / "bin-images").mkdir(parents=True, exist_ok=True)
    for bin_id, data in photos.items():
        (root / "bin-images" / f"{bin_id}.jpg").write_bytes(data)
    if metadata is not None:
        (root / "metadata").mkdir(exist_ok=True)
        for bin_id, data in metadata.items():
            (root / "metadata" / f"{bin_id}.json").write_bytes(data)
    return root


def write_csv(path: Path, rows: list[list[str]], header: tuple[str, ...] = ("bin_id", "expected_count")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def mixed_bucket(tmp_path: Path) -> tuple[Path, Path]:
    """A bucket-shaped folder and a records CSV with every kind of trouble, and some good rows."""
    photos = {f"b{i:02d}": jpeg(i) for i in range(7)}
    photos["broken"] = b"\xff\xd8\xff\xe0 not really a jpeg"
    photos["empty"] = b""
    photos["notincsv"] = jpeg(99)
    bucket = make_bucket(tmp_path / "bucket", photos)
    records = write_csv(
        tmp_path / "records.csv",
        [
            ["b00", "1"],
            ["b01", "2"],
            ["missing", "3"],  # no photo
            ["broken", "2"],  # undecodable
            ["b02", "2.5"],  # not a whole number
            ["b03", "-1"],  # negative
            ["../etc/passwd", "1"],  # not a photo name
            ["b04", ""],  # empty count
            ["b01", "4"],  # duplicate of row 2
            ["empty", "1"],  # 0-byte photo
            [],  # blank line: not a row
            ["b05", "7"],  # outside the classes: verified as review, not an error
            ["b06", " 3 "],
            ["b00"],  # no count column
        ],
    )
    return bucket, records
