"""prep.py on a real folder in the bucket layout (synthetic JPEGs written by the test), plus S3 via moto."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dataset_layout
import numpy as np
import prep
import pytest
import synthetic_bins
from PIL import Image

from tests.training.conftest import TRAINING_CODE


def _labels(folder: Path) -> dict[str, int]:
    meta = json.loads((folder / "labels.json").read_text())
    return dict(zip(meta["ids"], meta["counts"], strict=True))


def _expected_sizes(n: int) -> tuple[int, int, int]:
    train = round(n * 0.6)
    validation = round(n * 0.8) - train
    return train, validation, n - train - validation


@pytest.fixture()
def damaged_bucket(tmp_path: Path) -> tuple[Path, dict[str, int], dict[str, str]]:
    """30 bins (6 per class) with one corrupt JPEG, one missing metadata file and one count of 9."""
    folder = tmp_path / "bucket"
    labels = dict(synthetic_bins.generate(folder, 30, seed=11))
    ids = sorted(labels)
    broken = {"corrupt_image": ids[0], "missing_metadata": ids[1], "count_outside_classes": ids[2]}
    jpeg = folder / "bin-images" / f"{ids[0]}.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:300])  # truncated mid-scan
    (folder / "metadata" / f"{ids[1]}.json").unlink()
    (folder / "metadata" / f"{ids[2]}.json").write_text(json.dumps({"BIN_FCSKU_DATA": {}, "EXPECTED_QUANTITY": 9}))
    return folder, labels, broken


def test_skips_are_counted_listed_and_reconcile(damaged_bucket, tmp_path: Path) -> None:
    folder, labels, broken = damaged_bucket
    summary = prep.prepare(str(folder), str(tmp_path / "out"), workers=2)
    assert summary["read"] == 30
    assert summary["skipped_by_reason"] == {"corrupt_image": 1, "count_outside_classes": 1, "missing_metadata": 1}
    assert summary["skipped_ids"] == {reason: [image_id] for reason, image_id in broken.items()}
    assert summary["written"] == 27
    assert summary["read"] == summary["written"] + summary["skipped"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    assert not (tmp_path / "out" / ".staging.npy").exists()


def test_split_sizes_are_exact_per_class_and_files_match_labels(damaged_bucket, tmp_path: Path) -> None:
    folder, labels, broken = damaged_bucket
    out = tmp_path / "out"
    summary = prep.prepare(str(folder), str(out), workers=2)
    valid = {i: c for i, c in labels.items() if i not in broken.values()}
    for count in (1, 2, 3, 4, 5):
        n = sum(1 for c in valid.values() if c == count)
        got = tuple(summary["splits"][name]["per_class"][str(count)] for name in ("train", "validation", "test"))
        assert got == _expected_sizes(n), f"class {count} with {n} valid images"
    seen: set[str] = set()
    for name in ("train", "validation", "test"):
        meta = json.loads((out / name / "labels.json").read_text())
        images = np.load(out / name / "images.npy")
        assert images.shape == (len(meta["ids"]), 224, 224, 3) and images.dtype == np.uint8
        assert meta["counts"] == [valid[i] for i in meta["ids"]]
        assert not seen & set(meta["ids"]), "an id landed in two splits"
        seen |= set(meta["ids"])
        # Row k is image k preprocessed by the spec (a full decode, stretched to 224).
        first = np.asarray(
            Image.open(folder / "bin-images" / f"{meta['ids'][0]}.jpg").convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
        )
        assert np.array_equal(images[0], first)
    assert seen == set(valid)


def test_prep_is_deterministic_and_order_free(damaged_bucket, tmp_path: Path) -> None:
    folder, labels, broken = damaged_bucket
    ids = sorted(labels)
    # The same ids through a file list, in a scrambled order, grouped under wrong keys: the same output.
    file_list = tmp_path / "file_list.json"
    file_list.write_text(
        json.dumps({"1": [f"data/metadata/{i}.json" for i in reversed(ids[:15])], "3": [f"data/metadata/{i}.json" for i in ids[15:]]})
    )
    prep.prepare(str(folder), str(tmp_path / "a"), workers=2)
    prep.prepare(str(folder), str(tmp_path / "b"), workers=1, file_list=str(file_list))
    for name in ("train", "validation", "test"):
        for file in ("images.npy", "labels.json"):
            assert (tmp_path / "a" / name / file).read_bytes() == (tmp_path / "b" / name / file).read_bytes()


def test_file_list_selects_ids(damaged_bucket, tmp_path: Path) -> None:
    folder, labels, _ = damaged_bucket
    chosen = sorted(labels)[10:20]
    file_list = tmp_path / "file_list.json"
    file_list.write_text(json.dumps({"2": [f"data/metadata/{i}.json" for i in chosen]}))
    summary = prep.prepare(str(folder), str(tmp_path / "out"), file_list=str(file_list), workers=2)
    assert summary["read"] == 10 and summary["written"] == 10


def test_classes_option_keeps_only_those_counts(damaged_bucket, tmp_path: Path) -> None:
    folder, labels, broken = damaged_bucket
    summary = prep.prepare(str(folder), str(tmp_path / "out"), classes=(1, 2), workers=2)
    kept = [i for i, c in labels.items() if c in (1, 2) and i not in broken.values()]
    assert summary["written"] == len(kept)
    assert json.loads((tmp_path / "out" / "train" / "labels.json").read_text())["classes"] == [1, 2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "/nonexistent/folder", "--output", "OUT"], "is not a folder or an s3:// URI"),
        (["--source", "SRC", "--output", "OUT", "--file-list", "/nonexistent.json"], "--file-list /nonexistent.json cannot be read"),
        (["--source", "SRC", "--output", "OUT", "--classes", "3,1"], "--classes '3,1' is invalid"),
    ],
)
def test_cli_errors_name_the_problem(argv, message, damaged_bucket, tmp_path: Path, capsys) -> None:
    folder, _, _ = damaged_bucket
    argv = [str(folder) if a == "SRC" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) if "--classes" in argv else _no_raise():
        assert prep.main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_on_an_empty_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty" / "metadata").mkdir(parents=True)
    assert prep.main(["--source", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 2
    assert "no ids found" in capsys.readouterr().err


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_s3_source_unsigned_when_no_credentials(tmp_path: Path, monkeypatch) -> None:
    """Real: prep's S3 reader, boto3, botocore's retry/unsigned configuration. Emulated: S3 (moto) and the
    absence of credentials (the lookup is patched to find none)."""
    from botocore import UNSIGNED
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    labels = dict(synthetic_bins.generate(tmp_path / "bucket", 10, seed=5))
    with mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        client.create_bucket(Bucket="public-bins")  # objects public-read, like aft-vbi-pds: unsigned GETs succeed
        for path in (tmp_path / "bucket").rglob("*.*"):
            client.put_object(Bucket="public-bins", Key=f"data/{path.parent.name}/{path.name}", Body=path.read_bytes(), ACL="public-read")
        # moto puts fake credentials in the environment; make the lookup find none, as on a fresh laptop.
        monkeypatch.setattr(boto3.session.Session, "get_credentials", lambda self: None)
        source = prep.S3Source("s3://public-bins/data/", workers=4, retries=3)
        assert source.client.meta.config.signature_version is UNSIGNED
        assert source.client.meta.config.retries == {"total_max_attempts": 4, "mode": "standard"}  # 3 retries after the first try
        summary = prep.prepare("s3://public-bins/data", str(tmp_path / "out"), workers=4)
    assert summary["read"] == 10 and summary["written"] == 10
    written = {i: c for name in ("train", "validation", "test") for i, c in _labels(tmp_path / "out" / name).items()}
    assert written == labels


def test_runs_as_a_script(damaged_bucket, tmp_path: Path) -> None:
    import subprocess
    import sys

    folder, _, _ = damaged_bucket
    done = subprocess.run(
        [sys.executable, str(TRAINING_CODE / "prep.py"), "--source", str(folder), "--output", str(tmp_path / "out"), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "read 30, written 27" in done.stdout


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"EXPECTED_QUANTITY": 3}', None),
        (b'{"EXPECTED_QUANTITY": true}', "EXPECTED_QUANTITY is True"),  # JSON true must not pass as the count 1
        (b'{"EXPECTED_QUANTITY": 2.0}', "EXPECTED_QUANTITY is 2.0"),
        (b'{"BIN_FCSKU_DATA": {}}', "no EXPECTED_QUANTITY"),
        (b"[3]", "no EXPECTED_QUANTITY"),
        (b"\xff\xfe", "no EXPECTED_QUANTITY"),
    ],
)
def test_the_count_is_read_from_metadata_by_one_rule(content: bytes, detail: str | None) -> None:
    if detail is None:
        assert dataset_layout.count_from_metadata(content) == 3
    else:
        with pytest.raises(dataset_layout.MetadataError, match=re.escape(detail)):
            dataset_layout.count_from_metadata(content)
