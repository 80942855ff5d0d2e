"""Sharded prep and the streaming shard reader (issue 16): prep.py --format shards, shards.py, train.py's hook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.conftest import TINY, channel_args, subprocess_env

SPLIT_NAMES = ("train", "validation", "test")


def prepare_all(bucket: Path, out: Path, total: int, shard_size: int = 7) -> list[dict]:
    import prep

    return [prep.prepare_shards(str(bucket), str(out), workers=2, shard=(i, total), shard_size=shard_size) for i in range(total)]


@pytest.fixture(scope="module")
def sharded(synthetic_bucket: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The synthetic bucket prepared in 1, 2 and 3 shard processes."""
    outputs = {}
    for total in (1, 2, 3):
        out = tmp_path_factory.mktemp(f"sharded{total}")
        prepare_all(synthetic_bucket, out, total)
        outputs[total] = out
    return outputs


def assignment(out: Path) -> dict[str, str]:
    import shards

    return {i: name for name in SPLIT_NAMES for i in shards.open_channel(out / name).ids}


def test_split_assignment_and_examples_do_not_depend_on_n(sharded: dict[int, Path], synthetic_bucket: Path) -> None:
    import prep
    import shards

    by_n = {total: assignment(out) for total, out in sharded.items()}
    assert len(by_n[1]) == 50
    assert by_n[1] == by_n[2] == by_n[3]
    assert all(split == shards.split_by_threshold(i, prep.SPLITS) for i, split in by_n[1].items())
    assert set(by_n[1].values()) == set(SPLIT_NAMES)


def test_shard_pixels_are_the_specs_and_identical_for_every_n(sharded: dict[int, Path], synthetic_bucket: Path) -> None:
    import dataset
    import preprocessing_spec

    one, three = dataset.load_split(sharded[1] / "train"), dataset.load_split(sharded[3] / "train")
    row_in_three = {i: r for r, i in enumerate(three.ids)}
    for row in (0, len(one) // 2, len(one) - 1):
        image_id = one.ids[row]
        expected = preprocessing_spec.preprocess_bytes((synthetic_bucket / "bin-images" / f"{image_id}.jpg").read_bytes())
        assert one.images[row].tobytes() == expected
        assert three.images[row_in_three[image_id]].tobytes() == expected
        assert one.targets[row] == three.targets[row_in_three[image_id]]


def test_shards_are_plain_tar_files(sharded: dict[int, Path]) -> None:
    import tarfile

    import shards

    channel = shards.open_channel(sharded[2] / "train")
    with tarfile.open(channel.folder / channel.files[0]) as tar:
        names = tar.getnames()
    assert names == [f"{i}.npy" for i in channel.ids[: len(names)]]


def test_counts_reconcile_across_processes(synthetic_bucket: Path, tmp_path: Path) -> None:
    import shards

    bucket = shutil.copytree(synthetic_bucket, tmp_path / "bucket")
    images = sorted((bucket / "bin-images").glob("*.jpg"))
    images[0].write_bytes(b"not a jpeg")  # corrupt_image
    images[1].unlink()  # missing_image
    metadata = json.loads((bucket / "metadata" / f"{images[2].stem}.json").read_text())
    metadata["EXPECTED_QUANTITY"] = 9  # count_outside_classes
    (bucket / "metadata" / f"{images[2].stem}.json").write_text(json.dumps(metadata))
    summaries = prepare_all(bucket, tmp_path / "out", 2)
    manifests = [m for name in SPLIT_NAMES for m in shards.read_manifests(tmp_path / "out" / name)]
    assert len(manifests) == 6
    for m in manifests:
        assert m["read"] == m["written"] + m["skipped"] and m["written"] == m["examples"]
    assert sum(m["read"] for m in manifests) == sum(s["read"] for s in summaries) == 50
    assert sum(m["skipped"] for m in manifests) == 3
    assert sum(m["written"] for m in manifests) == 47
    reasons = {r for s in summaries for r in s["skipped_by_reason"]}
    assert reasons == {"corrupt_image", "missing_image", "count_outside_classes"}


def test_an_incomplete_channel_is_refused(sharded: dict[int, Path], tmp_path: Path) -> None:
    import dataset

    partial = shutil.copytree(sharded[3] / "train", tmp_path / "train")
    (partial / "manifest-1-of-3.json").unlink()
    with pytest.raises(dataset.DataError, match="every prep process"):
        dataset.load_split(partial)


def test_host_index_comes_from_the_resource_config(tmp_path: Path) -> None:
    import prep

    config = tmp_path / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-3", "hosts": ["algo-1", "algo-2", "algo-3"]}))
    assert prep.processing_host_shard(str(config)) == (2, 3)
    assert prep.processing_host_shard(str(tmp_path / "missing.json")) is None


def test_shard_flags_are_checked(synthetic_bucket: Path, tmp_path: Path) -> None:
    import prep

    assert prep.main(["--source", str(synthetic_bucket), "--output", str(tmp_path), "--shard", "0/2"]) == 2
    with pytest.raises(SystemExit):
        prep.get_args_parser().parse_args(["--source", "x", "--output", "y", "--format", "shards", "--shard", "2/2"])


def test_two_ranks_get_disjoint_parts_covering_the_split(sharded: dict[int, Path]) -> None:
    import dataset
    import shards

    channel = shards.open_channel(sharded[2] / "train")
    for epoch in (0, 1):
        parts = []
        for rank in (0, 1):
            stream = dataset.ShardStream(channel, batch_size=len(channel), seed=5, rank=rank, world=2)
            stream.set_epoch(epoch)
            parts.append(stream.rank_positions())
        assert len(parts[0]) == len(parts[1])
        unique = [set(p.tolist()) for p in parts]
        assert not unique[0] & unique[1]
        assert unique[0] | unique[1] == set(range(len(channel)))


def test_dataloader_workers_split_a_ranks_part(sharded: dict[int, Path]) -> None:
    import dataset
    import shards

    stream = dataset.ShardStream(shards.open_channel(sharded[3] / "train"), batch_size=4, seed=1, rank=1, world=2)
    stream.set_epoch(3)
    by_worker = [stream.worker_positions(w, 3) for w in range(3)]
    assert np.array_equal(np.concatenate(by_worker), stream.rank_positions())
    batches = list(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2))
    assert len(batches) == len(stream) and all(images.shape == (4, 224, 224, 3) for images, _ in batches)


def test_same_seed_and_epoch_give_the_same_order(sharded: dict[int, Path]) -> None:
    import dataset
    import shards

    channel = shards.open_channel(sharded[3] / "train")

    def order(epoch: int, buffer_size: int = 5) -> list[int]:
        stream = dataset.ShardStream(channel, batch_size=4, seed=9, buffer_size=buffer_size)
        stream.set_epoch(epoch)
        return stream.order()

    assert order(2) == order(2)  # a run resumed at epoch 2 replays the uninterrupted order
    assert order(2) != order(3)
    assert sorted(order(2)) != order(2)  # shuffled
    first = dataset.ShardStream(channel, batch_size=4, seed=9)
    again = dataset.ShardStream(channel, batch_size=4, seed=9)
    first.set_epoch(1), again.set_epoch(1)
    for (a, ta), (b, tb) in zip(first, again, strict=True):
        assert torch.equal(a, b) and torch.equal(ta, tb)


TORCHRUN_SCRIPT = """
import json, os, sys
import torch.distributed as dist
import dataset, shards
dist.init_process_group("gloo")
stream = dataset.ShardStream(shards.open_channel(sys.argv[1]), batch_size=4, seed=3, rank=dist.get_rank(), world=dist.get_world_size())
stream.set_epoch(1)
with open(os.path.join(sys.argv[2], f"rank{dist.get_rank()}.json"), "w") as f:
    part = shards.rank_part(shards.epoch_order(stream.channel, 3, 1), dist.get_rank(), dist.get_world_size())
    json.dump({"positions": part.tolist(), "order": stream.order(), "batches": len(list(stream))}, f)
dist.destroy_process_group()
"""


def test_shard_reader_under_torchrun_gives_each_rank_a_disjoint_part(sharded: dict[int, Path], tmp_path: Path) -> None:
    import shards

    script = tmp_path / "ranks.py"
    script.write_text(TORCHRUN_SCRIPT)
    channel = sharded[2] / "train"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(channel),
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    n = len(shards.open_channel(channel))
    assert ranks[0]["batches"] == ranks[1]["batches"] == shards.steps_and_batch(-(-n // 2), 4)[0] > 1
    assert not set(ranks[0]["order"]) & set(ranks[1]["order"])
    assert len(ranks[0]["positions"]) == len(ranks[1]["positions"])  # odd n: the short rank repeats one of its own
    assert set(ranks[0]["positions"]) | set(ranks[1]["positions"]) == set(range(n))
    assert len(set(ranks[0]["positions"]) & set(ranks[1]["positions"])) == 0


def test_train_runs_an_epoch_from_shard_channels(sharded: dict[int, Path], tmp_path: Path) -> None:
    import train

    assert train.main([*channel_args(sharded[2], tmp_path), *TINY, "--epochs", "1", "--model-version", "shards-v1"]) == 0
    report = json.loads((tmp_path / "output" / "evaluation.json").read_text())
    test_ids = assignment(sharded[2])
    assert report["n"] == sum(1 for split in test_ids.values() if split == "test")  # evaluation: every example once
    assert (tmp_path / "model" / "model.pth").is_file()


def test_resume_from_shards_matches_an_uninterrupted_run(sharded: dict[int, Path], tmp_path: Path) -> None:
    import train

    common = [*TINY, "--epochs", "2", "--seed", "7", "--tta", "none"]
    assert train.main([*channel_args(sharded[3], tmp_path / "straight", test=False), *common]) == 0
    work = tmp_path / "interrupted"
    assert train.main([*channel_args(sharded[3], work, test=False), *common, "--stop-after-epochs", "1"]) == 0
    assert not (work / "model" / "model.pth").exists()
    assert train.main([*channel_args(sharded[3], work, test=False), *common]) == 0  # resumes at epoch 2
    straight = torch.load(tmp_path / "straight" / "model" / "model.pth", weights_only=True)
    resumed = torch.load(work / "model" / "model.pth", weights_only=True)
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)


def test_prep_and_the_shard_format_do_not_import_torch() -> None:
    """prep.py runs on a plain Processing image and N of them start at once: torch's ~2 s import is not theirs to pay."""
    probe = "import sys, prep, shards; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=subprocess_env(), check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
