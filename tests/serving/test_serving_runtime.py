"""The endpoint's CPU serving path (training_code/serving_runtime.py): the fastest available runtime whose
probabilities match eager PyTorch within PROBABILITY_TOLERANCE, checked at load; a mismatch falls back."""

from __future__ import annotations

import models
import pytest
import serving_runtime
import torch


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    # BatchNorm statistics calibrated by two train-mode passes, so eval-mode activations stay in range (as trained).
    torch.manual_seed(0)
    net = models.build_model("mobilenet_v3_small", 5)
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randint(0, 256, (4, 224, 224, 3), dtype=torch.uint8))
    return net.eval()


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    return torch.jit.freeze(torch.jit.trace(model, torch.zeros(1, 224, 224, 3, dtype=torch.uint8), check_trace=False))


def _probabilities(fn, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return fn(batch).float().softmax(dim=1)


def test_onnx_runtime_is_chosen_and_matches_eager(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.delenv(serving_runtime.SERVING_PATH_ENV, raising=False)
    served = serving_runtime.fastest_cpu_path(model, _freeze)
    assert serving_runtime.serving_path(served) == "onnxruntime"
    batch = torch.randint(0, 256, (3, 224, 224, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    difference = (_probabilities(served, batch) - _probabilities(model, batch)).abs().max()
    assert difference <= serving_runtime.PROBABILITY_TOLERANCE


@pytest.mark.parametrize("forced,expected", [("torchscript", "torchscript"), ("eager", "eager"), ("nonsense", None)])
def test_a_path_can_be_forced(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, forced: str, expected: str | None) -> None:
    monkeypatch.setenv(serving_runtime.SERVING_PATH_ENV, forced)
    served = serving_runtime.fastest_cpu_path(model, _freeze)
    if expected is None:  # an unknown value chooses automatically, as with auto
        expected = "onnxruntime" if serving_runtime.serving_path(served) == "onnxruntime" else "torchscript"
    assert serving_runtime.serving_path(served) == expected


def test_a_path_that_differs_from_eager_is_not_served(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(serving_runtime.SERVING_PATH_ENV, raising=False)
    monkeypatch.setattr(serving_runtime, "PROBABILITY_TOLERANCE", -1.0)  # nothing can match: every candidate refused
    assert serving_runtime.fastest_cpu_path(model, _freeze) is model


def test_a_downsampling_model_skips_onnx_and_serves_torchscript(monkeypatch: pytest.MonkeyPatch) -> None:
    # Its antialiased resize has no ONNX export: not even tried (the exporter would print its whole graph).
    monkeypatch.delenv(serving_runtime.SERVING_PATH_ENV, raising=False)
    tried: list[object] = []

    class Recorder(serving_runtime.OnnxRuntimeModel):
        def __init__(self, *args: object) -> None:
            tried.append(args)
            raise RuntimeError("export tried")

    monkeypatch.setattr(serving_runtime, "OnnxRuntimeModel", Recorder)
    model = models.build_model("mobilenet_v3_small", 5, image_size=64).eval()
    assert serving_runtime.serving_path(serving_runtime.fastest_cpu_path(model, _freeze)) == "torchscript"
    assert tried == []
