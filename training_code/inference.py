"""SageMaker PyTorch inference handlers (model_fn, input_fn, predict_fn, output_fn); also used locally.

Request: `application/x-npy` uint8 [N, 224, 224, 3] (what the Lambda sends), or one `image/jpeg` /
`image/png`, preprocessed here by the same spec. Reply `application/json` (docs/contracts.md). Bad input
raises ValueError naming the problem; the container turns it into an error response.
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import models
import numpy as np
import preprocessing_spec
import serving_runtime
import torch
import verification

JSON = "application/json"
NPY = "application/x-npy"
IMAGE_TYPES = ("image/jpeg", "image/png")
MAX_BATCH = 64  # 64 x 150 KB = 9.6 MB, above the 6 MB real-time payload limit: never reached through AWS
SHAPE = preprocessing_spec.SHAPE
# Frozen TorchScript serves 1.1-2x faster than eager on CPU with the same outputs (docs/benchmarks.md,
# model latency); INVMON_TORCHSCRIPT=0 serves the eager model.
TORCHSCRIPT_ENV = "INVMON_TORCHSCRIPT"
# Which views a model with test-time flips serves (verification.py: the bulk path's contract, stdlib only).
VIEWS_ENV, VIEWS = verification.VIEWS_ENV, verification.VIEWS

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    classes: list[int]
    model_version: str
    device: torch.device
    meta: dict[str, Any]
    views: str = "served"  # VIEWS: what this process serves (model_fn reads VIEWS_ENV)


def load_model(model_dir: str | Path, device: torch.device | None = None, views: str = "served") -> LoadedModel:
    """The served model of a train.py model dir on `device`; `views` (VIEWS) picks the stored test-time flips or
    the photo alone, each with its calibration temperature."""
    if views not in VIEWS:
        raise ValueError(f"views {views!r} is not supported: choose one of {', '.join(VIEWS)} ({VIEWS_ENV})")
    model_dir = Path(model_dir)
    model, meta = read_model_dir(model_dir)
    model.tta, temperature = served_views(meta, model_dir / "model_meta.json", views)  # tta: a plain attribute
    model.set_temperature(temperature)  # calibrated probabilities (calibration.py)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    if device.type == "cpu" and os.environ.get(TORCHSCRIPT_ENV, "1") != "0":
        # ONNX Runtime when installed, else frozen TorchScript, each only if it matches eager (serving_runtime.py).
        model = serving_runtime.fastest_cpu_path(model, freeze_for_cpu)
    return LoadedModel(model, [int(c) for c in meta["classes"]], str(meta.get("model_version", "")), device, meta, views)


def read_model_dir(model_dir: Path) -> tuple[models.CountingModel, dict[str, Any]]:
    """(the eager model rebuilt from model_meta.json with model.pth's weights, at T = 1 on the CPU; the meta)."""
    meta_path, weights_path = model_dir / "model_meta.json", model_dir / "model.pth"
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise ValueError(f"{path} is missing: the model dir must come from train.py (model.pth + model_meta.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("spec_version") != preprocessing_spec.SPEC_VERSION:
        raise ValueError(
            f"the model was trained with preprocessing spec {meta.get('spec_version')!r}, this code uses {preprocessing_spec.SPEC_VERSION!r}"
        )
    model = models.build_model(
        meta["architecture"],
        len(meta["classes"]),
        meta.get("head", "linear"),
        int(meta.get("image_size", preprocessing_spec.IMAGE_SIZE)),
        tta=meta.get("tta", "none"),  # test-time flips are part of the served model (models.CountingModel)
    )
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return model, meta


def served_views(meta: dict[str, Any], meta_path: Path, views: str) -> tuple[str, float]:
    """(tta, temperature) to serve: the stored flips with their temperature, or one view with its own."""
    tta, temperature = meta.get("tta", "none"), float(meta.get("temperature", 1.0))
    if views == "served" or tta == "none":
        return tta, temperature
    if "single_view_temperature" not in meta:
        raise ValueError(
            f"{meta_path} has no single_view_temperature, so its {tta} model cannot serve one view calibrated: "
            f"fit it with `python calibrate.py --model DIR --validation SPLIT`, or serve views 'served'"
        )
    return "none", float(meta["single_view_temperature"])


def freeze_for_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """Trace + freeze the model for CPU serving; inputs are always uint8 [N, 224, 224, 3] (input_fn checks)."""
    example = torch.zeros(1, *SHAPE, dtype=torch.uint8)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch >= 2.10 marks TorchScript deprecated; it is still what serves fastest here, and any failure falls back to eager.
            warnings.simplefilter("ignore", DeprecationWarning)
            # The model's resize branch depends only on the input size, which input_fn fixes at 224.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
    except Exception as error:  # an architecture TorchScript cannot trace still serves, eagerly
        logger.warning("serving the eager model: TorchScript tracing failed (%s)", error)
        return model


def model_fn(model_dir: str, context: Any = None) -> LoadedModel:
    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    return load_model(model_dir, views=os.environ.get(VIEWS_ENV, "served"))


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def input_fn(request_body: bytes | bytearray | str, request_content_type: str) -> np.ndarray:
    """-> uint8 [N, 224, 224, 3]."""
    media = _media_type(request_content_type)
    body = request_body.encode("latin1") if isinstance(request_body, str) else bytes(request_body)
    if media == NPY:
        return _read_npy(body)
    if media in IMAGE_TYPES:
        try:
            raw = preprocessing_spec.preprocess_bytes(body)
        except preprocessing_spec.ImageError as error:
            raise ValueError(f"{error.code}: {error.message}") from None
        return np.frombuffer(raw, dtype=np.uint8).reshape(1, *SHAPE)
    raise ValueError(f"content type {request_content_type!r} is not supported: send {NPY} (uint8 [N,224,224,3]), image/jpeg or image/png")


def _read_npy(body: bytes) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as error:  # numpy raises ValueError/OSError/EOFError variously for bad bytes
        raise ValueError(f"the {NPY} body is not a readable .npy array ({error}): encode it with numpy.save") from None
    if array.dtype != np.uint8:
        raise ValueError(f"the array's dtype is {array.dtype}, expected uint8 (0..255 pixels; normalisation happens in the model)")
    if array.ndim != 4 or array.shape[1:] != SHAPE:
        raise ValueError(f"the array's shape is {list(array.shape)}, expected [N, 224, 224, 3] (preprocess each photo with the spec)")
    if not 1 <= array.shape[0] <= MAX_BATCH:
        raise ValueError(f"the batch has {array.shape[0]} images, expected 1 to {MAX_BATCH}")
    return array


@torch.no_grad()
def predict_fn(input_data: np.ndarray, model: LoadedModel) -> dict[str, Any]:
    images = torch.tensor(input_data, dtype=torch.uint8, device=model.device)  # a copy: input_fn's array is read-only
    probabilities = model.model(images).float().softmax(dim=1).cpu().numpy()
    predictions = []
    for row in probabilities:
        best = int(row.argmax())
        predictions.append(
            {
                "count": model.classes[best],
                "confidence": round(float(row[best]), 6),
                "probabilities": {str(c): round(float(p), 6) for c, p in zip(model.classes, row, strict=True)},
            }
        )
    return {"predictions": predictions, "model_version": model.model_version, "classes": model.classes}


def output_fn(prediction: dict[str, Any], accept: str | None = JSON) -> str:
    media = _media_type(accept)
    if media not in ("", "*/*", JSON, "application/*"):
        raise ValueError(f"accept type {accept!r} is not supported: the reply is {JSON}")
    return json.dumps(prediction)
