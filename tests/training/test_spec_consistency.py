"""One JPEG, three paths, one array: prep.py (full decode), inference.input_fn on image/jpeg, and the
Lambda path (preprocess_bytes(draft=True) + encode_npy_uint8 -> input_fn on application/x-npy)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import inference
import numpy as np
import prep
import preprocessing_spec
import pytest
import synthetic_bins


def _three_paths(jpeg: bytes, image_id: str, count: int, tmp_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bucket = tmp_path / "bucket"
    (bucket / "bin-images").mkdir(parents=True)
    (bucket / "metadata").mkdir()
    (bucket / "bin-images" / f"{image_id}.jpg").write_bytes(jpeg)
    (bucket / "metadata" / f"{image_id}.json").write_text(json.dumps({"EXPECTED_QUANTITY": count}))
    prep.prepare(str(bucket), str(tmp_path / "out"), classes=(count, count + 1), workers=1)
    split = next(
        name for name in ("train", "validation", "test") if json.loads((tmp_path / "out" / name / "labels.json").read_text())["ids"]
    )
    prepared = np.load(tmp_path / "out" / split / "images.npy")[0]
    served = inference.input_fn(jpeg, "image/jpeg")[0]
    lambda_body = preprocessing_spec.encode_npy_uint8([preprocessing_spec.preprocess_bytes(jpeg, draft=True)])
    via_lambda = inference.input_fn(lambda_body, "application/x-npy")[0]
    return prepared, served, via_lambda


def _assert_same(prepared: np.ndarray, served: np.ndarray, via_lambda: np.ndarray) -> float:
    assert prepared.shape == served.shape == via_lambda.shape == (224, 224, 3)
    assert np.array_equal(prepared, served), "prep and the endpoint must decode identically"
    difference = float(np.abs(prepared.astype(np.int16) - via_lambda.astype(np.int16)).mean())
    assert difference < preprocessing_spec.DRAFT_MEAN_ABS_TOLERANCE
    return difference


def test_synthetic_photo_at_camera_size(tmp_path: Path) -> None:
    # 1200x900 so that draft mode really decodes at a reduced scale (it needs >= 2x the target).
    buffer = io.BytesIO()
    synthetic_bins.render_bin(seed=4, index=2, count=3).resize((1200, 900)).save(buffer, format="JPEG", quality=92)
    difference = _assert_same(*_three_paths(buffer.getvalue(), "camera", 3, tmp_path))
    assert difference > 0, "draft mode did not engage: the test would not cover the Lambda's decode"


@pytest.mark.abid
def test_real_photos_at_original_resolution(abid_dir: Path, tmp_path: Path) -> None:
    index = (abid_dir / "index.csv").read_text().splitlines()[1:]
    large = [row.split(",") for row in index if int(row.split(",")[2]) >= 448 and int(row.split(",")[3]) >= 448][:3]
    if not large:
        pytest.skip("no original-resolution photo of at least 448x448 in ../shared/abid")
    for image_id, count, *_ in large:
        folder = tmp_path / image_id
        folder.mkdir()
        _assert_same(*_three_paths((abid_dir / "bin-images" / f"{image_id}.jpg").read_bytes(), image_id, int(count), folder))
        shutil.rmtree(folder)
