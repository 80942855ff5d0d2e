"""The one reader of prep.py's channel format.

A channel folder holds `images.npy` (uint8 [N, 224, 224, 3], preprocessed by the spec) and
`labels.json` ({"ids": [...], "counts": [...], "classes": [...], "spec_version": "1"}). Training
memory-maps the array, so an epoch reads ~150 KB per image with no JPEG decoding (docs/training.md has
the measurement behind this choice).

A folder holding shard manifests (`prep.py --format shards`, shards.py) opens as the same `Split`, its
`images` a `shards.ShardImages` (random access by position, for evaluation); training streams it with
`ShardStream` (below) instead of `BatchDataset`.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dataset_layout
import numpy as np
import preprocessing_spec
import shards
import torch

IMAGES_FILE = dataset_layout.SPLIT_IMAGES_FILE
LABELS_FILE = dataset_layout.SPLIT_LABELS_FILE
SHAPE = preprocessing_spec.SHAPE


class DataError(ValueError):
    """A channel folder that is not prep.py output; the message says which file and what to do."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray | shards.ShardImages  # uint8 [N, 224, 224, 3], memory-mapped or read from shards
    targets: np.ndarray  # int64 [N], index into classes
    ids: list[str]
    classes: list[int]

    def __len__(self) -> int:
        return len(self.ids)


def _read_channel(folder: Path) -> tuple[np.ndarray, list[str], list[int], list[int]]:
    """(memory-mapped images, ids, counts, classes) of one npy channel folder, checked against the spec."""
    images_path, labels_path = folder / IMAGES_FILE, folder / LABELS_FILE
    for path in (images_path, labels_path):
        if not path.is_file():
            raise DataError(f"{path} is missing: the channel must be a split folder written by prep.py (train/, validation/ or test/)")
    try:
        labels = json.loads(labels_path.read_text())
        ids, counts, written_classes = labels["ids"], labels["counts"], labels["classes"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataError(f"{labels_path} is not a prep.py labels file ({error}): run prep.py again") from None
    if labels.get("spec_version") != preprocessing_spec.SPEC_VERSION:
        raise DataError(
            f"{folder} was prepared with preprocessing spec {labels.get('spec_version')!r}, this code uses {preprocessing_spec.SPEC_VERSION!r}: run prep.py again"
        )
    images = np.load(images_path, mmap_mode="r")
    if images.dtype != np.uint8 or images.shape[1:] != SHAPE or images.shape[0] != len(ids) or len(ids) != len(counts):
        raise DataError(
            f"{images_path} has shape {images.shape} {images.dtype} for {len(ids)} ids: expected uint8 [{len(ids)}, 224, 224, 3]; run prep.py again"
        )
    return images, list(ids), list(counts), list(written_classes)


def load_split(folder: str | Path, classes: list[int] | None = None) -> Split:
    """Open one channel; `classes` (when given) must match the ones prep wrote."""
    folder = Path(folder)
    if shards.is_sharded(folder):
        return load_sharded_split(folder, classes)
    images, ids, counts, written_classes = _read_channel(folder)
    if classes is not None and list(classes) != written_classes:
        raise DataError(f"{folder} holds classes {written_classes}, expected {list(classes)}: prepare all channels with the same --classes")
    index = {c: i for i, c in enumerate(written_classes)}
    unknown = sorted({c for c in counts if c not in index})
    if unknown:
        raise DataError(f"{folder / LABELS_FILE} has counts {unknown} outside its classes {written_classes}: run prep.py again")
    return Split(images=images, targets=np.array([index[c] for c in counts], dtype=np.int64), ids=ids, classes=written_classes)


# --- auxiliary supervision (prep.py --auxiliary, train.py --auxiliary) ----------------------------------
# Training with the auxiliary channel uses extended targets over [fewer, *classes, more]: index 0 is
# "fewer items than the smallest class", 1..K the classes, K+1 "more than the largest". Evaluation and
# serving see only the K class outputs (models.CountingModel.class_window, models.trim_head).


def extended_target(count: int, classes: list[int]) -> int:
    """A count's index in [fewer, *classes, more]."""
    if dataset_layout.is_auxiliary_count(count, classes):
        return 0 if count < classes[0] else len(classes) + 1
    if count not in classes:
        raise DataError(f"count {count} lies between the classes {classes}: it is neither fewer nor more")
    return classes.index(count) + 1


def load_auxiliary(folder: str | Path, classes: list[int]) -> Split:
    """prep.py's auxiliary channel (photos whose count is outside `classes`) with extended targets."""
    folder = Path(folder)
    if shards.is_sharded(folder):
        raise DataError(f"{folder} is sharded: the auxiliary channel is written by prep.py --auxiliary in the arrays format")
    images, ids, counts, written_classes = _read_channel(folder)
    if written_classes != list(classes):
        raise DataError(
            f"{folder} was prepared for classes {written_classes}, expected {list(classes)}: prepare all channels with the same --classes"
        )
    targets = np.array([extended_target(c, list(classes)) for c in counts], dtype=np.int64)
    return Split(images=images, targets=targets, ids=ids, classes=list(classes))


class ConcatImages:
    """Two or more uint8 [N, 224, 224, 3] arrays read as one by position (BatchDataset's fancy indexing)."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0, *(len(p) for p in parts)])
        self.shape = (int(self.starts[-1]), *SHAPE)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty((len(positions), *SHAPE), dtype=np.uint8)
        part_of = np.searchsorted(self.starts, positions, side="right") - 1
        for part in np.unique(part_of):
            rows = np.flatnonzero(part_of == part)
            out[rows] = self.parts[part][positions[rows] - self.starts[part]]
        return out


def with_auxiliary(train: Split, auxiliary: Split) -> Split:
    """The training split followed by the auxiliary photos, all with extended targets."""
    return Split(
        images=ConcatImages([train.images, auxiliary.images]),
        targets=np.concatenate([train.targets + 1, auxiliary.targets]),
        ids=[*train.ids, *auxiliary.ids],
        classes=train.classes,
    )


def load_sharded_split(folder: Path, classes: list[int] | None = None) -> Split:
    try:
        channel = shards.open_channel(folder)
    except shards.ShardError as error:
        raise DataError(str(error)) from None
    if classes is not None and list(classes) != channel.classes:
        raise DataError(f"{folder} holds classes {channel.classes}, expected {list(classes)}: prepare all channels with the same --classes")
    index = {c: i for i, c in enumerate(channel.classes)}
    unknown = sorted({c for c in channel.counts if c not in index})
    if unknown:
        raise DataError(f"{folder} manifests have counts {unknown} outside their classes {channel.classes}: run prep.py again")
    targets = np.array([index[c] for c in channel.counts], dtype=np.int64)
    return Split(images=shards.ShardImages(channel), targets=targets, ids=list(channel.ids), classes=list(channel.classes))


class BatchDataset(torch.utils.data.Dataset):
    """Indexed by a list of positions (use with a BatchSampler and batch_size=None): one fancy-index read per batch."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.asarray(positions, dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self.split.images[order])), torch.from_numpy(self.split.targets[order])


class ShardStream(torch.utils.data.IterableDataset):
    """This rank's training batches for one epoch (call set_epoch first, as with DistributedSampler).

    Order: shards permuted by (seed, epoch); rank r reads its contiguous block of that order (so it opens
    only ~1/world of the shards); DataLoader worker w reads a contiguous part of the rank's block holding
    whole batches; a shuffle buffer of `buffer_size` encoded examples, seeded by (seed, epoch, rank,
    worker), mixes within and across neighbouring shards. Everything derives from (seed, epoch), so a
    run resumed at an epoch boundary replays the uninterrupted order. Yields (uint8 [B,224,224,3], int64 [B]).
    """

    def __init__(
        self, channel: shards.Channel, batch_size: int, seed: int, rank: int = 0, world: int = 1, buffer_size: int = shards.DEFAULT_BUFFER
    ) -> None:
        super().__init__()
        self.channel, self.batch_size, self.seed, self.rank, self.world = channel, batch_size, seed, rank, world
        self.buffer_size = max(1, buffer_size)
        self.epoch = 0
        index = {c: i for i, c in enumerate(channel.classes)}
        self.targets = np.array([index[c] for c in channel.counts], dtype=np.int64)
        self.steps, self.batch = shards.steps_and_batch(math.ceil(len(channel) / world), batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def rank_positions(self) -> np.ndarray:
        """The positions this rank trains on this epoch (before the shuffle buffer; drop-last applied)."""
        part = shards.rank_part(shards.epoch_order(self.channel, self.seed, self.epoch), self.rank, self.world)
        return part[: self.steps * self.batch]

    def worker_positions(self, worker: int, workers: int) -> np.ndarray:
        steps = self.steps // workers + (1 if worker < self.steps % workers else 0)
        first = worker * (self.steps // workers) + min(worker, self.steps % workers)
        return self.rank_positions()[first * self.batch : (first + steps) * self.batch]

    def shuffled(self, positions: np.ndarray, worker: int) -> Iterator[tuple[int, bytes]]:
        """(position, encoded example) read in order and emitted through a bounded shuffle buffer."""
        rng = random.Random(f"{self.seed}:{self.epoch}:{self.rank}:{worker}")
        handles: dict[int, Any] = {}
        buffer: list[tuple[int, bytes]] = []
        try:
            for position in positions:
                buffer.append((int(position), self.channel.read(int(position), handles)))
                if len(buffer) >= self.buffer_size:
                    yield buffer.pop(rng.randrange(len(buffer)))
            rng.shuffle(buffer)
            yield from buffer
        finally:
            for handle in handles.values():
                handle.close()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        images = np.empty((self.batch, *SHAPE), dtype=np.uint8)
        rows: list[int] = []
        for position, data in self.shuffled(self.worker_positions(worker, workers), worker):
            images[len(rows)] = shards.decode_example(data)
            rows.append(position)
            if len(rows) == self.batch:
                yield torch.from_numpy(images.copy()), torch.from_numpy(self.targets[rows])
                rows = []

    def order(self) -> list[int]:
        """Every position this rank yields this epoch, in yield order, one process (tests, resume checks)."""
        return [p for p, _ in self.shuffled(self.rank_positions(), 0)]
