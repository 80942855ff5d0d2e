"""Issue 12: packaged ImageNet weights, weight conversion, counting loss, keep-best, calibration, test-time flips."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import calibrate
import calibration
import convert_weights
import dataset
import engine
import evaluate
import inference
import models
import numpy as np
import pytest
import torch
import train
from moto import mock_aws

from tests.training.conftest import ROOT, TINY, channel_args, subprocess_env

# --- packaged ImageNet weights ------------------------------------------------------------------------


def test_packaged_weights_load_into_efficientnet_lite0_and_change_its_output() -> None:
    packaged = torch.load(models.packaged_weights_path(), map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    scratch = models.build_model("efficientnet_lite0", 5, image_size=64).eval()
    torch.manual_seed(0)  # same seed: only the loaded weights can make the two differ
    imagenet = models.build_model("efficientnet_lite0", 5, image_size=64, pretrained_weights="imagenet").eval()
    backbone = [k for k in packaged if not k.startswith("_fc.")]
    assert len(backbone) > 100
    assert all(torch.equal(imagenet.net.state_dict()[k], packaged[k]) for k in backbone)
    assert not torch.equal(scratch.net.state_dict()["_conv_stem.weight"], packaged["_conv_stem.weight"])
    images = torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (scratch(images) - imagenet(images)).abs().max() > 1e-3
    assert imagenet.net._fc.out_features == 5  # the ImageNet classifier is replaced


def test_imagenet_weights_are_only_packaged_for_efficientnet_lite0() -> None:
    with pytest.raises(ValueError, match="only packaged for efficientnet_lite0.*convert_weights.py"):
        models.build_backbone("resnet18", 5, pretrained_weights="imagenet")


def test_a_wrong_weights_file_is_named_with_what_is_expected(tmp_path: Path) -> None:
    resnet = tmp_path / "resnet18.pth"
    torch.save(models.import_torchvision().models.resnet18(weights=None).state_dict(), resnet)
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(resnet))} matches only 0 of .* efficientnet_lite0 \(expected names such as _conv_stem"
    ):
        models.build_model("efficientnet_lite0", 5, pretrained_weights=resnet)
    not_tensors = tmp_path / "numbers.pth"
    torch.save({"epoch": 3}, not_tensors)
    with pytest.raises(ValueError, match=rf"{re.escape(str(not_tensors))} holds a dict, not a state_dict of tensors"):
        models.build_model("efficientnet_lite0", 5, pretrained_weights=not_tensors)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(ValueError, match=rf"{re.escape(str(text))} is not a loadable state_dict"):
        models.build_model("resnet18", 5, pretrained_weights=text)


# --- convert_weights.py -------------------------------------------------------------------------------


def _resnet18_file(tmp_path: Path, wrap: str | None = None) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    state = models.import_torchvision().models.resnet18(weights=None).state_dict()
    saved = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 90} if wrap else state
    path = tmp_path / "downloaded-resnet18.pth"
    torch.save(saved, path)
    return path, state


@pytest.mark.parametrize("wrap", [None, "checkpoint"])
def test_convert_weights_writes_what_the_pretrained_channel_loads(tmp_path: Path, wrap: str | None, capsys) -> None:
    source, state = _resnet18_file(tmp_path, wrap)
    channel = tmp_path / "channel"
    assert convert_weights.main(["--architecture", "resnet18", "--source", str(source), "--output", str(channel)]) == 0
    assert f"wrote {channel / 'resnet18.pth'}" in capsys.readouterr().out
    written = torch.load(channel / "resnet18.pth", map_location="cpu", weights_only=True)
    assert set(written) == set(state) and all(torch.equal(written[k], state[k]) for k in state)
    # train.py's pretrained channel picks <model>.pth and the backbone starts from it.
    args = argparse.Namespace(pretrained_weights=None, pretrained=str(channel), model="resnet18")
    assert train.pretrained_path(args) == str(channel / "resnet18.pth")
    net = models.build_backbone("resnet18", 5, pretrained_weights=train.pretrained_path(args))
    assert torch.equal(net.conv1.weight, state["conv1.weight"]) and net.fc.out_features == 5


def test_convert_weights_uploads_under_an_s3_prefix(tmp_path: Path, monkeypatch, capsys) -> None:
    """Against moto's in-memory S3 (no AWS): the object lands at <prefix>/<architecture>.pth."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    source, state = _resnet18_file(tmp_path)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="weights-bucket")
        argv = ["--architecture", "resnet18", "--source", str(source), "--output", "s3://weights-bucket/imagenet/resnet18/"]
        assert convert_weights.main(argv) == 0
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="weights-bucket")["Contents"]]
        assert keys == ["imagenet/resnet18/resnet18.pth"]
        s3.download_file("weights-bucket", keys[0], str(tmp_path / "back.pth"))
    assert "use s3://weights-bucket/imagenet/resnet18/ as the pipeline's pretrained weights prefix" in capsys.readouterr().out
    back = torch.load(tmp_path / "back.pth", map_location="cpu", weights_only=True)
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize(
    ("architecture", "source", "message"),
    [
        ("mobilenet_v3_small", "FILE", r"--source .*downloaded-resnet18.pth does not fit mobilenet_v3_small: of its \d+ backbone tensors"),
        ("resnet34", "FILE", r"does not fit resnet34: .*missing, e.g. layer1.2.conv1.weight.*Expected a torchvision resnet34 state_dict"),
        ("resnet18", "MISSING", r"--source .*nothing.pth does not exist"),
        ("vgg16", "FILE", r"--architecture 'vgg16' is not supported"),
        ("efficientnet_lite0", "torchvision", r"no weights for efficientnet_lite0.*ship with its package"),
    ],
)
def test_convert_weights_names_bad_input(tmp_path: Path, architecture: str, source: str, message: str, capsys) -> None:
    path, _ = _resnet18_file(tmp_path)
    source = {"FILE": str(path), "MISSING": str(tmp_path / "nothing.pth")}.get(source, source)
    assert convert_weights.main(["--architecture", architecture, "--source", source, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


# --- training: counting loss and keep-best --------------------------------------------------------------


def test_count_loss_adds_the_squared_error_of_the_expected_class() -> None:
    args = argparse.Namespace(label_smoothing=0.0, count_loss_weight=0.5)
    targets = torch.tensor([0, 0])
    # Same probability on the true class (so the same cross-entropy), the rest near (class 1) or far (class 4).
    near = torch.log(torch.tensor([[0.4, 0.6, 1e-9, 1e-9, 1e-9]] * 2))
    far = torch.log(torch.tensor([[0.4, 1e-9, 1e-9, 1e-9, 0.6]] * 2))
    ce = torch.nn.functional.cross_entropy(near, targets)
    assert torch.nn.functional.cross_entropy(far, targets) == pytest.approx(ce.item(), rel=1e-6)
    # expected class index: 0.6 (near) and 2.4 (far); squared errors 0.36 and 5.76
    assert train.training_loss(near, targets, args).item() == pytest.approx(ce.item() + 0.5 * 0.36, rel=1e-5)
    assert train.training_loss(far, targets, args).item() == pytest.approx(ce.item() + 0.5 * 5.76, rel=1e-5)
    args.count_loss_weight = 0.0
    assert train.training_loss(far, targets, args).item() == pytest.approx(ce.item(), rel=1e-6)


def test_keep_best_exports_the_best_validation_epoch_and_survives_resume(prepared: Path, tmp_path: Path) -> None:
    common = [*TINY, "--epochs", "4", "--seed", "11", "--lr", "0.02", "--keep", "best"]
    straight = tmp_path / "straight"
    assert train.main([*channel_args(prepared, straight), *common]) == 0
    meta = json.loads((straight / "model" / "model_meta.json").read_text())
    history = meta["history"]
    best = max(history, key=lambda h: (h["validation:accuracy"], -h["validation:loss"]))
    assert meta["kept_epoch"] == best["epoch"] == json.loads((straight / "output" / "evaluation.json").read_text())["kept_epoch"]
    # The exported weights are that epoch's: re-scoring them on validation gives its recorded accuracy and loss.
    net = models.build_model("mobilenet_v3_small", 5, image_size=32)
    net.load_state_dict(torch.load(straight / "model" / "model.pth", map_location="cpu", weights_only=True))
    split = dataset.load_split(prepared / "validation", [1, 2, 3, 4, 5])
    matrix, loss, _ = engine.evaluate(net, split, 8, torch.device("cpu"))
    assert np.trace(matrix) / matrix.sum() == pytest.approx(best["validation:accuracy"])
    assert loss == pytest.approx(best["validation:loss"], rel=1e-4)
    # --keep last exports epoch 4 of the same run.
    last = tmp_path / "last"
    assert train.main([*channel_args(prepared, last), *common[:-1], "last"]) == 0
    assert json.loads((last / "model" / "model_meta.json").read_text())["kept_epoch"] == 4

    # Interrupted after epochs 1 and 3, then finished: the same best epoch and weights (carried in checkpoints).
    work = tmp_path / "resumed"
    assert train.main([*channel_args(prepared, work), *common, "--stop-after-epochs", "1"]) == 0
    assert train.main([*channel_args(prepared, work), *common, "--stop-after-epochs", "2"]) == 0
    assert train.main([*channel_args(prepared, work), *common]) == 0
    assert json.loads((work / "model" / "model_meta.json").read_text())["kept_epoch"] == meta["kept_epoch"]
    a = torch.load(straight / "model" / "model.pth", weights_only=True)
    b = torch.load(work / "model" / "model.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- calibration maths --------------------------------------------------------------------------------


def _sample_labels(probabilities: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.multinomial(probabilities, 1, generator=torch.Generator().manual_seed(seed)).squeeze(1)


def test_fit_temperature_recovers_a_known_temperature() -> None:
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20000, 5, generator=generator) * 1.5
    targets = _sample_labels(true_logits.softmax(dim=1), 1)
    # A model twice as confident as the truth: its logits are the true ones x 2, so T = 2 calibrates it.
    assert calibration.fit_temperature(true_logits * 2.0, targets) == pytest.approx(2.0, rel=0.05)
    assert calibration.fit_temperature(true_logits * 0.5, targets) == pytest.approx(0.5, rel=0.05)
    assert calibration.fit_temperature(true_logits[:0], targets[:0]) == 1.0


def test_fit_temperature_on_views_fits_the_flip_averaged_probabilities() -> None:
    generator = torch.Generator().manual_seed(2)
    views = torch.randn(1, 20000, 5, generator=generator) * 1.5 + torch.randn(4, 20000, 5, generator=generator) * 0.7
    truth = views.softmax(dim=-1).mean(dim=0)  # labels drawn from the mean of the views' probabilities
    targets = _sample_labels(truth, 3)
    assert calibration.fit_temperature(views * 1.7, targets) == pytest.approx(1.7, rel=0.05)
    with pytest.raises(ValueError, match="do not match 3 targets"):
        calibration.fit_temperature(views, targets[:3])


def test_ece_is_near_zero_when_calibrated_and_large_when_over_confident() -> None:
    rng = np.random.default_rng(0)
    n = 50000
    confidence = rng.uniform(0.5, 1.0, n)
    correct = rng.uniform(size=n) < confidence  # right exactly as often as it claims
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    targets = np.where(correct, 0, 1)
    assert calibration.expected_calibration_error(probabilities, targets) < 0.01
    sharpened = np.stack([np.full(n, 0.99), np.full(n, 0.01)], axis=1)  # claims 99 %, right ~75 %
    assert calibration.expected_calibration_error(sharpened, targets) == pytest.approx(0.99 - correct.mean(), abs=1e-9)
    bins = calibration.reliability_bins(probabilities, targets)
    assert sum(b["n"] for b in bins) == n and all(abs(b["accuracy"] - b["confidence"]) < 0.02 for b in bins if b["n"] > 1000)


def test_accuracy_at_coverage_takes_the_most_confident_share() -> None:
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    targets = np.array([0, 1, 1, 0])  # right, wrong, right, wrong in that order of rows
    # confidence order: 0.9 (right), 0.8 (wrong), 0.7 (right), 0.55 (wrong)
    assert calibration.accuracy_at_coverage(probabilities, targets, 0.5) == 0.5
    assert calibration.accuracy_at_coverage(probabilities, targets, 0.25) == 1.0
    assert calibration.accuracy_at_coverage(probabilities, targets, 0.75) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="do not match"):
        calibration.accuracy_at_coverage(probabilities, targets[:2], 0.5)


# --- served probabilities: stored temperature and test-time flips ---------------------------------------


def _copy_model(trained: Path, into: Path, **meta_changes: object) -> Path:
    shutil.copytree(trained / "model", into)
    meta = json.loads((into / "model_meta.json").read_text())
    meta.update(meta_changes)
    (into / "model_meta.json").write_text(json.dumps(meta))
    return into


def test_served_probabilities_sum_to_one_and_use_the_stored_temperature(trained: Path, tmp_path: Path) -> None:
    batch = np.random.default_rng(4).integers(0, 256, size=(4, 224, 224, 3), dtype=np.uint8)
    replies = {}
    for temperature in (1.0, 3.0):
        loaded = inference.model_fn(str(_copy_model(trained, tmp_path / f"t{temperature}", temperature=temperature)))
        replies[temperature] = inference.predict_fn(batch, loaded)["predictions"]
    # Independently: the eager network's raw logits divided by T.
    net = models.build_model("mobilenet_v3_small", 5, image_size=32).eval()
    net.load_state_dict(torch.load(trained / "model" / "model.pth", weights_only=True))
    with torch.no_grad():
        raw = net(torch.from_numpy(batch))
    for temperature, predictions in replies.items():
        expected = (raw / temperature).softmax(dim=1).numpy()
        for prediction, row in zip(predictions, expected, strict=True):
            probabilities = np.array([prediction["probabilities"][str(c)] for c in (1, 2, 3, 4, 5)])
            assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
            assert np.abs(probabilities - row).max() < 1e-4
    for cold, hot in zip(replies[1.0], replies[3.0], strict=True):
        assert cold["count"] == hot["count"] and hot["confidence"] < cold["confidence"]


def _flip_average(net: models.CountingModel, images: torch.Tensor) -> torch.Tensor:
    views = (images, images.flip(1), images.flip(2), images.flip(1).flip(2))  # NHWC: vertical, horizontal, both
    return sum(net(v).softmax(dim=1) for v in views) / 4


def test_flip4_outputs_the_mean_of_the_flipped_views_calibrated_probabilities() -> None:
    torch.manual_seed(5)
    single = models.build_model("mobilenet_v3_small", 5, image_size=64).eval()
    flips = models.build_model("mobilenet_v3_small", 5, image_size=64, tta="flip4").eval()
    flips.load_state_dict(single.state_dict())
    for model in (single, flips):
        model.set_temperature(1.8)
    images = torch.randint(0, 256, (3, 224, 224, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        got = flips(images)
        assert got.shape == (3, 5)
        assert (got.softmax(dim=1) - _flip_average(single, images)).abs().max() < 1e-5
        assert (got.exp().sum(dim=1) - 1).abs().max() < 1e-5  # already log-probabilities
        assert flips.view_logits(images).shape == (4, 3, 5)
        frozen = inference.freeze_for_cpu(flips)  # traced at batch 1, used at batch 3
        assert isinstance(frozen, torch.jit.ScriptModule) and (frozen(images).softmax(1) - got.softmax(1)).abs().max() < 1e-4
    flips.train()  # training always sees one view
    assert flips.view_logits(images.float()).shape == (1, 3, 5)
    with pytest.raises(ValueError, match="tta 'flip8' is not supported"):
        models.build_model("resnet18", 5, tta="flip8")


def test_training_with_flip4_serves_and_evaluates_flip_averaged_probabilities(prepared: Path, tmp_path: Path) -> None:
    assert train.main([*channel_args(prepared, tmp_path), *TINY, "--epochs", "1", "--tta", "flip4", "--model-version", "tta"]) == 0
    meta = json.loads((tmp_path / "model" / "model_meta.json").read_text())
    training_report = json.loads((tmp_path / "output" / "evaluation.json").read_text())
    assert meta["tta"] == training_report["tta"] == "flip4"
    # The stored temperature is the fit on the served path: the validation split's per-view logits at T = 1.
    net = models.build_model("mobilenet_v3_small", 5, image_size=32, tta="flip4")
    net.load_state_dict(torch.load(tmp_path / "model" / "model.pth", weights_only=True))
    validation = dataset.load_split(prepared / "validation", [1, 2, 3, 4, 5])
    views = engine.predict_logits(net, validation, 8, torch.device("cpu"), views=True)
    assert views.shape == (4, len(validation), 5)
    assert meta["temperature"] == pytest.approx(calibration.fit_temperature(views, torch.from_numpy(validation.targets)), rel=1e-3)
    # Served probabilities are the flip average of softmax(logits / T).
    net.set_temperature(meta["temperature"])
    single = models.build_model("mobilenet_v3_small", 5, image_size=32).eval()
    single.load_state_dict(net.state_dict())
    single.set_temperature(meta["temperature"])
    batch = np.random.default_rng(8).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    served = inference.predict_fn(batch, inference.load_model(tmp_path / "model"))["predictions"]
    with torch.no_grad():
        expected = _flip_average(single, torch.from_numpy(batch)).numpy()
    for prediction, row in zip(served, expected, strict=True):
        assert max(abs(prediction["probabilities"][str(c)] - row[i]) for i, c in enumerate((1, 2, 3, 4, 5))) < 1e-4
    # The Evaluate step scores the same served model: same figures and calibration as training's report.
    assert evaluate.main(["--model", str(tmp_path / "model"), "--test", str(prepared / "test"), "--output", str(tmp_path / "eval")]) == 0
    ours = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert ours["confusion_matrix"] == training_report["confusion_matrix"] and ours["tta"] == "flip4"
    assert ours["calibration"]["temperature"] == meta["temperature"]
    assert ours["calibration"]["ece"] == pytest.approx(training_report["calibration"]["ece"], abs=1e-4)
    # One view (bulk verification): the photo alone at its own temperature, fitted on view 0 (the photo as it is).
    targets = torch.from_numpy(validation.targets)
    assert meta["single_view_temperature"] == pytest.approx(calibration.fit_temperature(views[0], targets), rel=1e-3)
    single.set_temperature(meta["single_view_temperature"])
    one_view = inference.load_model(tmp_path / "model", views="one")
    assert one_view.views == "one"
    with torch.no_grad():
        expected = single(torch.from_numpy(batch)).softmax(dim=1).numpy()
    for prediction, row in zip(inference.predict_fn(batch, one_view)["predictions"], expected, strict=True):
        assert max(abs(prediction["probabilities"][str(c)] - row[i]) for i, c in enumerate((1, 2, 3, 4, 5))) < 1e-4
    # calibrate.py refits both on the same split to the same numbers, and says where.
    refit = tmp_path / "refit"
    shutil.copytree(tmp_path / "model", refit)
    refit_meta = calibrate.calibrate(refit, prepared / "validation")
    assert refit_meta["temperature"] == pytest.approx(meta["temperature"], rel=1e-3)
    assert refit_meta["single_view_temperature"] == pytest.approx(meta["single_view_temperature"], rel=1e-3)
    assert json.loads((refit / "model_meta.json").read_text())["calibrated_on"]["photos"] == len(validation)


def test_evaluate_reports_calibration_and_a_reliability_diagram(trained: Path, prepared: Path, tmp_path: Path) -> None:
    model = _copy_model(trained, tmp_path / "model", temperature=2.5)
    assert evaluate.main(["--model", str(model), "--test", str(prepared / "test"), "--output", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    block = report["calibration"]
    assert block["temperature"] == 2.5 and 0.0 <= block["ece"] <= 1.0
    assert {"accuracy_most_confident_50", "accuracy_most_confident_75", "reliability", "ece_bins"} <= set(block)
    assert sum(b["n"] for b in block["reliability"]) == report["n"]
    assert (tmp_path / "eval" / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- serving requirements -----------------------------------------------------------------------------


def test_model_dir_requirements_install_the_pinned_package_only_when_needed(tmp_path: Path) -> None:
    pins = dict(
        line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line and not line.startswith("#")
    )
    meta = {"architecture": "efficientnet_lite0"}
    train.save_model_dir(tmp_path / "lite", models.build_model("efficientnet_lite0", 5, image_size=64), meta)
    lines = [x for x in (tmp_path / "lite" / "code" / "requirements.txt").read_text().splitlines() if x and not x.startswith("#")]
    assert lines == [f"efficientnet-lite-pytorch=={pins['efficientnet-lite-pytorch']}"]
    assert lines[0] in (ROOT / "training_code" / "requirements.txt").read_text()
    train.save_model_dir(
        tmp_path / "tv", models.build_model("mobilenet_v3_small", 5, image_size=32), {"architecture": "mobilenet_v3_small"}
    )
    assert [x for x in (tmp_path / "tv" / "code" / "requirements.txt").read_text().splitlines() if x and not x.startswith("#")] == []


def test_a_lite0_model_dir_serves_from_its_own_code_folder_with_flips(tmp_path: Path) -> None:
    """As the inference container runs it: only model_dir/code on the path (not training_code), TorchScript on CPU."""
    torch.manual_seed(9)
    net = models.build_model("efficientnet_lite0", 5, image_size=96)
    meta = {
        "architecture": "efficientnet_lite0",
        "head": "linear",
        "image_size": 96,
        "classes": [1, 2, 3, 4, 5],
        "spec_version": "1",
        "model_version": "lite0-test",
        "temperature": 1.5,
        "tta": "flip4",
    }
    train.save_model_dir(tmp_path, net, meta)
    script = (
        "import sys, json, numpy as np, torch, inference, serving_runtime\n"
        "loaded = inference.model_fn(sys.argv[1])\n"
        "batch = np.random.default_rng(0).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)\n"
        "print(json.dumps({'path': serving_runtime.serving_path(loaded.model), 'reply': inference.predict_fn(batch, loaded)}))\n"
    )
    env = {**subprocess_env(), "PYTHONPATH": str(tmp_path / "code"), "INVMON_SERVING_PATH": "torchscript"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["path"] == "torchscript"
    eager = models.build_model("efficientnet_lite0", 5, image_size=96, tta="flip4").eval()
    eager.load_state_dict(net.state_dict())
    eager.set_temperature(1.5)
    batch = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8))
    with torch.no_grad():
        expected = eager(batch).softmax(dim=1).numpy()
    for prediction, row in zip(served["reply"]["predictions"], expected, strict=True):
        assert max(abs(prediction["probabilities"][str(c)] - row[i]) for i, c in enumerate((1, 2, 3, 4, 5))) < 1e-4
