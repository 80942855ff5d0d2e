"""Auxiliary supervision (issue 12): photos with fewer or more items than the classes, trained as two
extra outputs that the saved model drops.

Everything is real: synthetic JPEGs on disk, prep.py, dataset.py, train.py and torch on CPU; nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import dataset
import dataset_layout
import models
import numpy as np
import prep
import pytest
import synthetic_bins
import torch

from tests.training.conftest import TINY, channel_args

OUTSIDE = {0: 0, 1: 7, 2: 12}  # position among the sorted ids -> the count its metadata is given


@pytest.fixture(scope="module")
def bucket_with_outside_counts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """40 synthetic bins; three get counts outside 1..5 (0, 7, 12): what prep.py --auxiliary keeps."""
    folder = tmp_path_factory.mktemp("bucket")
    labels = dict(synthetic_bins.generate(folder, 40, seed=5))
    ids = sorted(labels)
    for position, count in OUTSIDE.items():
        (folder / "metadata" / f"{ids[position]}.json").write_text(json.dumps({"EXPECTED_QUANTITY": count}))
        labels[ids[position]] = count
    return folder, labels


@pytest.fixture(scope="module")
def prepared_with_auxiliary(bucket_with_outside_counts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder, _ = bucket_with_outside_counts
    out = tmp_path_factory.mktemp("prepared_aux")
    prep.prepare(str(folder), str(out), workers=2, auxiliary=True)
    return out


def _labels(folder: Path) -> dict:
    return json.loads((folder / dataset_layout.SPLIT_LABELS_FILE).read_text())


def test_prep_writes_outside_counts_to_the_auxiliary_channel_and_leaves_the_splits_alone(
    bucket_with_outside_counts, prepared_with_auxiliary: Path, tmp_path: Path
) -> None:
    folder, labels = bucket_with_outside_counts
    plain = prep.prepare(str(folder), str(tmp_path / "plain"), workers=2)
    summary = json.loads((prepared_with_auxiliary / "summary.json").read_text())
    outside = {i: c for i, c in labels.items() if c not in prep.DEFAULT_CLASSES}
    assert plain["skipped_by_reason"] == {"count_outside_classes": len(outside)}
    # With --auxiliary nothing is skipped, the photos are written, and every count still reconciles.
    assert summary["skipped"] == 0 and summary["written"] == summary["read"] == len(labels)
    assert summary["auxiliary"] == {"total": 3, "per_count": {"0": 1, "7": 1, "12": 1}}
    assert sum(s["total"] for s in summary["splits"].values()) + summary["auxiliary"]["total"] == summary["written"]
    auxiliary = _labels(prepared_with_auxiliary / "train" / dataset_layout.AUXILIARY_FOLDER)
    assert dict(zip(auxiliary["ids"], auxiliary["counts"], strict=True)) == outside
    assert auxiliary["classes"] == list(prep.DEFAULT_CLASSES)
    for name, _ in prep.SPLITS:  # the scored splits are exactly those of a run without --auxiliary
        assert _labels(prepared_with_auxiliary / name) == _labels(tmp_path / "plain" / name)
        assert np.array_equal(np.load(prepared_with_auxiliary / name / "images.npy"), np.load(tmp_path / "plain" / name / "images.npy"))
    pixels = np.load(prepared_with_auxiliary / "train" / dataset_layout.AUXILIARY_FOLDER / "images.npy")
    assert pixels.shape == (3, 224, 224, 3) and pixels.std() > 0


def test_without_photos_outside_the_classes_there_is_no_auxiliary_folder(synthetic_bucket: Path, tmp_path: Path) -> None:
    summary = prep.prepare(str(synthetic_bucket), str(tmp_path / "out"), workers=2, auxiliary=True)
    assert summary["auxiliary"] == {"total": 0, "per_count": {}} and summary["skipped"] == 0
    assert not (tmp_path / "out" / "train" / dataset_layout.AUXILIARY_FOLDER).exists()  # --auxiliary auto: classes only


def test_a_count_between_classes_has_no_auxiliary_target_and_is_skipped(bucket_with_outside_counts, tmp_path: Path) -> None:
    folder, labels = bucket_with_outside_counts
    summary = prep.prepare(str(folder), str(tmp_path / "out"), classes=(1, 3, 5), workers=2, auxiliary=True)
    between = [c for c in labels.values() if c in (2, 4)]
    assert summary["skipped_by_reason"] == {"count_outside_classes": len(between)}
    assert set(summary["auxiliary"]["per_count"]) == {"0", "7", "12"}


def test_auxiliary_with_shards_is_a_clear_error(bucket_with_outside_counts, tmp_path: Path, capsys) -> None:
    folder, _ = bucket_with_outside_counts
    argv = ["--source", str(folder), "--output", str(tmp_path / "out"), "--format", "shards", "--auxiliary"]
    assert prep.main(argv) == 2
    assert "--auxiliary is written in the arrays format only" in capsys.readouterr().err


def test_extended_targets_put_fewer_first_and_more_last() -> None:
    classes = [1, 2, 3, 4, 5]
    assert [dataset.extended_target(c, classes) for c in (0, 1, 3, 5, 6, 88)] == [0, 1, 3, 5, 6, 6]
    with pytest.raises(dataset.DataError, match="between the classes"):
        dataset.extended_target(2, [1, 3])


def test_training_reads_the_splits_and_the_auxiliary_photos_as_one(prepared_with_auxiliary: Path) -> None:
    train = dataset.load_split(prepared_with_auxiliary / "train")
    auxiliary = dataset.load_auxiliary(prepared_with_auxiliary / "train" / dataset_layout.AUXILIARY_FOLDER, train.classes)
    both = dataset.with_auxiliary(train, auxiliary)
    assert len(both) == len(train) + 3
    assert both.targets.tolist() == [t + 1 for t in train.targets] + [0, 6, 6]  # counts 0, 7, 12 in id order
    positions = np.array([len(train) + 2, 0, len(train), 5, 5])  # any order, both parts, repeats
    expected = np.concatenate([np.asarray(train.images), np.asarray(auxiliary.images)])[positions]
    assert np.array_equal(both.images[positions], expected)
    with pytest.raises(dataset.DataError, match="expected \\[1, 2\\]"):
        dataset.load_auxiliary(prepared_with_auxiliary / "train" / dataset_layout.AUXILIARY_FOLDER, [1, 2])
    # The auxiliary channel is not a split: its counts are outside the classes it was prepared for.
    with pytest.raises(dataset.DataError, match="outside its classes"):
        dataset.load_split(prepared_with_auxiliary / "train" / dataset_layout.AUXILIARY_FOLDER)


@pytest.mark.parametrize(
    ("architecture", "head"), [("mobilenet_v3_small", "linear"), ("resnet18", "classic"), ("efficientnet_lite0", "linear")]
)
def test_trimming_the_head_keeps_exactly_the_logits_evaluation_saw(architecture: str, head: str) -> None:
    torch.manual_seed(0)
    model = models.build_model(architecture, 7, head, image_size=64, tta="flip4").eval()
    model.class_window = (1, 6)
    images = torch.randint(0, 256, (3, 224, 224, 3), dtype=torch.uint8)
    with torch.no_grad():
        windowed = model(images)
        models.trim_head(model)
        trimmed = model(images)
    assert windowed.shape == trimmed.shape == (3, 5) and model.class_window is None
    torch.testing.assert_close(trimmed, windowed)
    fresh = models.build_model(architecture, 5, head, image_size=64)
    fresh.load_state_dict(model.state_dict())  # the saved weights are an ordinary 5-class model's
    model.train()
    assert model(images).shape == (3, 5)


def test_train_uses_the_auxiliary_photos_prep_wrote_and_saves_a_model_of_the_classes_only(
    prepared_with_auxiliary: Path, tmp_path: Path
) -> None:
    import train

    argv = [*channel_args(prepared_with_auxiliary, tmp_path), *TINY, "--epochs", "1", "--count-loss-weight", "0.5"]
    assert train.main(argv) == 0  # --auxiliary auto (the default): train/auxiliary/ is there, so it is used
    meta = json.loads((tmp_path / "model" / "model_meta.json").read_text())
    assert meta["classes"] == [1, 2, 3, 4, 5] and meta["auxiliary_photos"] == 3
    state = torch.load(tmp_path / "model" / "model.pth", weights_only=True)
    served = models.build_model(meta["architecture"], len(meta["classes"]), meta["head"], meta["image_size"])
    served.load_state_dict(state)
    report = json.loads((tmp_path / "output" / "evaluation.json").read_text())
    assert report["n"] == len(dataset.load_split(prepared_with_auxiliary / "test"))
    # --auxiliary none trains on the classes only, and cannot resume this run's checkpoints (another head).
    without = train.parse_args([*argv, "--auxiliary", "none"])
    assert train.auxiliary_folder(without) is None
    assert train.run_identity(without, meta["classes"]) != train.run_identity(train.parse_args(argv), meta["classes"])


def test_an_auxiliary_folder_that_is_not_prep_output_is_named(prepared_with_auxiliary: Path, tmp_path: Path, caplog) -> None:
    import train

    argv = [*channel_args(prepared_with_auxiliary, tmp_path), *TINY, "--epochs", "1", "--auxiliary", str(tmp_path / "nowhere")]
    assert train.main(argv) == 2
    assert f"{tmp_path / 'nowhere' / 'images.npy'} is missing" in caplog.text
