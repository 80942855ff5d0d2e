"""Upload each finished shard to S3 while prep goes on, then delete it (issue 16, `prep.py --upload-to`).

Without it a Processing instance keeps every shard it writes until the job ends (the ProcessingOutput's
EndOfJob upload), so its volume must hold its whole share of the dataset. With it the volume holds the
shards being written (one per split) plus at most `pending` finished ones waiting for their upload:
~0.8 GB at 1,000 examples per shard, whatever the dataset's size.

One upload thread, first in first out: a manifest is submitted after its shards, so a reader that finds
the manifest in S3 finds every shard it lists. boto3's managed transfer does multipart and retries.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

DEFAULT_PENDING = 2  # finished shards allowed to wait for the upload thread before prep waits for it


class UploadError(Exception):
    """An upload that failed after boto3's retries; the message names the object and what to check."""


def parse_s3_prefix(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix/ -> (bucket, "prefix/") ("" for the bucket's root); ValueError naming the expected form.
    prep.py reads its --source with it too."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ValueError(f"--upload-to {uri!r} is not an S3 prefix: expected s3://bucket/prefix/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class ShardUploader:
    """Uploads files below `root` to `destination` (the same relative paths) on one background thread."""

    def __init__(self, destination: str, root: Path, retries: int, pending: int = DEFAULT_PENDING) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = parse_s3_prefix(destination)
        self.root = root
        self.pending = max(1, pending)
        config = Config(retries={"max_attempts": retries, "mode": "standard"})
        self.client = boto3.Session().client("s3", config=config)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-upload")
        self._in_flight: deque[Future[str]] = deque()
        self.uploaded: list[str] = []

    def key_of(self, path: Path) -> str:
        return self.prefix + path.relative_to(self.root).as_posix()

    def submit(self, path: Path, *, delete: bool) -> None:
        """Queue `path`; blocks while `pending` files already wait (that bounds the disk)."""
        while len(self._in_flight) >= self.pending:
            self._collect(self._in_flight.popleft())
        self._in_flight.append(self._pool.submit(self._upload, path, delete))

    def drain(self) -> list[str]:
        """Wait for every queued upload; the keys uploaded so far."""
        while self._in_flight:
            self._collect(self._in_flight.popleft())
        return self.uploaded

    def close(self) -> None:
        for future in self._in_flight:
            future.cancel()
        self._pool.shutdown(wait=True)

    def _collect(self, future: Future[str]) -> None:
        self.uploaded.append(future.result())

    def _upload(self, path: Path, delete: bool) -> str:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key_of(path)
        try:
            self.client.upload_file(str(path), self.bucket, key)
        except (S3UploadFailedError, ClientError, BotoCoreError) as error:
            raise UploadError(
                f"could not upload {path.name} to s3://{self.bucket}/{key}: {error}. Check that the bucket exists and that "
                "this job's role may s3:PutObject there (and use the bucket's KMS key), then run again"
            ) from None
        if delete:
            path.unlink()
        return key
