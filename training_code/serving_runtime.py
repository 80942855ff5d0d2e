"""Which runtime serves the model on CPU: the fastest path whose outputs match eager PyTorch.

Measured per architecture (docs/benchmarks.md section 3, bench/model_latency.py): ONNX Runtime is the
fastest for every architecture (batch-1 CPU time 1.6-3.2x lower than eager), frozen TorchScript second.
So, on CPU, inference.load_model asks `fastest_cpu_path` for:
1. ONNX Runtime, when `onnxruntime` is importable: the model is exported (TorchScript-based exporter,
   opset 18, dynamic batch) to a temporary file at load time and kept only if its probabilities on a
   check batch match eager's within PROBABILITY_TOLERANCE;
2. otherwise frozen TorchScript (the caller's `freeze`), checked the same way;
3. otherwise the eager model.
INVMON_SERVING_PATH=onnxruntime|torchscript|eager forces a path (still checked; a failed check falls
back to the next). Every step logs what it chose, and `serving_path(model)` names it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

SERVING_PATH_ENV = "INVMON_SERVING_PATH"
PATHS = ("onnxruntime", "torchscript", "eager")
# tests/training/test_inference.py holds the served probabilities to the same tolerance against eager.
PROBABILITY_TOLERANCE = 1e-4
IMAGE_SHAPE = (224, 224, 3)

logger = logging.getLogger(__name__)


class OnnxRuntimeModel:
    """An ONNX Runtime session that is called like the model: uint8 [N, 224, 224, 3] tensor -> logits tensor."""

    serving_path = "onnxruntime"

    def __init__(self, model: torch.nn.Module, threads: int) -> None:
        import onnxruntime as ort

        example = torch.zeros(1, *IMAGE_SHAPE, dtype=torch.uint8)
        with tempfile.TemporaryDirectory(prefix="invmon-onnx-") as folder:  # the model dir may be read-only
            path = Path(folder) / "model.onnx"
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter warns about the model's constant size check
                torch.onnx.export(
                    model,
                    (example,),
                    str(path),
                    dynamo=False,
                    opset_version=18,
                    input_names=["images"],
                    output_names=["logits"],
                    dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                )
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"images": images.cpu().numpy()})[0])


def _matches_eager(candidate: Callable[[torch.Tensor], torch.Tensor], model: torch.nn.Module) -> float:
    """Max absolute difference of the probabilities on a fixed check batch of 2."""
    batch = torch.randint(0, 256, (2, *IMAGE_SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(batch).float().softmax(dim=1)
        got = candidate(batch).float().softmax(dim=1)
    return float((expected - got).abs().max())


def serving_path(model: object) -> str:
    if isinstance(model, OnnxRuntimeModel):
        return "onnxruntime"
    return "torchscript" if isinstance(model, torch.jit.ScriptModule) else "eager"


def fastest_cpu_path(model: torch.nn.Module, freeze: Callable[[torch.nn.Module], torch.nn.Module]) -> Callable[..., torch.Tensor]:
    """The fastest available path for `model` (eval mode, on CPU) whose probabilities match eager's."""
    wanted = os.environ.get(SERVING_PATH_ENV, "auto").strip().lower()
    order = PATHS if wanted in ("", "auto") else PATHS[PATHS.index(wanted) :] if wanted in PATHS else PATHS
    if wanted not in ("", "auto", *PATHS):
        logger.warning("%s=%r is not one of auto, %s: choosing automatically", SERVING_PATH_ENV, wanted, ", ".join(PATHS))
    for path in order:
        if path == "eager":
            break
        if path == "onnxruntime" and getattr(model, "image_size", IMAGE_SHAPE[0]) != IMAGE_SHAPE[0]:
            # Its antialiased downsampling (aten::_upsample_bilinear2d_aa) has no ONNX export: skip the failing try.
            logger.info("serving path onnxruntime: skipped (the model downsamples to %s px)", model.image_size)
            continue
        try:
            candidate = OnnxRuntimeModel(model, torch.get_num_threads()) if path == "onnxruntime" else freeze(model)
        except ImportError:
            logger.info("serving path %s: not installed", path)
            continue
        except Exception as error:  # an architecture a path cannot export still serves by the next one
            logger.warning("serving path %s failed (%s): trying the next", path, error)
            continue
        if path == "torchscript" and not isinstance(candidate, torch.jit.ScriptModule):
            continue  # freeze fell back to eager itself
        difference = _matches_eager(candidate, model)
        if difference <= PROBABILITY_TOLERANCE:
            logger.info("serving path: %s (probabilities within %.1e of eager)", path, difference)
            return candidate
        logger.warning("serving path %s differs from eager by %.2e (> %.0e): not used", path, difference, PROBABILITY_TOLERANCE)
    logger.info("serving path: eager")
    return model
