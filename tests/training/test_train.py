"""train.py on real (synthetic) channels, CPU: metrics lines, model dir, resume, arguments."""

from __future__ import annotations

import json
import re
from pathlib import Path

import metrics_format
import models
import pytest
import torch
import train

from tests.training.conftest import TINY, channel_args, run_train


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "model.pth", map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_container_run_prints_lines_the_tuning_regexes_parse(prepared: Path, tmp_path: Path) -> None:
    """As the SageMaker container runs it: channels from SM_* variables, its sagemaker_* hyperparameters."""
    env = {
        "SM_CHANNEL_TRAIN": str(prepared / "train"),
        "SM_CHANNEL_VALIDATION": str(prepared / "validation"),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"),
        "SM_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
    }
    sagemaker_args = [
        "--sagemaker_program",
        "train.py",
        "--sagemaker_submit_directory",
        "s3://b/source.tar.gz",
        "--sagemaker_region",
        "us-east-1",
    ]
    done = run_train([*TINY, "--epochs", "2", *sagemaker_args, "--sagemaker_torch_distributed_enabled", "false"], **env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("METRICS ")]
    assert len(lines) == 2
    for number, line in enumerate(lines, start=1):
        for definition in metrics_format.METRIC_DEFINITIONS:  # what the tuning job applies to each log line
            match = re.search(definition["Regex"], line)
            assert match, f"{definition['Name']} not found in {line!r}"
            value = float(match.group(1))
            if definition["Name"] == "epoch":
                assert value == number
            elif "accuracy" in definition["Name"] or "off_by_one" in definition["Name"]:
                assert 0.0 <= value <= 1.0
    parsed = metrics_format.parse_metrics(done.stdout)
    assert [p["epoch"] for p in parsed] == [1.0, 2.0]
    assert parsed[-1][metrics_format.OBJECTIVE_METRIC] == float(re.search(r"validation:accuracy=([^;]+);", lines[-1]).group(1))
    # No test channel: the report scores the validation split.
    report = json.loads((tmp_path / "output" / "evaluation.json").read_text())
    assert (
        report["split"] == "validation"
        and report["n"] == json.loads((prepared / "summary.json").read_text())["splits"]["validation"]["total"]
    )


def test_model_dir_and_report_follow_the_contract(trained: Path, prepared: Path) -> None:
    model_dir = trained / "model"
    assert {p.name for p in (model_dir / "code").iterdir()} == {*train.SERVING_MODULES, "requirements.txt"}
    meta = json.loads((model_dir / "model_meta.json").read_text())
    assert meta["architecture"] == "mobilenet_v3_small" and meta["head"] == "linear" and meta["classes"] == [1, 2, 3, 4, 5]
    assert meta["spec_version"] == "1" and meta["model_version"] == "test-v1" and meta["image_size"] == 32
    assert set(_weights(model_dir)) == set(models.build_model("mobilenet_v3_small", 5, image_size=32).state_dict())
    report = json.loads((trained / "output" / "evaluation.json").read_text())
    assert set(report) >= {
        "accuracy",
        "rmse",
        "off_by_one",
        "majority_baseline",
        "n",
        "classes",
        "per_class",
        "confusion_matrix",
        "model_version",
    }
    assert report["n"] == json.loads((prepared / "summary.json").read_text())["splits"]["test"]["total"]
    assert sum(map(sum, report["confusion_matrix"])) == report["n"]
    assert sum(c["support"] for c in report["per_class"].values()) == report["n"]
    for png in ("curves.png", "confusion_matrix.png"):
        assert (trained / "output" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_interruption_matches_an_uninterrupted_run(prepared: Path, tmp_path: Path) -> None:
    common = [*TINY, "--epochs", "3", "--seed", "7"]
    assert train.main([*channel_args(prepared, tmp_path / "straight"), *common]) == 0

    work = tmp_path / "interrupted"
    assert train.main([*channel_args(prepared, work), *common, "--stop-after-epochs", "1"]) == 0
    assert not (work / "model" / "model.pth").exists(), "an interrupted run must not write the final model"
    assert [p.name for p in train.checkpoint_paths(work / "checkpoints")] == ["checkpoint-epoch0001.pt"]
    assert train.main([*channel_args(prepared, work), *common, "--stop-after-epochs", "1"]) == 0  # epoch 2, interrupted again
    assert train.main([*channel_args(prepared, work), *common]) == 0  # epoch 3
    assert [p.name for p in train.checkpoint_paths(work / "checkpoints")] == ["checkpoint-epoch0003.pt", "checkpoint-epoch0002.pt"]

    straight, resumed = _weights(tmp_path / "straight" / "model"), _weights(work / "model")
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    history = json.loads((work / "model" / "model_meta.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_a_cut_short_checkpoint_falls_back_to_the_previous_one(prepared: Path, tmp_path: Path) -> None:
    common = [*channel_args(prepared, tmp_path), *TINY, "--epochs", "3", "--stop-after-epochs", "2"]
    assert train.main(common) == 0
    newest = train.checkpoint_paths(tmp_path / "checkpoints")[0]
    newest.write_bytes(newest.read_bytes()[:1000])  # a spot interruption mid-upload
    state = train.load_newest_checkpoint(tmp_path / "checkpoints")
    assert state is not None and state["epoch"] == 1


def test_a_checkpoint_of_another_run_is_refused(prepared: Path, tmp_path: Path, caplog) -> None:
    assert train.main([*channel_args(prepared, tmp_path), *TINY, "--epochs", "2", "--stop-after-epochs", "1"]) == 0
    assert train.main([*channel_args(prepared, tmp_path), *TINY, "--epochs", "2", "--head", "classic"]) == 2
    assert "holds a checkpoint of another run" in caplog.text and "empty --checkpoint-dir" in caplog.text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs must be positive"),
        (["--learning-rate", "0.1"], "unknown argument(s) --learning-rate"),
        (["--model", "vgg16"], "invalid choice: 'vgg16'"),
    ],
)
def test_bad_arguments_are_named(argv: list[str], message: str, prepared: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        train.parse_args([*channel_args(prepared, tmp_path), *argv])
    assert message in capsys.readouterr().err


def test_missing_channels_are_named(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("SM_CHANNEL_TRAIN", raising=False)
    with pytest.raises(SystemExit):
        train.parse_args([])
    assert "SM_CHANNEL_TRAIN" in capsys.readouterr().err


def test_a_folder_that_is_not_prep_output_is_named(prepared: Path, tmp_path: Path, caplog) -> None:
    (tmp_path / "empty").mkdir()
    argv = [
        "--train",
        str(tmp_path / "empty"),
        "--validation",
        str(prepared / "validation"),
        "--checkpoint-dir",
        str(tmp_path / "c"),
        *TINY,
    ]
    assert train.main(argv) == 2
    assert "images.npy is missing" in caplog.text


def test_augmentation_keeps_shape_range_and_is_seeded() -> None:
    images = torch.randint(0, 256, (4, 224, 224, 3), dtype=torch.uint8)
    first = train.augment(images, torch.Generator().manual_seed(1), 64)
    again = train.augment(images, torch.Generator().manual_seed(1), 64)
    other = train.augment(images, torch.Generator().manual_seed(2), 64)
    assert first.shape == (4, 64, 64, 3) and first.dtype == torch.float32
    assert first.min() >= 0 and first.max() <= 255
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_heads_and_local_pretrained_weights(tmp_path: Path) -> None:
    classic = models.build_backbone("resnet18", 5, "classic")
    assert [m.out_features for m in classic.fc if isinstance(m, torch.nn.Linear)] == [254, 128, 5]
    imagenet = models.import_torchvision().models.mobilenet_v3_small(weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "mobilenet_v3_small.pth")
    loaded = models.build_backbone("mobilenet_v3_small", 5, pretrained_weights=tmp_path / "mobilenet_v3_small.pth")
    assert torch.equal(loaded.features[0][0].weight, imagenet.features[0][0].weight)
    with pytest.raises(ValueError, match="matches only 0 of"):
        models.build_backbone("resnet18", 5, pretrained_weights=tmp_path / "mobilenet_v3_small.pth")
    with pytest.raises(ValueError, match="does not exist"):
        models.build_backbone("resnet18", 5, pretrained_weights=tmp_path / "missing.pth")


def test_several_instances_without_torchrun_are_refused(monkeypatch) -> None:
    # Two SageMaker hosts but no torchrun environment: each instance would train alone; refuse instead.
    monkeypatch.setenv("SM_HOSTS", '["algo-1", "algo-2"]')
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit, match="SM_HOSTS lists 2 instances but WORLD_SIZE is not set: launch it with torchrun"):
        train.init_distributed()


def test_a_checkpoint_restores_what_the_epochs_update(tmp_path: Path) -> None:
    """In process, the pieces run() composes: build, one step, record, checkpoint, resume into a fresh build."""
    args = train.parse_args(["--train", "T", "--validation", "V", *TINY, "--epochs", "2", "--pretrained-weights", "none"])
    processes = train.Processes(rank=0, world=1, device=torch.device("cpu"), amp_dtype=None)
    trained = train.build_training(args, [1, 2, 3], processes, steps_per_epoch=4)
    images, targets = torch.randint(0, 256, (4, 224, 224, 3), dtype=torch.uint8), torch.tensor([0, 1, 2, 1])
    train.training_loss(trained.model(images), targets, args).backward()
    trained.optimizer.step()
    trained.scheduler.step()
    progress = train.Progress()
    train.record_epoch(progress, 1, {"epoch": 1, "validation:accuracy": 0.5, "validation:loss": 1.0}, trained.net)
    identity = train.run_identity(args, [1, 2, 3])
    train.save_checkpoint(tmp_path, train.checkpoint_state(identity, 1, trained, progress))

    fresh = train.build_training(args, [1, 2, 3], processes, steps_per_epoch=4)
    resumed = train.resume(tmp_path, identity, fresh, processes)  # loads with weights_only=True
    assert (resumed.next_epoch, [h["epoch"] for h in resumed.history], resumed.best["epoch"]) == (2, [1], 1)
    assert all(torch.equal(a, b) for a, b in zip(trained.net.state_dict().values(), fresh.net.state_dict().values(), strict=True))
    assert (
        fresh.scheduler.last_epoch == 1 and fresh.optimizer.state_dict()["state"].keys() == trained.optimizer.state_dict()["state"].keys()
    )
    assert train.keep_weights(args, fresh.net, resumed) == 1  # --keep best: the recorded epoch's weights
    with pytest.raises(ValueError, match="holds a checkpoint of another run"):
        train.resume(tmp_path, {**identity, "epochs": 3}, fresh, processes)
