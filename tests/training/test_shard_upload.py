"""prep.py on the whole bucket (issue 16): the listing in parallel key ranges, and shards uploaded while prep runs.

Real: prep.py, shards.py, shard_upload.py, boto3's paginator and managed transfer, botocore's request
building. Emulated: S3 (moto, in-process; it answers ListObjectsV2 with StartAfter and paging as S3 does).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import synthetic_bins

SPLIT_NAMES = ("train", "validation", "test")


@pytest.fixture
def s3(monkeypatch):
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        import boto3

        yield boto3.client("s3", region_name="us-east-1")


def _plain_listing(client, bucket: str, folder: str, suffix: str) -> list[str]:
    """The reference: one sequential listing of the folder, the way the AWS CLI's `ls --recursive` pages."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
    return [o["Key"].rsplit("/", 1)[-1].removesuffix(suffix) for p in pages for o in p.get("Contents", []) if o["Key"].endswith(suffix)]


def test_parallel_listing_finds_every_id_once(s3, monkeypatch) -> None:
    import prep

    ids = ["0", "1", "10", "19", "2", "5", "9", "99", "100313", "523", "abc", "Zeta", "-x", "7"]
    s3.create_bucket(Bucket="bins")
    for i in ids:
        s3.put_object(Bucket="bins", Key=f"data/metadata/{i}.json", Body=b"{}")
    for i in ids[:5] + ["photo-only"]:
        s3.put_object(Bucket="bins", Key=f"data/bin-images/{i}.jpg", Body=b"x")
    s3.put_object(Bucket="bins", Key="data/metadata/5", Body=b"")  # equal to a range bound: no suffix, not an id's file
    s3.put_object(Bucket="bins", Key="data/metadata/7.txt", Body=b"")
    monkeypatch.setattr(prep, "LIST_PAGE_SIZE", 2)  # ranges span several pages and stop mid-page

    listed = prep.S3Source("s3://bins/data/", workers=2, retries=1).list_ids()

    reference = set(_plain_listing(s3, "bins", "data/metadata/", ".json")) | set(_plain_listing(s3, "bins", "data/bin-images/", ".jpg"))
    assert listed == sorted(reference) == sorted({*ids, "photo-only"})
    assert len(prep.key_ranges(prep.LISTING_BOUNDS)) == 10


def _prep(tmp_path: Path, bucket: Path, name: str, **kwargs) -> dict:
    import prep

    return prep.prepare_shards(str(bucket), str(tmp_path / name), workers=2, shard=(0, 1), shard_size=3, **kwargs)


def test_upload_to_s3_while_preparing_bounds_the_disk(s3, tmp_path: Path) -> None:
    import shard_upload
    import shards

    bucket = tmp_path / "bucket"
    synthetic_bins.generate(bucket, 40, seed=3)
    s3.create_bucket(Bucket="artifacts")
    local_tars_at_upload: list[int] = []
    original = shard_upload.ShardUploader._upload

    def counting_upload(self, path: Path, delete: bool) -> str:
        local_tars_at_upload.append(len(list((tmp_path / "uploaded").rglob("*.tar"))))
        return original(self, path, delete)

    shard_upload.ShardUploader._upload = counting_upload
    try:
        summary = _prep(tmp_path, bucket, "uploaded", upload_to="s3://artifacts/runs/r1/prepare/")
    finally:
        shard_upload.ShardUploader._upload = original
    local = _prep(tmp_path, bucket, "local")

    assert not list((tmp_path / "uploaded").rglob("*.tar")), "every uploaded shard is deleted here"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="artifacts", Prefix="runs/r1/prepare/")["Contents"]}
    manifests = {name: shards.read_manifests(tmp_path / "uploaded" / name) for name in SPLIT_NAMES}
    expected = {f"runs/r1/prepare/{n}/{s['file']}" for n, ms in manifests.items() for m in ms for s in m["shards"]}
    expected |= {f"runs/r1/prepare/{n}/{shards.manifest_name(0, 1)}" for n in SPLIT_NAMES} | {"runs/r1/prepare/summary-0-of-1.json"}
    assert keys == expected
    shard_files = len(expected) - 4
    assert summary["shard_files_uploaded"] == shard_files >= 10
    # 2 waiting + the one just closed + the other splits' open shards: bounded by the split count, not the data
    assert max(local_tars_at_upload) <= shard_upload.DEFAULT_PENDING + 1 + (len(SPLIT_NAMES) - 1)

    downloaded = tmp_path / "downloaded"
    for key in keys:
        target = downloaded / key.removeprefix("runs/r1/prepare/")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file("artifacts", key, str(target))
    for name in SPLIT_NAMES:
        from_s3, from_disk = shards.open_channel(downloaded / name), shards.open_channel(tmp_path / "local" / name)
        assert from_s3.ids == from_disk.ids and from_s3.counts == from_disk.counts
        images_s3, images_disk = shards.ShardImages(from_s3), shards.ShardImages(from_disk)
        assert (images_s3[: len(from_s3)] == images_disk[: len(from_disk)]).all()
    assert summary["written"] == local["written"] == 40


def test_upload_failure_is_a_clear_error(s3, tmp_path: Path, capsys) -> None:
    import prep

    bucket = tmp_path / "bucket"
    synthetic_bins.generate(bucket, 12, seed=4)
    argv = ["--source", str(bucket), "--output", str(tmp_path / "out"), "--format", "shards", "--shard-size", "2"]

    assert prep.main([*argv, "--upload-to", "s3://no-such-bucket/prepare/", "--retries", "1"]) == 2
    error = capsys.readouterr().err
    assert "could not upload shard-0000-of-0001-00000.tar to s3://no-such-bucket/prepare/train/" in error
    assert "s3:PutObject" in error and "Traceback" not in error

    assert prep.main([*argv, "--upload-to", "/tmp/not-s3"]) == 2
    assert "--upload-to '/tmp/not-s3' is not an S3 prefix: expected s3://bucket/prefix/" in capsys.readouterr().err
    assert prep.main(["--source", str(bucket), "--output", str(tmp_path / "a"), "--upload-to", "s3://b/p/"]) == 2
    assert "--upload-to need --format shards" in capsys.readouterr().err
