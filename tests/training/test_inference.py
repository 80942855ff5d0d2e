"""model dir -> model.tar.gz -> the SageMaker handler chain (model_fn, input_fn, predict_fn, output_fn), and evaluate.py."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import evaluate
import inference
import numpy as np
import preprocessing_spec
import pytest
import synthetic_bins
from PIL import Image


@pytest.fixture(scope="module")
def served(model_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> inference.LoadedModel:
    """Unpacked the way the inference container does it: the archive into /opt/ml/model, code/ beside."""
    model_dir = tmp_path_factory.mktemp("opt-ml-model")
    with tarfile.open(model_tarball) as archive:
        archive.extractall(model_dir, filter="data")
    assert (model_dir / "code" / "inference.py").is_file()
    return inference.model_fn(str(model_dir))


def _photo(fmt: str, size: tuple[int, int] = (320, 260)) -> bytes:
    buffer = io.BytesIO()
    synthetic_bins.render_bin(seed=9, index=0, count=3).resize(size).save(buffer, format=fmt)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(("content_type", "body"), [("image/jpeg", "JPEG"), ("image/png", "PNG"), ("application/x-npy", "NPY")])
def test_round_trip(served: inference.LoadedModel, content_type: str, body: str) -> None:
    lambda_batch = preprocessing_spec.encode_npy_uint8([preprocessing_spec.preprocess_bytes(_photo("JPEG"))] * 2)
    data = lambda_batch if body == "NPY" else _photo(body)
    array = inference.input_fn(data, content_type)
    assert array.dtype == np.uint8 and array.shape[1:] == (224, 224, 3)
    reply = json.loads(inference.output_fn(inference.predict_fn(array, served), "application/json"))
    assert reply["classes"] == [1, 2, 3, 4, 5] and reply["model_version"] == "test-v1"
    assert len(reply["predictions"]) == array.shape[0]
    for prediction in reply["predictions"]:
        probabilities = prediction["probabilities"]
        assert set(probabilities) == {"1", "2", "3", "4", "5"}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert prediction["count"] == int(max(probabilities, key=probabilities.get))
        assert prediction["confidence"] == max(probabilities.values())


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{}", "application/json", "content type 'application/json' is not supported"),
        (b"not an image", "image/jpeg", "not_an_image"),
        (b"", "image/png", "empty_image"),
        (b"\x93NUMPY garbage", "application/x-npy", "not a readable .npy array"),
        (_npy(np.zeros((1, 224, 224, 3), dtype=np.float32)), "application/x-npy", "dtype is float32, expected uint8"),
        (_npy(np.zeros((224, 224, 3), dtype=np.uint8)), "application/x-npy", "shape is [224, 224, 3], expected [N, 224, 224, 3]"),
        (_npy(np.zeros((1, 128, 128, 3), dtype=np.uint8)), "application/x-npy", "shape is [1, 128, 128, 3]"),
        (_npy(np.zeros((0, 224, 224, 3), dtype=np.uint8)), "application/x-npy", "the batch has 0 images"),
        (_npy(np.array([{"a": 1}], dtype=object)), "application/x-npy", "not a readable .npy array"),
    ],
)
def test_bad_input_is_named(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        inference.input_fn(body, content_type)


def test_content_type_parameters_and_accept(served: inference.LoadedModel) -> None:
    array = inference.input_fn(_photo("JPEG"), "image/jpeg; charset=binary")
    prediction = inference.predict_fn(array, served)
    assert json.loads(inference.output_fn(prediction, "*/*"))["predictions"]
    with pytest.raises(ValueError, match="accept type 'text/csv' is not supported"):
        inference.output_fn(prediction, "text/csv")


def test_model_fn_names_a_wrong_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_meta.json is missing"):
        inference.model_fn(str(tmp_path))


def test_evaluate_step_reproduces_trainings_report(model_tarball: Path, trained: Path, prepared: Path, tmp_path: Path) -> None:
    assert evaluate.main(["--model", str(model_tarball), "--test", str(prepared / "test"), "--output", str(tmp_path)]) == 0
    ours = json.loads((tmp_path / "evaluation.json").read_text())
    training = json.loads((trained / "output" / "evaluation.json").read_text())
    # Same model, split and maths (scoring.py, engine.py); only the float sum order differs with batch size.
    assert ours.pop("rmse_expected") == pytest.approx(training.pop("rmse_expected"), rel=1e-5)
    assert ours == training
    assert (tmp_path / "curves.png").is_file() and (tmp_path / "confusion_matrix.png").is_file()


def test_evaluate_names_bad_inputs(model_tarball: Path, tmp_path: Path, capsys) -> None:
    assert evaluate.main(["--model", str(tmp_path / "nothing.tar.gz"), "--test", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "neither a model dir nor a readable model.tar.gz" in capsys.readouterr().err
    assert evaluate.main(["--model", str(model_tarball), "--test", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "images.npy is missing" in capsys.readouterr().err


def test_a_larger_photo_is_stretched_not_cropped() -> None:
    photo = Image.new("RGB", (400, 200), (0, 0, 0))
    photo.paste((255, 0, 0), (380, 0, 400, 200))  # a red strip at the right edge must survive
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    array = inference.input_fn(buffer.getvalue(), "image/png")
    assert array[0, :, -3:, 0].mean() > 200


def test_cpu_serving_uses_frozen_torchscript_with_the_eager_outputs(trained: Path, monkeypatch) -> None:
    import torch

    frozen = inference.load_model(trained / "model")
    monkeypatch.setenv(inference.TORCHSCRIPT_ENV, "0")
    eager = inference.load_model(trained / "model")
    assert isinstance(frozen.model, torch.jit.ScriptModule) and not isinstance(eager.model, torch.jit.ScriptModule)
    batch = np.random.default_rng(0).integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)  # batch size differs from the trace's 1
    got, want = inference.predict_fn(batch, frozen), inference.predict_fn(batch, eager)
    for a, b in zip(got["predictions"], want["predictions"], strict=True):
        assert a["count"] == b["count"]
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-4
