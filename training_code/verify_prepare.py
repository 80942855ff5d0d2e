"""Bulk verification, step 1 of 3: photos + inventory records -> batch files for SageMaker Batch Transform.

    python verify_prepare.py --source s3://bucket/prefix/ --output out/                 # records: metadata/<id>.json
    python verify_prepare.py --source photos/ --records records.csv --output out/       # records: bin_id,expected_count

--source is an S3 URI or a local folder laid out like the public bucket (bin-images/<id>.jpg, and
metadata/<id>.json whose EXPECTED_QUANTITY is the record). With --records (a CSV with a header
`bin_id,expected_count`, local or s3://), the CSV's rows are the input and photos are looked up by bin id;
without it, the input is every id with a photo or a metadata file under --source (like prep.py).

Writes, streaming (memory bounded by one batch, whatever the number of photos):
- OUTPUT/batches/batch-NNNNNN.npy: application/x-npy uint8 [n, 224, 224, 3], n <= --batch-size, each photo
  decoded and preprocessed once by preprocessing_spec (the Batch Transform input; one file = one request;
  Batch Transform writes batch-NNNNNN.npy.out next to it in its output prefix).
- OUTPUT/records/records.jsonl: one line per input row, in input order:
  {"row", "bin_id", "expected", "batch", "index", "error", "detail"}; `batch`/`index` place the photo in
  a batch file (null when the photo could not be used); `error` is null or a reason code.
- OUTPUT/records/manifest.jsonl: one line per batch file: {"batch", "bin_ids"} in row order.
- OUTPUT/records/prepare.json: counts (rows, photos in batches, errors by reason), batch size, source.

Every input row appears exactly once in records.jsonl. A missing or undecodable photo, a missing or
malformed record, or a duplicate bin id is a row with its error, counted, never a failed run; only a
problem with the arguments themselves (no such folder, unreadable CSV) stops it, with exit status 2.
Container contract (SageMaker Processing): defaults /opt/ml/processing/input/{data,records} and
/opt/ml/processing/output; arguments override them.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import preprocessing_spec
import verification
from prep import PrepError, Skip, open_source

PROCESSING_SOURCE = "/opt/ml/processing/input/data"
PROCESSING_RECORDS = "/opt/ml/processing/input/records"
PROCESSING_OUTPUT = "/opt/ml/processing/output"
# 32 x 150,528 bytes = 4.8 MB per file: under Batch Transform's default MaxPayloadInMB (6) and inference.py's
# MAX_BATCH (64).
DEFAULT_BATCH_SIZE = 32
MAX_BATCH_SIZE = 64
BIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a file name under bin-images/, no path tricks
MAX_CSV_FIELD = 1000

# Reason codes (summary.json counts rows by these).
MISSING_PHOTO = "missing_photo"
UNDECODABLE_PHOTO = "undecodable_photo"
PHOTO_TOO_LARGE = "photo_too_large"
DOWNLOAD_FAILED = "download_failed"
MISSING_RECORD = "missing_record"
MALFORMED_RECORD = "malformed_record"
DUPLICATE_RECORD = "duplicate_record"


class Row:
    """One input row. `needs_record`: the record is read later (metadata/<id>.json, in parallel); `use_photo`:
    the photo is to be read (false for a duplicate or a bin id that is not a file name)."""

    __slots__ = ("bin_id", "detail", "error", "expected", "needs_record", "row", "use_photo")

    def __init__(self, row: int, bin_id: str, expected: int | None = None, error: str | None = None, detail: str = "") -> None:
        self.row, self.bin_id, self.expected, self.error, self.detail = row, bin_id, expected, error, detail
        self.needs_record = False
        self.use_photo = BIN_ID.fullmatch(bin_id) is not None


# --- records ---------------------------------------------------------------------------------------


def _open_text(location: str, source: Any) -> Any:
    """A CSV from a local path (a folder: its one .csv file) or an s3:// URI."""
    if location.startswith("s3://"):
        bucket, _, key = location.removeprefix("s3://").partition("/")
        client = getattr(source, "client", None)
        try:
            if client is None:
                import boto3

                client = boto3.client("s3")
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as error:  # botocore's ClientError/BotoCoreError: the message names the cause
            raise PrepError(f"--records {location} cannot be read ({error})") from None
        return codecs.getreader("utf-8-sig")(body, errors="replace")  # streamed line by line, never held whole
    path = Path(location)
    if path.is_dir():
        found = sorted(path.glob("*.csv"))
        if len(found) != 1:
            raise PrepError(f"--records {location} is a folder with {len(found)} .csv files: expected exactly one (bin_id,expected_count)")
        path = found[0]
    try:
        return open(path, encoding="utf-8-sig", errors="replace", newline="")  # noqa: SIM115 - closed by the caller
    except OSError as error:
        raise PrepError(
            f"--records {location} cannot be read ({error.strerror}): give a CSV file with the header bin_id,expected_count"
        ) from None


def csv_rows(handle: Any) -> Iterator[Row]:
    """Rows of a `bin_id,expected_count` CSV; a malformed line is a Row with its error, not an exception."""
    csv.field_size_limit(MAX_CSV_FIELD)
    reader = csv.reader(handle)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as error:
        raise PrepError(f"the records CSV's header cannot be read ({error}): expected bin_id,expected_count") from None
    if "bin_id" not in header or "expected_count" not in header:
        raise PrepError(f"the records CSV's header is {header[:5]}: expected the columns bin_id,expected_count")
    id_col, count_col = header.index("bin_id"), header.index("expected_count")
    number = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # an over-long field or a stray quote: this line is malformed, the rest still count
            number += 1
            yield Row(number, f"line-{reader.line_num}", error=MALFORMED_RECORD, detail=f"line {reader.line_num}: {error}")
            continue
        if not any(f.strip() for f in fields):
            continue  # blank lines are not rows
        number += 1
        bin_id = fields[id_col].strip() if len(fields) > id_col else ""
        label = bin_id if BIN_ID.fullmatch(bin_id) else f"line-{reader.line_num}"
        if not BIN_ID.fullmatch(bin_id):
            yield Row(
                number,
                label,
                error=MALFORMED_RECORD,
                detail=f"line {reader.line_num}: bin_id {bin_id[:40]!r} is not a photo name (letters, digits, . _ -)",
            )
            continue
        if len(fields) <= count_col:
            yield Row(number, bin_id, error=MALFORMED_RECORD, detail=f"line {reader.line_num}: no expected_count")
            continue
        try:
            expected = verification.parse_expected_count(fields[count_col], "expected_count")
        except verification.VerificationError as error:
            yield Row(number, bin_id, error=MALFORMED_RECORD, detail=f"line {reader.line_num}: {error}")
            continue
        yield Row(number, bin_id, expected)


def metadata_rows(source: Any) -> Iterator[Row]:
    """One Row per id with a photo or a metadata file; the record (EXPECTED_QUANTITY) is read by read_record."""
    for number, bin_id in enumerate(source.list_ids(), start=1):
        if not BIN_ID.fullmatch(bin_id):
            yield Row(
                number,
                f"row-{number}",
                error=MALFORMED_RECORD,
                detail=f"the id {bin_id[:40]!r} is not a photo name (letters, digits, . _ -)",
            )
            continue
        row = Row(number, bin_id)
        row.needs_record = True
        yield row


def read_record(source: Any, row: Row) -> None:
    """Fill row.expected from metadata/<id>.json, or set its error."""
    try:
        data = source.read(f"metadata/{row.bin_id}.json")
    except Skip as skip:
        row.error, row.detail = DOWNLOAD_FAILED, f"metadata/{row.bin_id}.json: {skip}"
        return
    if data is None:
        row.error, row.detail = MISSING_RECORD, f"no metadata/{row.bin_id}.json"
        return
    try:
        value = json.loads(data)["EXPECTED_QUANTITY"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        row.error, row.detail = MALFORMED_RECORD, f"metadata/{row.bin_id}.json is not JSON with EXPECTED_QUANTITY"
        return
    if isinstance(value, str):  # the bucket's metadata holds numbers; a string record is malformed
        row.error, row.detail = (
            MALFORMED_RECORD,
            f"metadata/{row.bin_id}.json: EXPECTED_QUANTITY is the string {value[:40]!r}, not a number",
        )
        return
    try:
        row.expected = verification.parse_expected_count(value, "EXPECTED_QUANTITY")
    except verification.VerificationError as error:
        row.error, row.detail = MALFORMED_RECORD, f"metadata/{row.bin_id}.json: {error}"


# --- photos ----------------------------------------------------------------------------------------


def load_photo(source: Any, bin_id: str) -> tuple[bytes | None, str | None, str]:
    """-> (224x224x3 uint8 bytes, None, "") or (None, reason, detail)."""
    try:
        data = source.read(f"bin-images/{bin_id}.jpg")
    except Skip as skip:
        return None, DOWNLOAD_FAILED, str(skip)
    if data is None:
        return None, MISSING_PHOTO, f"no bin-images/{bin_id}.jpg"
    try:
        return preprocessing_spec.preprocess_bytes(data), None, ""  # full decode: what training saw
    except preprocessing_spec.ImageError as error:
        return None, PHOTO_TOO_LARGE if error.code == "image_too_large" else UNDECODABLE_PHOTO, f"{error.code}: {error.message}"


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def batched_rows(rows: Iterator[Row], batch_size: int) -> Iterator[list[Row]]:
    """Groups of rows holding at most batch_size photos; a repeated bin id is marked a duplicate (no photo)."""
    seen: set[str] = set()
    pending: list[Row] = []
    photos_pending = 0
    for row in rows:
        if row.use_photo:
            if row.bin_id in seen:
                row.error, row.detail = DUPLICATE_RECORD, f"bin {row.bin_id} appears in an earlier row, which is the one verified"
                row.use_photo = row.needs_record = False
            else:
                seen.add(row.bin_id)
                photos_pending += 1
        pending.append(row)
        # At most batch_size photos per file; rows without a photo ride along (bounded by the same count).
        if photos_pending >= batch_size or len(pending) >= 4 * batch_size:
            yield pending
            pending, photos_pending = [], 0
    if pending:
        yield pending


class BatchWriter:
    """Writes one batch file per group of rows, its manifest line, and every row's line (input order)."""

    def __init__(self, store: Any, pool: ThreadPoolExecutor, batches_dir: Path, records_out: Any, manifest_out: Any) -> None:
        self.store, self.pool, self.batches_dir = store, pool, batches_dir
        self.records_out, self.manifest_out = records_out, manifest_out
        self.errors: Counter[str] = Counter()
        self.counts = {"rows": 0, "photos": 0, "batches": 0}

    def _resolve(self, row: Row) -> tuple[bytes | None, str | None, str]:
        if row.needs_record:
            read_record(self.store, row)
        return load_photo(self.store, row.bin_id) if row.use_photo else (None, None, "")

    def write(self, pending: list[Row]) -> None:
        """Read one batch's records and photos in parallel, write the batch file, then its rows."""
        photos = list(self.pool.map(self._resolve, pending))
        images: list[bytes] = []
        name = f"batch-{self.counts['batches']:06d}.npy"
        placed: list[tuple[Row, int | None]] = []
        for row, (raw, reason, detail) in zip(pending, photos, strict=True):
            if raw is None:
                if row.error is None:  # a photo problem; a record problem found first is the row's error
                    row.error, row.detail = reason, detail
                placed.append((row, None))
            else:  # a row with a bad record still gets its photo counted (the report shows "predicted")
                placed.append((row, len(images)))
                images.append(raw)
        if images:
            _write_atomic(self.batches_dir / name, preprocessing_spec.encode_npy_uint8(images))
            self.manifest_out.write(json.dumps({"batch": name, "bin_ids": [r.bin_id for r, i in placed if i is not None]}) + "\n")
            self.counts["batches"] += 1
            self.counts["photos"] += len(images)
        for row, index in placed:
            self.errors.update([row.error] if row.error else [])
            line = {"row": row.row, "bin_id": row.bin_id, "expected": row.expected, "batch": name if index is not None else None}
            line.update(index=index, error=row.error, detail=row.detail or None)
            self.records_out.write(json.dumps(line) + "\n")
        self.counts["rows"] += len(pending)


def _output_dirs(output: Path) -> tuple[Path, Path]:
    batches_dir, records_dir = output / "batches", output / "records"
    batches_dir.mkdir(parents=True, exist_ok=True)
    records_dir.mkdir(parents=True, exist_ok=True)
    for stale in batches_dir.glob("batch-*.npy"):  # a rerun must not leave batch files of an earlier input behind
        stale.unlink()
    return batches_dir, records_dir


def prepare(
    source: str,
    output: str | Path,
    records: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 4,
    retries: int = 5,
    progress: bool = False,
) -> dict[str, Any]:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise PrepError(f"--batch-size {batch_size} is out of range: 1 to {MAX_BATCH_SIZE} (inference.py's MAX_BATCH)")
    store = open_source(source, workers, retries)
    batches_dir, records_dir = _output_dirs(Path(output))
    handle = _open_text(records, store) if records else None
    rows = csv_rows(handle) if handle is not None else metadata_rows(store)
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="prepare", unit="photo", mininterval=1.0)
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        open(records_dir / "records.jsonl.tmp", "w") as records_out,
        open(records_dir / "manifest.jsonl.tmp", "w") as manifest_out,
    ):
        writer = BatchWriter(store, pool, batches_dir, records_out, manifest_out)
        try:
            for pending in batched_rows(rows, batch_size):
                writer.write(pending)
                if bar is not None:
                    bar.update(len(pending))
        finally:
            if handle is not None:
                handle.close()
            if bar is not None:
                bar.close()
    os.replace(records_dir / "records.jsonl.tmp", records_dir / "records.jsonl")
    os.replace(records_dir / "manifest.jsonl.tmp", records_dir / "manifest.jsonl")
    summary = {
        **writer.counts,
        "errors": dict(sorted(writer.errors.items())),
        "batch_size": batch_size,
        "source": source,
        "records": records or "metadata/<id>.json",
        "spec_version": preprocessing_spec.SPEC_VERSION,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (records_dir / "prepare.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def get_args_parser() -> argparse.ArgumentParser:
    on_processing = Path("/opt/ml/processing").is_dir()
    parser = argparse.ArgumentParser(description="Preprocess bin photos into Batch Transform batch files plus a records file.")
    parser.add_argument(
        "--source",
        default=PROCESSING_SOURCE if on_processing else None,
        required=not on_processing,
        help="s3://bucket/prefix/ or a folder laid out like the bucket (bin-images/<id>.jpg [, metadata/<id>.json])",
    )
    default_records = PROCESSING_RECORDS if on_processing and Path(PROCESSING_RECORDS).is_dir() else None
    parser.add_argument(
        "--records",
        default=default_records,
        help="CSV bin_id,expected_count (file, folder or s3://); default or '': metadata/<id>.json (the Verify bins state machine passes '')",
    )
    parser.add_argument("--output", default=PROCESSING_OUTPUT if on_processing else None, required=not on_processing, help="output folder")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"photos per batch file (1-{MAX_BATCH_SIZE})")
    parser.add_argument("--workers", type=int, default=min(16, 2 * (os.cpu_count() or 1)), help="parallel reads/decodes")
    parser.add_argument("--retries", type=int, default=5, help="S3 attempts per object")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        summary = prepare(args.source, args.output, args.records or None, args.batch_size, args.workers, args.retries, args.progress)
    except PrepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
