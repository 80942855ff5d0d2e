"""verify_prepare.py: every input row exactly once, errors counted, batch files the transform can read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import preprocessing_spec
import pytest
import verify_prepare

from tests.verification.conftest import jpeg, make_bucket, read_jsonl, write_csv


def check_batches_match_records(out: Path, bucket: Path) -> list[dict]:
    """Each photo placed in a batch file is exactly the spec's array of that bin's photo; manifest agrees."""
    records = read_jsonl(out / "records" / "records.jsonl")
    manifest = {m["batch"]: m["bin_ids"] for m in read_jsonl(out / "records" / "manifest.jsonl")}
    assert sorted(manifest) == sorted(p.name for p in (out / "batches").glob("*.npy"))
    placed = [r for r in records if r["batch"] is not None]
    assert sum(len(ids) for ids in manifest.values()) == len(placed)
    for record in placed:
        array = np.load(out / "batches" / record["batch"])
        assert array.dtype == np.uint8 and array.shape[1:] == (224, 224, 3)
        assert manifest[record["batch"]][record["index"]] == record["bin_id"]
        expected = preprocessing_spec.preprocess_bytes((bucket / "bin-images" / f"{record['bin_id']}.jpg").read_bytes())
        assert array[record["index"]].tobytes() == expected
    return records


def test_csv_records_every_row_once_with_errors_counted(mixed_bucket: tuple[Path, Path], tmp_path: Path) -> None:
    bucket, csv_path = mixed_bucket
    out = tmp_path / "out"
    summary = verify_prepare.prepare(str(bucket), out, str(csv_path), batch_size=2, workers=2)
    records = check_batches_match_records(out, bucket)
    # 13 data rows (the blank line is not a row; "notincsv" has a photo but no row, so it is not verified).
    assert [r["row"] for r in records] == list(range(1, 14))
    by_id = {(r["row"], r["bin_id"]): r for r in records}
    errors = {r["row"]: r["error"] for r in records}
    assert errors == {
        1: None,
        2: None,
        3: "missing_photo",
        4: "undecodable_photo",
        5: "malformed_record",
        6: "malformed_record",
        7: "malformed_record",
        8: "malformed_record",
        9: "duplicate_record",
        10: "undecodable_photo",
        11: None,
        12: None,
        13: "duplicate_record",
    }
    assert by_id[(11, "b05")]["expected"] == 7 and by_id[(12, "b06")]["expected"] == 3
    assert "2.5" in by_id[(5, "b02")]["detail"] and "expected_count" in by_id[(5, "b02")]["detail"]
    assert records[6]["bin_id"].startswith("line-") and records[6]["batch"] is None  # "../etc/passwd" never opened
    assert summary["rows"] == 13
    assert summary["errors"] == {"duplicate_record": 2, "malformed_record": 4, "missing_photo": 1, "undecodable_photo": 2}
    assert (
        summary["photos"] == sum(1 for r in records if r["batch"] is not None) == 7
    )  # b00..b06: a bad record still has its photo predicted
    assert all(len(ids) <= 2 for ids in (m["bin_ids"] for m in read_jsonl(out / "records" / "manifest.jsonl")))
    assert "notincsv" not in (out / "records" / "records.jsonl").read_text()


def test_metadata_records_cover_photos_and_metadata_files(tmp_path: Path) -> None:
    bucket = make_bucket(
        tmp_path / "bucket",
        {"a": jpeg(1), "b": jpeg(2), "nometa": jpeg(3), "bad": b"GIF89a...", "strq": jpeg(4), "neg": jpeg(5)},
        {
            "a": b'{"EXPECTED_QUANTITY": 2}',
            "b": b'{"EXPECTED_QUANTITY": 0, "BIN_FCSKU_DATA": {}}',
            "nophoto": b'{"EXPECTED_QUANTITY": 1}',
            "bad": b'{"EXPECTED_QUANTITY": 1}',
            "strq": b'{"EXPECTED_QUANTITY": "3"}',
            "neg": b'{"EXPECTED_QUANTITY": -2}',
            "garbage": b"{not json",
        },
    )
    out = tmp_path / "out"
    summary = verify_prepare.prepare(str(bucket), out, None, batch_size=4, workers=2)
    records = check_batches_match_records(out, bucket)
    got = {r["bin_id"]: (r["expected"], r["error"]) for r in records}
    assert got == {
        "a": (2, None),
        "b": (0, None),  # 0 is a valid record (the verdict will say the model cannot see it)
        "bad": (1, "undecodable_photo"),
        "garbage": (None, "malformed_record"),
        "neg": (None, "malformed_record"),
        "nometa": (None, "missing_record"),
        "nophoto": (1, "missing_photo"),
        "strq": (None, "malformed_record"),
    }
    assert len(records) == summary["rows"] == 8
    # A photo whose record is broken is still predicted (the report shows the model's count beside the error).
    assert {r["bin_id"] for r in records if r["batch"] is not None} == {"a", "b", "nometa", "strq", "neg"}


def test_rerun_replaces_earlier_batches(mixed_bucket: tuple[Path, Path], tmp_path: Path) -> None:
    bucket, csv_path = mixed_bucket
    out = tmp_path / "out"
    verify_prepare.prepare(str(bucket), out, str(csv_path), batch_size=1, workers=1)
    many = len(list((out / "batches").glob("*.npy")))
    verify_prepare.prepare(str(bucket), out, str(csv_path), batch_size=8, workers=1)
    assert len(list((out / "batches").glob("*.npy"))) < many
    check_batches_match_records(out, bucket)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--records", "{tmp}/nope.csv"], "cannot be read"),
        (["--records", "{tmp}/badheader.csv"], "bin_id,expected_count"),
        (["--batch-size", "65"], "--batch-size 65"),
    ],
)
def test_cli_usage_errors_are_one_line(
    argv: list[str], message: str, mixed_bucket: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket, _ = mixed_bucket
    write_csv(tmp_path / "badheader.csv", [["a", "1"]], header=("id", "count"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert verify_prepare.main(["--source", str(bucket), "--output", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_writes_a_summary(mixed_bucket: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bucket, csv_path = mixed_bucket
    assert verify_prepare.main(["--source", str(bucket), "--records", str(csv_path), "--output", str(tmp_path / "o")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "o" / "records" / "prepare.json").read_text())
    assert printed["rows"] == 13


def test_s3_source_and_streamed_s3_csv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The AWS layout: photos under an S3 prefix, the CSV an S3 object (moto's S3; same boto3 calls as on AWS)."""
    import boto3
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="verify-input")
        for i in range(3):
            s3.put_object(Bucket="verify-input", Key=f"photos/bin-images/a{i}.jpg", Body=jpeg(i))
        s3.put_object(Bucket="verify-input", Key="records.csv", Body=b"\xef\xbb\xbfbin_id,expected_count\na0,1\na1,2\nzz,3\na2,x\n")
        summary = verify_prepare.prepare("s3://verify-input/photos/", tmp_path / "out", "s3://verify-input/records.csv", workers=2)
        assert summary["rows"] == 4 and summary["photos"] == 3
        assert summary["errors"] == {"malformed_record": 1, "missing_photo": 1}
        records = read_jsonl(tmp_path / "out" / "records" / "records.jsonl")
        assert [(r["bin_id"], r["expected"], r["error"]) for r in records] == [
            ("a0", 1, None),
            ("a1", 2, None),
            ("zz", 3, "missing_photo"),
            ("a2", None, "malformed_record"),
        ]
        argv = ["--source", "s3://verify-input/photos/", "--records", "s3://verify-input/nope.csv", "--output", str(tmp_path / "o")]
        assert verify_prepare.main(argv) == 2
        assert "NoSuchKey" in capsys.readouterr().err
