"""local_mode.verify end to end on a tiny trained model: the three steps, the report, and resuming after Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import inference
import pytest

from local_mode import verify
from tests.verification.conftest import read_jsonl, write_csv

pytestmark = pytest.mark.slow


@pytest.fixture
def records(synthetic_bucket: Path, tmp_path: Path) -> Path:
    """The synthetic bucket's own counts for 30 bins, every third one wrong, plus a missing photo and a bad row."""
    ids = sorted(p.stem for p in (synthetic_bucket / "bin-images").glob("*.jpg"))[:30]
    rows = []
    for i, bin_id in enumerate(ids):
        count = json.loads((synthetic_bucket / "metadata" / f"{bin_id}.json").read_text())["EXPECTED_QUANTITY"]
        rows.append([bin_id, str(count + 1 if i % 3 == 0 else count)])
    rows += [["no-such-bin", "2"], [ids[0], "two"]]
    return write_csv(tmp_path / "records.csv", rows)


def args(model_dir: Path, photos: Path, records: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--model-dir",
        str(model_dir),
        "--photos",
        str(photos),
        "--records",
        str(records),
        "--output",
        str(output),
        "--batch-size",
        "8",
        *extra,
    ]


def read_results(output: Path) -> list[dict[str, str]]:
    with open(output / "report" / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_end_to_end_report_and_resume_after_interrupt(
    synthetic_bucket: Path,
    trained: Path,
    records: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_dir = trained / "model"
    real_predict = inference.predict_fn
    calls: list[int] = []

    def interrupted_on_third(data, model):  # noqa: ANN001, ANN202 - inference.predict_fn's signature
        calls.append(len(data))
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
        return real_predict(data, model)

    output = tmp_path / "run"
    monkeypatch.setattr(inference, "predict_fn", interrupted_on_third)
    assert verify.main(args(model_dir, synthetic_bucket, records, output)) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert len(list((output / "predictions").glob("*.out"))) == 2
    assert not (output / "report" / "results.csv").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in (output / "predictions").glob("*.out")}

    calls.clear()
    monkeypatch.setattr(inference, "predict_fn", lambda data, model: calls.append(len(data)) or real_predict(data, model))
    assert verify.main(args(model_dir, synthetic_bucket, records, output)) == 0
    printed = capsys.readouterr().out
    assert "prepare: done earlier" in printed
    assert "could not be predicted" not in printed and "failed" not in printed
    assert {name: (output / "predictions" / name).stat().st_mtime_ns for name in kept} == kept  # replies kept, not redone
    manifest = read_jsonl(output / "records" / "manifest.jsonl")
    assert len(calls) == len(manifest) - 2  # only the batch files without a reply were predicted
    assert sum(calls) == sum(len(m["bin_ids"]) for m in manifest[2:])

    # The resumed run's report equals an uninterrupted run's.
    fresh = tmp_path / "fresh"
    assert verify.main(args(model_dir, synthetic_bucket, records, fresh, "--keep-batches")) == 0
    resumed_rows, fresh_rows = read_results(output), read_results(fresh)
    assert resumed_rows == fresh_rows
    assert len(resumed_rows) == 32  # every CSV row once
    by_error = {r["bin_id"]: r["error"] for r in resumed_rows if r["error"]}
    assert by_error["no-such-bin"] == "missing_photo"
    assert list(by_error.values()).count("duplicate_record") == 1
    summary = json.loads((output / "report" / "summary.json").read_text())
    assert summary["rows"] == 32 and summary["rows_with_errors"] == 2
    assert sum(summary["verdicts"].values()) == 32
    assert (output / "report" / "report.html").stat().st_size > 1000
    assert not list((output / "batches").glob("*.npy"))  # deleted once predicted (disk stays bounded)

    # The batch path gives the same count as the endpoint's own JPEG path for the same photo.
    loaded = inference.model_fn(str(model_dir))
    row = next(r for r in resumed_rows if not r["error"])
    body = (synthetic_bucket / "bin-images" / f"{row['bin_id']}.jpg").read_bytes()
    single = json.loads(inference.output_fn(real_predict(inference.input_fn(body, "image/jpeg"), loaded)))["predictions"][0]
    assert int(row["predicted"]) == single["count"]
    assert float(row["p_match"]) == pytest.approx(single["probabilities"][row["expected"]], abs=1e-5)


def test_other_inputs_in_the_same_output_are_refused(
    synthetic_bucket: Path, trained: Path, records: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "run"
    assert verify.main(args(trained / "model", synthetic_bucket, records, output, "--no-progress")) == 0
    other = write_csv(tmp_path / "other.csv", [["x", "1"]])
    assert verify.main(args(trained / "model", synthetic_bucket, other, output)) == 2
    assert "other inputs" in capsys.readouterr().err
    assert verify.main(args(trained / "model", synthetic_bucket, other, output, "--fresh")) == 0
    assert [r["bin_id"] for r in read_results(output)] == ["x"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model-dir", "{tmp}", "--photos", "{tmp}"], "has no model.pth"),
        (["--model-dir", "{model}", "--photos", "{tmp}/nope"], "is not a folder"),
        (["--model-dir", "{model}", "--photos", "{tmp}", "--records", "{tmp}/nope.csv"], "is not a file"),
        (
            ["--model-dir", "{model}", "--photos", "{tmp}", "--match-threshold", "0.1", "--mismatch-threshold", "0.3"],
            "--mismatch-threshold",
        ),
        (["--model-dir", "{model}", "--photos", "{tmp}", "--match-threshold", "1.5"], "--match-threshold"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], message: str, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{model}", str(trained / "model")) for a in argv]
    assert verify.main([*argv, "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_batch_that_fails_is_reported_not_fatal_and_retried(
    synthetic_bucket: Path, trained: Path, records: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_predict = inference.predict_fn
    calls: list[int] = []

    def second_fails(data, model):  # noqa: ANN001, ANN202 - inference.predict_fn's signature
        calls.append(len(data))
        if len(calls) == 2:
            raise ValueError("the batch's array is damaged")
        return real_predict(data, model)

    output = tmp_path / "run"
    monkeypatch.setattr(inference, "predict_fn", second_fails)
    assert verify.main(args(trained / "model", synthetic_bucket, records, output, "--no-progress")) == 0
    summary = json.loads((output / "report" / "summary.json").read_text())
    assert summary["errors"]["prediction_missing"] == calls[1]  # every photo of the failed batch, counted
    assert summary["rows"] == 32
    monkeypatch.setattr(inference, "predict_fn", real_predict)
    assert verify.main(args(trained / "model", synthetic_bucket, records, output, "--no-progress")) == 0
    assert "prediction_missing" not in json.loads((output / "report" / "summary.json").read_text())["errors"]


def test_views_one_serves_the_photo_alone_and_switching_views_predicts_again(
    synthetic_bucket: Path, trained: Path, records: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flip4 model (the tiny model's weights, temperatures set by hand) through the twin with each views value,
    in the same output folder: the second run must prepare again (the first deleted its batch files) and predict."""
    model_dir = tmp_path / "flips"
    shutil.copytree(trained / "model", model_dir)
    meta = json.loads((model_dir / "model_meta.json").read_text())
    (model_dir / "model_meta.json").write_text(json.dumps(meta | {"tta": "flip4", "temperature": 1.3, "single_view_temperature": 0.7}))
    output = tmp_path / "run"
    p_match: dict[str, dict[str, float]] = {}
    for views in ("one", "served"):
        assert verify.main(args(model_dir, synthetic_bucket, records, output, "--views", views)) == 0
        assert f"({views} views)" in capsys.readouterr().out
        rows = [r for r in read_results(output) if not r["error"]]
        assert len(rows) == 30  # every photo predicted, none prediction_missing
        p_match[views] = {r["bin_id"]: float(r["p_match"]) for r in rows if r["p_match"]}
        row = rows[0]
        body = (synthetic_bucket / "bin-images" / f"{row['bin_id']}.jpg").read_bytes()
        loaded = inference.load_model(model_dir, views=views)
        expected = inference.predict_fn(inference.input_fn(body, "image/jpeg"), loaded)["predictions"][0]
        assert float(row["p_match"]) == pytest.approx(expected["probabilities"][row["expected"]], abs=1e-5)
        assert inference.VIEWS_ENV not in os.environ  # the process's environment is left as it was
    assert p_match["one"] != p_match["served"]
