"""inference.py's views ("served" / "one") and calibrate.py's errors, on a real tiny train.py model (eager, CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import calibrate
import inference
import numpy as np
import pytest


def flip_model(trained: Path, target: Path, **fields: object) -> Path:
    """The trained model dir as a flip4 model with the given model_meta.json fields changed (None removes one)."""
    shutil.copytree(trained / "model", target)
    meta = json.loads((target / "model_meta.json").read_text()) | {"tta": "flip4"}
    for name, value in fields.items():
        meta.pop(name, None) if value is None else meta.__setitem__(name, value)
    (target / "model_meta.json").write_text(json.dumps(meta))
    return target


def test_a_flip_model_without_a_single_view_temperature_says_how_to_get_one(trained: Path, tmp_path: Path) -> None:
    model = flip_model(trained, tmp_path / "old", single_view_temperature=None)
    with pytest.raises(ValueError, match=r"model_meta.json has no single_view_temperature.*calibrate.py"):
        inference.load_model(model, views="one")
    assert inference.load_model(model).views == "served"  # as trained still serves


def test_views_come_from_the_environment_and_bad_values_are_named(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(inference.VIEWS_ENV, "two")
    with pytest.raises(ValueError, match=r"views 'two' is not supported: choose one of served, one \(INVMON_VIEWS\)"):
        inference.model_fn(str(trained / "model"))
    monkeypatch.setenv(inference.VIEWS_ENV, "one")
    loaded = inference.model_fn(str(trained / "model"))  # a one-view model serves one view either way
    batch = np.random.default_rng(2).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    monkeypatch.delenv(inference.VIEWS_ENV)
    assert inference.predict_fn(batch, loaded) == inference.predict_fn(batch, inference.model_fn(str(trained / "model")))


def test_one_view_of_a_flip_model_uses_its_own_temperature(trained: Path, tmp_path: Path) -> None:
    flips = flip_model(trained, tmp_path / "flips", temperature=3.0, single_view_temperature=0.5)
    plain = flip_model(trained, tmp_path / "plain", tta="none", temperature=0.5)  # the same net, one view at T = 0.5
    batch = np.random.default_rng(3).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    one = inference.predict_fn(batch, inference.load_model(flips, views="one"))["predictions"]
    assert one == inference.predict_fn(batch, inference.load_model(plain))["predictions"]
    assert one != inference.predict_fn(batch, inference.load_model(flips))["predictions"]


def test_calibrate_names_a_bad_split(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = flip_model(trained, tmp_path / "m")
    assert calibrate.main(["--model", str(model), "--validation", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert calibrate.main(["--model", str(tmp_path / "absent"), "--validation", str(tmp_path)]) == 2
    assert "model_meta.json is missing" in capsys.readouterr().err
