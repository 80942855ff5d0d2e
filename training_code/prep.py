"""Prepare the training channels: the pipeline's Prepare step (SageMaker Processing) and a local command.

    python prep.py --source s3://aft-vbi-pds/ --file-list file_list.json --output prepared/
    python prep.py --source ../shared/abid --output prepared/

--source is an S3 URI or a local folder laid out like the public bucket (bin-images/<id>.jpg,
metadata/<id>.json). Every photo whose count is in --classes is decoded, checked and preprocessed once by
the spec; the valid ones are split 60/20/20 per class, by a hash of the id, and written as
OUTPUT/{train,validation,test}/ (dataset.py's format: images.npy + labels.json) plus OUTPUT/summary.json.
Corrupt photos, missing files and counts outside the classes are skipped and listed in the summary, and
read = written + skipped always holds.

    python prep.py --source s3://aft-vbi-pds/ --output prepared/ --format shards [--shard i/N]

`--format shards` (issue 16; for datasets that do not fit one array) streams instead: this process takes
the ids whose hash puts them in share i of N (`--shard`, else the SageMaker Processing host index from
/opt/ml/config/resourceconfig.json, else 0/1), splits each id by a hash threshold of the id alone (so the
split does not depend on N), and appends each photo to its split's current tar shard (shards.py), rolling
over every --shard-size examples. Each split folder gets `manifest-<i>-of-<N>.json` and OUTPUT gets
`summary-<i>-of-<N>.json`; counts reconcile per process and split. Memory and disk are bounded by a shard
and this process's share, not by the dataset.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dataset_layout
import numpy as np
import preprocessing_spec
import shard_upload
import shards
from tqdm import tqdm

SPLITS = (("train", 0.6), ("validation", 0.2), ("test", 0.2))
DEFAULT_CLASSES = (1, 2, 3, 4, 5)
# SageMaker Processing's conventional paths; the pipeline may override them with arguments.
PROCESSING_SOURCE = "/opt/ml/processing/input/data"
PROCESSING_OUTPUT = "/opt/ml/processing/output"
# Give up (instead of writing a silently smaller dataset) when more downloads than this fail.
MAX_DOWNLOAD_FAILURE_SHARE = 0.05
# The dataset's ids are decimal numbers: these split a folder's listing into 10 key ranges listed at once.
LISTING_BOUNDS = tuple("123456789")
LIST_PAGE_SIZE = 1000  # S3's maximum keys per ListObjectsV2 page
CHUNK = 256  # rows copied at a time when writing a split's array
IN_FLIGHT_PER_WORKER = 4  # parallel(): results allowed ahead of the consumer, per worker
RESOURCE_CONFIG = "/opt/ml/config/resourceconfig.json"  # where SageMaker tells a job's instance who it is
FORMATS = ("arrays", "shards")  # arrays: images.npy + labels.json (the default); shards: shards.py


class PrepError(Exception):
    """A problem the user must fix (bad argument, unreadable source); printed without a traceback."""


class Skip(Exception):
    """One id that cannot be used; `reason` is the summary's key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


# --- sources ---------------------------------------------------------------------------------------


class LocalSource:
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        if not (self.root / dataset_layout.METADATA_DIR).is_dir() and not (self.root / dataset_layout.IMAGES_DIR).is_dir():
            raise PrepError(f"--source {root} has neither metadata/ nor bin-images/: point it at a folder laid out like s3://aft-vbi-pds/")

    def list_ids(self) -> list[str]:
        ids: set[str] = set()
        for folder, suffix in (
            (dataset_layout.IMAGES_DIR, dataset_layout.IMAGE_SUFFIX),
            (dataset_layout.METADATA_DIR, dataset_layout.METADATA_SUFFIX),
        ):
            ids.update(_stems(self.root / folder, suffix))
        return sorted(ids)

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None


def _stems(folder: Path, suffix: str) -> Iterator[str]:
    """File names ending in `suffix`, without it, streamed from the directory (Path.glob holds a Path and a
    DirEntry per file: ~14 MB for 20k files, which would make a prep process's memory grow with its source)."""
    if not folder.is_dir():
        return
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(suffix) and entry.is_file():
                yield entry.name[: -len(suffix)]


class S3Source:
    """Parallel-safe S3 reader; unsigned requests when no credentials are configured (the bucket is public)."""

    def __init__(self, uri: str, workers: int, retries: int) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        try:
            self.bucket, self.prefix = shard_upload.parse_s3_prefix(uri)
        except ValueError:
            raise PrepError(f"--source {uri} has no bucket name: expected s3://bucket/ or s3://bucket/prefix/") from None
        session = boto3.Session()
        # Standard retry mode backs off on throttling, 5xx and connection errors.
        pool = max(2 * (len(LISTING_BOUNDS) + 1), workers)  # the parallel listing's ranges, or the downloads
        config = Config(retries={"max_attempts": retries, "mode": "standard"}, max_pool_connections=pool)
        if session.get_credentials() is None:
            config = config.merge(Config(signature_version=UNSIGNED))
        self.client = session.client("s3", config=config)

    def list_ids(self) -> list[str]:
        """Every id with a photo or metadata. The two folders are listed in key ranges at once (LISTING_BOUNDS):
        a whole-bucket listing is ~1,100 pages of 1,000 keys, one after another per range."""
        folders = ((dataset_layout.METADATA_DIR, dataset_layout.METADATA_SUFFIX), (dataset_layout.IMAGES_DIR, dataset_layout.IMAGE_SUFFIX))
        ranges = [(f"{self.prefix}{folder}/", suffix, low, high) for folder, suffix in folders for low, high in key_ranges(LISTING_BOUNDS)]
        with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
            return sorted({i for part in pool.map(lambda r: self.list_range(*r), ranges) for i in part})

    def list_range(self, folder: str, suffix: str, low: str | None, high: str | None) -> list[str]:
        """Ids of keys `folder + low` < key < `folder + high` (open ends when None), paging; stops at `high`."""
        paginator = self.client.get_paginator("list_objects_v2")
        start = {"StartAfter": folder + low} if low else {}
        ids = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=folder, PaginationConfig={"PageSize": LIST_PAGE_SIZE}, **start):
            for key in (o["Key"] for o in page.get("Contents", [])):
                if high is not None and key >= folder + high:
                    return ids
                if key.endswith(suffix):
                    ids.append(key.rsplit("/", 1)[-1].removesuffix(suffix))
        return ids

    def read(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise Skip("download_failed", str(error)) from None
        except BotoCoreError as error:
            raise Skip("download_failed", str(error)) from None


def key_ranges(bounds: tuple[str, ...]) -> list[tuple[str | None, str | None]]:
    """Consecutive (low, high) ranges covering every key once: (None, b1), (b1, b2), ..., (bn, None).
    Only a key equal to a bound itself (`metadata/5`, no suffix, not an id's file) falls in none."""
    edges: list[str | None] = [None, *bounds, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


def open_source(source: str, workers: int, retries: int) -> LocalSource | S3Source:
    if source.startswith("s3://"):
        return S3Source(source, workers, retries)
    if not Path(source).is_dir():
        raise PrepError(f"--source {source} is not a folder or an s3:// URI: give the dataset's location")
    return LocalSource(source)


# --- the steps -------------------------------------------------------------------------------------


def ids_to_read(source: LocalSource | S3Source, file_list: str | None) -> list[str]:
    """The file list's ids (dataset_layout's format), else every id in the source."""
    if not file_list:
        return source.list_ids()
    try:
        return dataset_layout.read_file_list(file_list)
    except dataset_layout.FileListError as error:
        raise PrepError(str(error)) from None


def read_count(source: LocalSource | S3Source, image_id: str, classes: tuple[int, ...], keep_outside: bool = False) -> int:
    data = source.read(dataset_layout.metadata_key(image_id))
    if data is None:
        raise Skip("missing_metadata")
    try:
        count = dataset_layout.count_from_metadata(data)
    except dataset_layout.MetadataError as error:
        raise Skip("bad_metadata", str(error)) from None
    if count not in classes and not (keep_outside and dataset_layout.is_auxiliary_count(count, classes)):
        raise Skip("count_outside_classes", str(count))
    return count


def read_image(source: LocalSource | S3Source, image_id: str) -> bytes:
    data = source.read(dataset_layout.image_key(image_id))
    if data is None:
        raise Skip("missing_image")
    try:
        return preprocessing_spec.preprocess_bytes(data)  # full decode: the training reference
    except preprocessing_spec.ImageError as error:
        raise Skip(
            "corrupt_image" if error.code in ("corrupt_image", "not_an_image", "empty_image") else error.code, error.message
        ) from None


def _attempt(work: Callable[[str], Any], image_id: str) -> tuple[str, Any, Skip | None]:
    try:
        return image_id, work(image_id), None
    except Skip as skip:
        return image_id, None, skip


def parallel(work: Callable[[str], Any], ids: list[str], workers: int, desc: str) -> Iterator[tuple[str, Any, Skip | None]]:
    """(id, result, skip) in the order of `ids`. A sliding window of IN_FLIGHT_PER_WORKER x workers ids: the
    workers never run further ahead of the consumer than that, so memory holds at most that many results
    (~150 KB each), however many ids there are."""
    interactive = sys.stderr.isatty()
    window = IN_FLIGHT_PER_WORKER * workers
    pending: deque[Future[tuple[str, Any, Skip | None]]] = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(total=len(ids), desc=desc, mininterval=0.5 if interactive else 15) as bar:
        for image_id in ids:
            pending.append(pool.submit(_attempt, work, image_id))
            if len(pending) >= window:
                bar.update()
                yield pending.popleft().result()
        while pending:
            bar.update()
            yield pending.popleft().result()


def split_of(image_ids: Iterable[str], fractions: tuple[tuple[str, float], ...] = SPLITS) -> dict[str, str]:
    """Within one class: rank ids by SHA-256 of the id, cut 60/20/20. Exact proportions per class, and a
    given set of ids always splits the same way (Python's hash() is salted per process, sha256 is not)."""
    ranked = sorted(image_ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())
    result, start, cumulative = {}, 0, 0.0
    for index, (name, share) in enumerate(fractions):
        cumulative += share
        end = len(ranked) if index == len(fractions) - 1 else round(len(ranked) * cumulative)
        result.update({i: name for i in ranked[start:end]})
        start = end
    return result


def write_channel(folder: Path, rows: np.ndarray, images: np.ndarray, ids: list[str], counts: list[int], classes: tuple[int, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(
        folder / dataset_layout.SPLIT_IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(len(rows), *preprocessing_spec.SHAPE)
    )
    for start in range(0, len(rows), CHUNK):
        out[start : start + CHUNK] = images[rows[start : start + CHUNK]]
    out.flush()
    del out
    labels = {"ids": ids, "counts": counts, "classes": list(classes), "spec_version": preprocessing_spec.SPEC_VERSION}
    (folder / dataset_layout.SPLIT_LABELS_FILE).write_text(json.dumps(labels))


def prepare(
    source_uri: str,
    output: str,
    classes: tuple[int, ...] = DEFAULT_CLASSES,
    file_list: str | None = None,
    workers: int = 8,
    retries: int = 5,
    auxiliary: bool = False,
) -> dict[str, Any]:
    """The arrays format. With `auxiliary`, the photos with fewer or more items than `classes` are written to
    OUTPUT/train/auxiliary/ (train.py trains on them as two extra outputs) instead of being skipped."""
    started = time.monotonic()
    source = open_source(source_uri, workers, retries)
    ids = ids_to_read(source, file_list)
    if not ids:
        raise PrepError(f"no ids found in {file_list or source_uri}: expected bin-images/<id>.jpg and metadata/<id>.json")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, list[str]] = {}

    def skip(image_id: str, why: Skip) -> None:
        skipped.setdefault(why.reason, []).append(image_id)

    counts: dict[str, int] = {}
    for image_id, count, why in parallel(lambda i: read_count(source, i, classes, auxiliary), ids, workers, "metadata"):
        if why:
            skip(image_id, why)
        else:
            counts[image_id] = count
    candidates = sorted(counts)
    # Valid images go to one temporary array in id order; the split copies rows from it, so no split
    # needs to be known before decoding and memory stays bounded.
    staging = out / ".staging.npy"
    images = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8, shape=(max(1, len(candidates)), *preprocessing_spec.SHAPE))
    valid: list[str] = []
    for image_id, raw, why in parallel(lambda i: read_image(source, i), candidates, workers, "images"):
        if why:
            skip(image_id, why)
        else:
            images[len(valid)] = np.frombuffer(raw, dtype=np.uint8).reshape(preprocessing_spec.SHAPE)
            valid.append(image_id)
    failed = len(skipped.get("download_failed", []))
    if failed > MAX_DOWNLOAD_FAILURE_SHARE * len(ids):
        staging.unlink()
        raise PrepError(
            f"{failed} of {len(ids)} downloads failed after {retries} retries each: check network access to {source_uri} and run again"
        )
    if not valid:
        staging.unlink()
        raise PrepError(
            f"none of the {len(ids)} ids has a readable photo with a count in {list(classes)}: see the skip reasons {sorted(skipped)}"
        )

    row_of = {image_id: row for row, image_id in enumerate(valid)}
    assignment: dict[str, str] = {}
    for count in classes:
        assignment.update(split_of([i for i in valid if counts[i] == count]))
    splits_summary = {}
    for name, _ in SPLITS:
        members = [i for i in valid if assignment.get(i) == name]  # id order: deterministic files
        member_counts = [counts[i] for i in members]
        write_channel(out / name, np.array([row_of[i] for i in members], dtype=np.int64), images, members, member_counts, classes)
        per_class = Counter(member_counts)
        splits_summary[name] = {"total": len(members), "per_class": {str(c): per_class.get(c, 0) for c in classes}}
    auxiliary_summary = None
    if auxiliary:  # every valid photo outside the classes: never in validation or test, so never scored
        members = [i for i in valid if i not in assignment]
        member_counts = [counts[i] for i in members]
        if members:  # no folder without photos: train.py --auxiliary auto then trains on the classes alone
            folder = out / "train" / dataset_layout.AUXILIARY_FOLDER
            write_channel(folder, np.array([row_of[i] for i in members], dtype=np.int64), images, members, member_counts, classes)
        auxiliary_summary = {"total": len(members), "per_count": {str(c): n for c, n in sorted(Counter(member_counts).items())}}
    del images
    staging.unlink()

    skipped_total = sum(len(v) for v in skipped.values())
    summary = {
        "source": source_uri,
        "file_list": file_list,
        "classes": list(classes),
        "spec_version": preprocessing_spec.SPEC_VERSION,
        "format": "images.npy (uint8 [N,224,224,3]) + labels.json per split",
        "read": len(ids),
        "written": len(valid),
        "skipped": skipped_total,
        "skipped_by_reason": {reason: len(v) for reason, v in sorted(skipped.items())},
        "skipped_ids": {reason: sorted(v) for reason, v in sorted(skipped.items())},
        "splits": splits_summary,
        "auxiliary": auxiliary_summary,
        "duration_seconds": round(time.monotonic() - started, 1),
    }
    assert summary["read"] == summary["written"] + summary["skipped"], "counts must reconcile"
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --- shard mode (issue 16) ---------------------------------------------------------------------------


def processing_host_shard(path: str = RESOURCE_CONFIG) -> tuple[int, int] | None:
    """(this host's index, number of hosts) from a SageMaker job's resource config; None outside one."""
    try:
        config = json.loads(Path(path).read_text())
        hosts = list(config["hosts"])
        return hosts.index(config["current_host"]), len(hosts)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_example(source: LocalSource | S3Source, image_id: str, classes: tuple[int, ...]) -> tuple[int, bytes]:
    """(count, preprocessed pixels) of one id, or Skip: the metadata first, the photo only if it counts."""
    count = read_count(source, image_id, classes)
    return count, read_image(source, image_id)


def write_shards(
    source: LocalSource | S3Source,
    ids: list[str],
    out: Path,
    classes: tuple[int, ...],
    shard: tuple[int, int],
    workers: int,
    shard_size: int,
    on_closed: Callable[[Path], None] | None = None,
) -> tuple[dict[str, shards.ShardWriter], dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Stream this process's ids into per-split shard writers: (writers, per-split counts, skipped ids by reason).
    `on_closed` gets each finished shard file."""
    index, total = shard
    writers = {name: shards.ShardWriter(out / name, index, total, shard_size, on_closed) for name, _ in SPLITS}
    tallies: dict[str, dict[str, Any]] = {name: {"read": 0, "written": 0, "skipped": 0, "skipped_by_reason": {}} for name, _ in SPLITS}
    skipped: dict[str, list[str]] = {}
    for image_id, result, why in parallel(lambda i: read_example(source, i, classes), ids, workers, f"shard {index}/{total}"):
        split = shards.split_by_threshold(image_id, SPLITS)
        tally = tallies[split]
        tally["read"] += 1
        if why:
            skipped.setdefault(why.reason, []).append(image_id)
            tally["skipped"] += 1
            tally["skipped_by_reason"][why.reason] = tally["skipped_by_reason"].get(why.reason, 0) + 1
        else:
            writers[split].append(image_id, result[0], result[1])
            tally["written"] += 1
    return writers, tallies, skipped


def prepare_shards(
    source_uri: str,
    output: str,
    classes: tuple[int, ...] = DEFAULT_CLASSES,
    file_list: str | None = None,
    workers: int = 8,
    retries: int = 5,
    shard: tuple[int, int] = (0, 1),
    shard_size: int = shards.DEFAULT_SHARD_SIZE,
    upload_to: str | None = None,
) -> dict[str, Any]:
    """`--format shards`: this process's share of the ids as tar shards + a manifest per split.

    With `upload_to` (s3://bucket/prefix/), each finished shard is uploaded there and deleted while prep
    goes on (shard_upload.py: the disk holds about one shard per split), then the manifests and the summary.
    """
    if upload_to is None:
        return _prepare_shards(source_uri, output, classes, file_list, workers, retries, shard, shard_size, None)
    uploader = shard_upload.ShardUploader(upload_to, Path(output), retries)
    try:
        summary = _prepare_shards(source_uri, output, classes, file_list, workers, retries, shard, shard_size, uploader)
        for path in [*(Path(output) / name / shards.manifest_name(*shard) for name, _ in SPLITS), _summary_path(output, shard)]:
            uploader.submit(path, delete=False)  # after the shards (one FIFO thread): a listed shard is always there
        uploader.drain()
    except shard_upload.UploadError as error:
        raise PrepError(str(error)) from None
    finally:
        uploader.close()
    return summary


def _summary_path(output: str, shard: tuple[int, int]) -> Path:
    return Path(output) / f"summary-{shard[0]}-of-{shard[1]}.json"


def _prepare_shards(
    source_uri: str,
    output: str,
    classes: tuple[int, ...],
    file_list: str | None,
    workers: int,
    retries: int,
    shard: tuple[int, int],
    shard_size: int,
    uploader: shard_upload.ShardUploader | None,
) -> dict[str, Any]:
    started = time.monotonic()
    index, total = shard
    source = open_source(source_uri, workers, retries)
    every_id = ids_to_read(source, file_list)
    if not every_id:
        raise PrepError(f"no ids found in {file_list or source_uri}: expected bin-images/<id>.jpg and metadata/<id>.json")
    ids = [i for i in every_id if shards.owner_of(i, total) == index]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    on_closed = (lambda path: uploader.submit(path, delete=True)) if uploader else None
    writers, tallies, skipped = write_shards(source, ids, out, classes, shard, workers, shard_size, on_closed)
    failed = len(skipped.get("download_failed", []))
    if failed > MAX_DOWNLOAD_FAILURE_SHARE * max(1, len(ids)):
        raise PrepError(
            f"{failed} of {len(ids)} downloads failed after {retries} retries each: check network access to {source_uri} and run again"
        )
    splits_summary = {}
    for name, writer in writers.items():
        manifest = writer.finish(list(classes), tallies[name])
        splits_summary[name] = {
            **tallies[name],
            "total": manifest["examples"],
            "shards": writer.shard_files,
            "per_class": {str(c): writer.per_class.get(c, 0) for c in classes},
        }
    summary = {
        "source": source_uri,
        "file_list": file_list,
        "classes": list(classes),
        "spec_version": preprocessing_spec.SPEC_VERSION,
        "format": f"{shards.FORMAT} ({shards.ENCODING} tar shards) + manifest-<i>-of-<N>.json per split",
        "shard": [index, total],
        "ids_listed": len(every_id),
        "read": len(ids),
        "written": sum(t["written"] for t in tallies.values()),
        "skipped": sum(len(v) for v in skipped.values()),
        "skipped_by_reason": {reason: len(v) for reason, v in sorted(skipped.items())},
        "skipped_ids": {reason: sorted(v) for reason, v in sorted(skipped.items())},
        "splits": splits_summary,
        "uploaded_to": uploader and f"s3://{uploader.bucket}/{uploader.prefix}",
        "shard_files_uploaded": len(uploader.drain()) if uploader else 0,
        "duration_seconds": round(time.monotonic() - started, 1),
    }
    assert summary["read"] == summary["written"] + summary["skipped"], "counts must reconcile"
    _summary_path(output, shard).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _shard(text: str) -> tuple[int, int]:
    index, slash, total = text.partition("/")
    try:
        value = (int(index), int(total))
    except ValueError:
        value = (-1, 0)
    if not slash or value[1] < 1 or not 0 <= value[0] < value[1]:
        raise argparse.ArgumentTypeError(f"--shard {text!r} is invalid: expected i/N with 0 <= i < N, e.g. 0/4")
    return value


def _classes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--classes {text!r} is invalid: expected comma-separated item counts like 1,2,3,4,5") from None
    if len(values) < 2 or list(values) != sorted(set(values)) or values[0] < 0:
        raise argparse.ArgumentTypeError(f"--classes {text!r} is invalid: expected at least two distinct counts >= 0 in increasing order")
    return values


def get_args_parser() -> argparse.ArgumentParser:
    on_processing = Path("/opt/ml/processing").is_dir()
    parser = argparse.ArgumentParser(description="Decode, check, preprocess and split bin photos into training channels.")
    parser.add_argument(
        "--source",
        default=PROCESSING_SOURCE if on_processing else None,
        required=not on_processing,
        help="s3://bucket/prefix/ or a local folder",
    )
    parser.add_argument(
        "--file-list",
        default=None,
        help="optional Udacity file_list.json choosing the ids (dataset_layout.py; default: every id in the source)",
    )
    parser.add_argument("--classes", type=_classes, default=DEFAULT_CLASSES, help="comma-separated item counts to keep (default 1,2,3,4,5)")
    parser.add_argument("--output", default=PROCESSING_OUTPUT if on_processing else None, required=not on_processing, help="output folder")
    parser.add_argument("--workers", type=int, default=min(32, 4 * (os.cpu_count() or 1)), help="parallel downloads/decodes")
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        help="retries per S3 request after the first attempt (botocore standard mode: backoff on throttling, 5xx, connection errors)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="arrays",
        help="arrays: images.npy + labels.json per split (default); shards: streaming tar shards",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        default=None,
        help="with --format shards: i/N, this process's share of the ids (default: the Processing host's index, else 0/1)",
    )
    parser.add_argument("--shard-size", type=int, default=shards.DEFAULT_SHARD_SIZE, help="examples per shard file (--format shards)")
    parser.add_argument(
        "--upload-to",
        default=None,
        help="with --format shards: s3://bucket/prefix/ to upload each finished shard to (then deleted here, so the disk "
        "holds about one shard per split), followed by the manifests and the summary",
    )
    parser.add_argument(
        "--auxiliary",
        action="store_true",
        help="also write the photos with fewer or more items than --classes to OUTPUT/train/auxiliary/ instead of skipping "
        "them (train.py trains on them as 'fewer' / 'more'; arrays format only)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.workers < 1 or args.retries < 1 or args.shard_size < 1:
        print("error: --workers, --retries and --shard-size must be at least 1", file=sys.stderr)
        return 2
    if args.format == "arrays" and (args.shard is not None or args.upload_to is not None):
        print("error: --shard and --upload-to need --format shards", file=sys.stderr)
        return 2
    if args.format == "shards" and args.auxiliary:
        print("error: --auxiliary is written in the arrays format only: leave out --format shards or --auxiliary", file=sys.stderr)
        return 2
    if args.upload_to is not None:
        try:
            shard_upload.parse_s3_prefix(args.upload_to)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        if args.format == "shards":
            shard = args.shard or processing_host_shard() or (0, 1)
            summary = prepare_shards(
                args.source, args.output, args.classes, args.file_list, args.workers, args.retries, shard, args.shard_size, args.upload_to
            )
        else:
            summary = prepare(args.source, args.output, args.classes, args.file_list, args.workers, args.retries, args.auxiliary)
    except PrepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    splits = ", ".join(f"{name} {s['total']}" for name, s in summary["splits"].items())
    if summary.get("auxiliary"):
        splits += f", auxiliary {summary['auxiliary']['total']}"
    print(f"read {summary['read']}, written {summary['written']} ({splits}), skipped {summary['skipped']} {summary['skipped_by_reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
