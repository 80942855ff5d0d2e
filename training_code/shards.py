"""Streaming shard format for datasets too big for one memory-mapped array (issue 16).

A sharded channel folder holds tar shards (WebDataset-style: one member `<id>.npy` per example, the
spec's uint8 [1, 224, 224, 3] pixels in .npy format, so standard tar/WebDataset tools read them) and one
manifest per prep process, `manifest-<i>-of-<N>.json`. A manifest lists its shards with, per example, the
id, the count and the member's data offset and size: the manifest is the index, so readers seek straight
to an example and never parse tar headers. It also holds the process's read / written / skipped counts
for the split, which reconcile across processes (read = written + skipped, summed).

`bench/shards.py format` chose uint8 .npy members over 224x224 JPEG by measurement
(bench/results/shards_format.json): no decoding and the spec's exact pixels, for several times the bytes.

Readers:
- `open_channel(folder)` -> `Channel` (all manifests, checked complete: processes 0..N-1).
- `ShardImages(channel)`: random access `images[positions]` -> uint8 [n, 224, 224, 3], the interface of
  dataset.Split.images, so evaluation (engine.py) reads shards without shuffling, every example once.
- `epoch_order` / `rank_part` / `steps_and_batch`: the training order, which `dataset.ShardStream` (the
  training IterableDataset) streams. This module does not import torch: prep.py writes shards without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import preprocessing_spec

FORMAT = "invmon-shards"
FORMAT_VERSION = 1
ENCODING = "npy"  # member suffix; chosen by bench/shards.py (see the module docstring)
MANIFEST_GLOB = "manifest-*-of-*.json"
SHAPE = preprocessing_spec.SHAPE
IMAGE_BYTES = int(np.prod(SHAPE))
DEFAULT_SHARD_SIZE = 1000  # examples per shard: ~150 MB, a sensible S3 object to stream (FastFile)
DEFAULT_BUFFER = 512  # shuffle buffer (encoded examples): bounds a reader's memory to ~75 MB


class ShardError(ValueError):
    """A channel folder whose manifests are missing, incomplete or inconsistent; the message says which."""


def manifest_name(index: int, total: int) -> str:
    return f"manifest-{index}-of-{total}.json"


def stable_fraction(text: str, salt: str) -> float:
    """A number in [0, 1) from SHA-256 of salt + text: the same on every machine and process."""
    return int(hashlib.sha256(f"{salt}:{text}".encode()).hexdigest()[:13], 16) / 16**13


def owner_of(image_id: str, total: int) -> int:
    """Which of `total` prep processes handles this id (a salted hash, independent of the split's hash)."""
    return int(stable_fraction(image_id, "owner") * total)


def split_by_threshold(image_id: str, fractions: tuple[tuple[str, float], ...]) -> str:
    """The split of an id from a hash threshold: depends on the id alone, never on N or on the other ids."""
    value, cumulative = stable_fraction(image_id, "split"), 0.0
    for name, share in fractions:
        cumulative += share
        if value < cumulative:
            return name
    return fractions[-1][0]


# --- writing ---------------------------------------------------------------------------------------


def encode_example(raw: bytes) -> bytes:
    """The member's bytes: .npy uint8 [1, 224, 224, 3] of the spec's pixels."""
    return preprocessing_spec.encode_npy_uint8([raw])


def decode_example(data: bytes) -> np.ndarray:
    """-> uint8 [224, 224, 3] (a view of `data`: the pixels are the last IMAGE_BYTES bytes of the .npy)."""
    return np.frombuffer(data, dtype=np.uint8, count=IMAGE_BYTES, offset=len(data) - IMAGE_BYTES).reshape(SHAPE)


@dataclass
class ShardWriter:
    """Writes one split of one prep process: appends examples to the current tar, rolls over at
    `shard_size` examples. Memory holds one shard's index entries: a finished shard's entries go to a
    spill file that `finish` streams into the manifest. Disk grows with what this process writes, unless
    `on_closed` takes each finished shard file away (prep.py --upload-to uploads, then deletes it)."""

    folder: Path
    process: int
    total: int
    shard_size: int = DEFAULT_SHARD_SIZE
    on_closed: Callable[[Path], None] | None = None
    shard_files: int = 0
    examples: int = 0
    per_class: Counter[int] = field(default_factory=Counter)
    _current: dict[str, Any] | None = None
    _tar: tarfile.TarFile | None = None

    @property
    def spill_path(self) -> Path:  # not a manifest name: readers never see it
        return self.folder / f".index-{self.process}-of-{self.total}.jsonl"

    def _open_next(self) -> None:
        self.close_shard()
        name = f"shard-{self.process:04d}-of-{self.total:04d}-{self.shard_files:05d}.tar"
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.shard_files == 0:
            self.spill_path.write_text("")
        # copybufsize: one write per member (tarfile's 16 KiB default makes ~10 write calls for a 150 KB record)
        self._tar = tarfile.open(self.folder / name, "w", format=tarfile.PAX_FORMAT, copybufsize=1 << 20)  # noqa: SIM115 (open across appends)
        self._current = {"file": name, "count": 0, "ids": [], "counts": [], "offsets": [], "sizes": []}
        self.shard_files += 1

    def append(self, image_id: str, count: int, raw: bytes) -> None:
        if self._tar is None or self._current["count"] >= self.shard_size:
            self._open_next()
        data = encode_example(raw)
        info = tarfile.TarInfo(f"{image_id}.{ENCODING}")
        info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: identical inputs give identical shards
        header = info.tobuf(self._tar.format, self._tar.encoding, self._tar.errors)
        offset = self._tar.offset + len(header)
        self._tar.addfile(info, io.BytesIO(data))
        shard = self._current
        shard["count"] += 1
        shard["ids"].append(image_id)
        shard["counts"].append(count)
        shard["offsets"].append(offset)
        shard["sizes"].append(len(data))

    def close_shard(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._tar = None
        shard, self._current = self._current, None
        with self.spill_path.open("a") as spill:
            spill.write(json.dumps(shard) + "\n")
        self.examples += shard["count"]
        self.per_class.update(shard["counts"])
        if self.on_closed is not None:
            self.on_closed(self.folder / shard["file"])

    def finish(self, classes: list[int], counts: dict[str, int], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close the last shard and write this process's manifest (counts: read / written / skipped), streaming
        the shards' entries from the spill file. Returns the manifest without its shard list."""
        self.close_shard()
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "encoding": ENCODING,
            "spec_version": preprocessing_spec.SPEC_VERSION,
            "classes": list(classes),
            "process": self.process,
            "processes": self.total,
            "examples": self.examples,
            **counts,
            **(extra or {}),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / manifest_name(self.process, self.total)
        temporary = path.with_suffix(".tmp")
        with temporary.open("w") as out:
            out.write(json.dumps(header)[:-1] + ', "shards": [')
            if self.shard_files:
                with self.spill_path.open() as spill:
                    for number, line in enumerate(spill):
                        out.write((", " if number else "") + line.rstrip("\n"))
            out.write("]}")
        temporary.replace(path)  # a manifest exists only once its shards are complete
        self.spill_path.unlink(missing_ok=True)
        return header


# --- reading ---------------------------------------------------------------------------------------


def is_sharded(folder: str | Path) -> bool:
    return any(Path(folder).glob(MANIFEST_GLOB))


@dataclass(frozen=True)
class Channel:
    """Every example of a sharded split, in (process, shard, position) order."""

    folder: Path
    files: list[str]  # shard file names
    starts: np.ndarray  # int64 [shards + 1]: first global position of each shard
    offsets: np.ndarray  # int64 [N]: data offset of each example in its shard
    sizes: np.ndarray  # int64 [N]
    ids: list[str]
    counts: list[int]
    classes: list[int]
    manifests: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)

    def shard_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, positions, side="right") - 1

    def read(self, position: int, handles: dict[int, Any]) -> bytes:
        shard = int(self.shard_of(np.asarray([position]))[0])
        handle = handles.get(shard)
        if handle is None:
            handle = handles[shard] = open(self.folder / self.files[shard], "rb")  # noqa: SIM115 (kept open across reads)
        handle.seek(int(self.offsets[position]))
        return handle.read(int(self.sizes[position]))


def read_manifests(folder: Path) -> list[dict[str, Any]]:
    manifests = []
    for path in sorted(folder.glob(MANIFEST_GLOB)):
        try:
            manifests.append(json.loads(path.read_text()))
        except json.JSONDecodeError as error:
            raise ShardError(f"{path} is not a shard manifest ({error}): run prep.py --format shards again") from None
    return manifests


def check_manifests(folder: Path, manifests: list[dict[str, Any]]) -> None:
    if not manifests:
        raise ShardError(f"{folder} has no {MANIFEST_GLOB}: the channel must be a split folder written by prep.py --format shards")
    totals = {m.get("processes") for m in manifests}
    present = sorted(m.get("process") for m in manifests)
    if len(totals) != 1 or present != list(range(manifests[0]["processes"])):
        raise ShardError(f"{folder} has manifests of processes {present} of {sorted(totals)}: every prep process 0..N-1 must finish first")
    for m in manifests:
        if m.get("format") != FORMAT or m.get("encoding") != ENCODING:
            raise ShardError(f"{folder} manifest {m.get('process')} is {m.get('format')}/{m.get('encoding')}, expected {FORMAT}/{ENCODING}")
        if m.get("spec_version") != preprocessing_spec.SPEC_VERSION:
            raise ShardError(
                f"{folder} was prepared with preprocessing spec {m.get('spec_version')!r}, this code uses "
                f"{preprocessing_spec.SPEC_VERSION!r}: run prep.py again"
            )
        if m.get("classes") != manifests[0].get("classes"):
            raise ShardError(f"{folder}: manifests disagree on classes: prepare all shards with the same --classes")


def open_channel(folder: str | Path) -> Channel:
    folder = Path(folder)
    manifests = sorted(read_manifests(folder), key=lambda m: m.get("process", -1))
    check_manifests(folder, manifests)
    shards = [s for m in manifests for s in m["shards"] if s["count"]]
    lengths = [s["count"] for s in shards]
    return Channel(
        folder=folder,
        files=[s["file"] for s in shards],
        starts=np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
        offsets=np.array([o for s in shards for o in s["offsets"]], dtype=np.int64),
        sizes=np.array([n for s in shards for n in s["sizes"]], dtype=np.int64),
        ids=[i for s in shards for i in s["ids"]],
        counts=[c for s in shards for c in s["counts"]],
        classes=list(manifests[0]["classes"]),
        manifests=manifests,
    )


class ShardImages:
    """Random access to a sharded channel's pixels with numpy's indexing (int, slice, int array):
    what dataset.Split.images offers, so evaluation code reads shards unchanged."""

    dtype = np.dtype(np.uint8)

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.shape = (len(channel), *SHAPE)
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.channel)

    def __getitem__(self, key: Any) -> np.ndarray:
        positions = np.arange(len(self))[key]
        single = positions.ndim == 0
        positions = np.atleast_1d(positions)
        out = np.empty((len(positions), *SHAPE), dtype=np.uint8)
        for row, position in enumerate(positions):
            out[row] = decode_example(self.channel.read(int(position), self._handles))
        return out[0] if single else out

    def __getstate__(self) -> dict[str, Any]:  # file handles do not travel to DataLoader workers
        return {"channel": self.channel, "shape": self.shape, "_handles": {}}

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


# --- the training stream ----------------------------------------------------------------------------


def epoch_order(channel: Channel, seed: int, epoch: int) -> np.ndarray:
    """All positions, shards in an order permuted by (seed, epoch), each shard's examples in file order."""
    shards = np.random.default_rng([seed, epoch, 0x5EED]).permutation(len(channel.files))
    return np.concatenate([np.arange(channel.starts[s], channel.starts[s + 1]) for s in shards] or [np.zeros(0, np.int64)])


def rank_part(order: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank r's contiguous block of the epoch order (disjoint, sizes differ by at most one). A short block
    repeats its own first example so that every rank takes the same number of steps (DDP needs it),
    as DistributedSampler pads."""
    n = len(order)
    if n < world:
        raise ShardError(f"{n} examples cannot be split over {world} ranks")
    block = order[rank * n // world : (rank + 1) * n // world]
    per_rank = math.ceil(n / world)
    return np.concatenate([block, block[: per_rank - len(block)]])


def steps_and_batch(per_rank: int, batch_size: int) -> tuple[int, int]:
    """(batches per rank, batch size): drop a short last batch (BatchNorm cannot train on one image),
    unless it is the only batch, exactly as train.make_loader does."""
    if per_rank > batch_size:
        return per_rank // batch_size, batch_size
    return 1, per_rank
