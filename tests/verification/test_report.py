"""verify_report.py: the join of Batch Transform replies with the records (exact rows, summary counts)."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import verification
import verify_prepare
import verify_report

from tests.verification.conftest import read_jsonl

CLASSES = [1, 2, 3, 4, 5]


def reply(rows: list[dict[str, float]]) -> str:
    """What inference.output_fn writes for one batch (probabilities keyed by class, count = argmax)."""
    predictions = []
    for probabilities in rows:
        best = max(probabilities, key=probabilities.get)
        predictions.append({"count": int(best), "confidence": probabilities[best], "probabilities": probabilities})
    return json.dumps({"predictions": predictions, "model_version": "fake-v1", "classes": CLASSES})


def probabilities_for(bin_id: str) -> dict[str, float]:
    """A fixed, distinct distribution per bin (so the expected verdict is computable by hand)."""
    peak = 1 + sum(map(ord, bin_id)) % 5
    return {str(c): (0.6 if c == peak else 0.1) for c in CLASSES}


@pytest.fixture
def prepared(mixed_bucket: tuple[Path, Path], tmp_path: Path) -> Path:
    bucket, csv_path = mixed_bucket
    out = tmp_path / "prepared"
    verify_prepare.prepare(str(bucket), out, str(csv_path), batch_size=2, workers=2)
    return out


def transform(prepared: Path, target: Path, skip: tuple[str, ...] = (), corrupt: tuple[str, ...] = ()) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for entry in read_jsonl(prepared / "records" / "manifest.jsonl"):
        if entry["batch"] in skip:
            continue
        body = reply([probabilities_for(b) for b in entry["bin_ids"]])
        if entry["batch"] in corrupt:
            body = reply([probabilities_for(b) for b in entry["bin_ids"][:-1]])  # one prediction short
        (target / f"{entry['batch']}.out").write_text(body)
    return target


def results(path: Path) -> list[dict[str, str]]:
    with open(path / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_row_exactly_once_with_the_rule_applied(prepared: Path, tmp_path: Path) -> None:
    predictions = transform(prepared, tmp_path / "predictions")
    summary = verify_report.report(predictions, prepared / "records", tmp_path / "report", batches=str(prepared / "batches"))
    rows = results(tmp_path / "report")
    records = read_jsonl(prepared / "records" / "records.jsonl")
    assert [r["bin_id"] for r in rows] == [r["bin_id"] for r in records]  # same rows, same order, once each
    assert list(rows[0]) == list(verify_report.COLUMNS)
    for row, record in zip(rows, records, strict=True):
        if record["error"]:
            assert row["verdict"] == "error" and row["error"] == record["error"] and row["p_match"] == ""
            continue
        expected = verification.verify(probabilities_for(row["bin_id"]), record["expected"])
        assert row["verdict"] == expected["verdict"]
        assert (row["p_match"] or None) == (None if expected["p_match"] is None else str(expected["p_match"]))
        probs = probabilities_for(row["bin_id"])
        assert int(row["predicted"]) == int(max(probs, key=probs.get))
    # b05's record (7) is outside the classes: review with the reason, not an error.
    b05 = next(r for r in rows if r["bin_id"] == "b05")
    assert b05["verdict"] == "review" and "cannot see" in b05["detail"] and b05["error"] == ""
    # A row whose record is malformed still shows the model's count.
    b02 = next(r for r in rows if r["bin_id"] == "b02")
    assert b02["error"] == "malformed_record" and b02["predicted"] != ""
    # The summary counts are the CSV's counts.
    verdicts = Counter(r["verdict"] for r in rows)
    assert summary["rows"] == len(rows) == 13
    assert summary["verdicts"] == {v: verdicts.get(v, 0) for v in ("match", "mismatch", "review", "error")}
    assert summary["errors"] == dict(Counter(r["error"] for r in rows if r["error"]))
    assert summary["verified"] == len(rows) - summary["rows_with_errors"]
    assert summary["mismatch_rate"] == round(verdicts["mismatch"] / summary["verified"], 4)
    assert summary["review_outside_classes"] == 1
    assert summary["model_version"] == "fake-v1"
    assert json.loads((tmp_path / "report" / "summary.json").read_text()) == summary


def test_missing_and_malformed_replies_are_rows_with_errors(prepared: Path, tmp_path: Path) -> None:
    clean_batches = [r["batch"] for r in read_jsonl(prepared / "records" / "records.jsonl") if r["batch"] and not r["error"]]
    gone, broken = clean_batches[0], next(b for b in clean_batches if b != clean_batches[0])
    predictions = transform(prepared, tmp_path / "predictions", skip=(gone,), corrupt=(broken,))
    summary = verify_report.report(predictions, prepared / "records", tmp_path / "report")
    rows = results(tmp_path / "report")
    records = read_jsonl(prepared / "records" / "records.jsonl")
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        if record["error"]:
            assert row["error"] == record["error"]  # the first problem found stays the row's error
        elif record["batch"] == gone:
            assert row["error"] == "prediction_missing" and row["verdict"] == "error"
        elif record["batch"] == broken:
            assert row["error"] == "prediction_unreadable" and "predictions for" in row["detail"]
        else:
            assert row["verdict"] in ("match", "mismatch", "review")
    assert summary["errors"]["prediction_missing"] == sum(1 for r in records if r["batch"] == gone and not r["error"])
    assert summary["errors"]["prediction_unreadable"] == sum(1 for r in records if r["batch"] == broken and not r["error"])


def test_report_html_is_self_contained(prepared: Path, tmp_path: Path) -> None:
    predictions = transform(prepared, tmp_path / "predictions")
    verify_report.report(predictions, prepared / "records", tmp_path / "report", source=str(prepared.parent / "bucket"), top=3)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<svg" in page and page.count("data:image/jpeg;base64,") == 3
    assert not re.search(r"""(src|href)=["'](?!data:)""", page), "report.html must not load anything external"
    assert "Most suspicious" in page


def test_bad_thresholds_and_folders_are_one_line_errors(prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--predictions", str(tmp_path), "--records", str(prepared / "records"), "--output", str(tmp_path / "r")]
    assert verify_report.main([*base, "--match-threshold", "0.1", "--mismatch-threshold", "0.2"]) == 2
    assert "--mismatch-threshold" in capsys.readouterr().err
    assert verify_report.main([*base[:2], "--records", str(tmp_path / "nowhere"), "--output", str(tmp_path / "r")]) == 2
    assert "is missing: --records must be" in capsys.readouterr().err
