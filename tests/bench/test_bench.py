"""The benchmark scripts' CPU paths on tiny inputs: real models, real training step, real preprocessing
(no mocks). Results go to a temporary folder, never over bench/results/. Timings are not asserted (the
machine is shared); what is asserted is that each path runs, counts what it timed, and that every
faster variant gives the same outputs as the reference path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import preprocessing_spec
import pytest

from bench import cold_start, common, model_latency, preprocess_latency, run_all, train_throughput


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(common, "SCRATCH_DIR", tmp_path / "scratch")
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_preprocess_paths_agree_with_the_spec() -> None:
    photos = preprocess_latency.synthetic_photos(2, size=(640, 480))
    paths = {
        "naive": lambda d: preprocessing_spec.preprocess_bytes(d, draft=False),
        "shipped": lambda d: preprocessing_spec.preprocess_bytes(d, draft=True),
    }
    rows = preprocess_latency.measure_set("synthetic", photos, paths, repeats=1)
    naive, shipped = rows
    assert naive["mean_abs_diff_vs_naive"] == 0 and naive["speedup_vs_naive"] == 1
    assert 0 < shipped["mean_abs_diff_vs_naive"] <= preprocessing_spec.DRAFT_MEAN_ABS_TOLERANCE
    assert shipped["photos"] == 2 and shipped["median_pixels"] == 640 * 480 and shipped["median_ms"] > 0


def test_model_variants_give_the_eager_outputs() -> None:
    rows = model_latency.measure_model("mobilenet_v3_small", ["eager", "channels_last", "torchscript", "onnxruntime"], 1, 1, 224)
    assert [r["variant"] for r in rows] == ["eager", "channels_last", "torchscript", "onnxruntime"]
    for row in rows:
        assert row["max_abs_diff_vs_eager"] < 1e-3, row
        assert row["batch1_ms"] > 0 and row["batch16_img_s"] > 0


def test_calibrated_model_has_sane_activations() -> None:
    import torch

    model = model_latency.calibrated_model("resnet18", 224)
    with torch.no_grad():
        logits = model(torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8))
    # Uncalibrated eval-mode BatchNorm makes logits explode (and CPU time with them); calibrated ones stay small.
    assert torch.isfinite(logits).all() and logits.abs().max() < 100


@pytest.mark.slow
def test_train_throughput_runs_the_real_step(tmp_path: Path, results_in_tmp: Path) -> None:
    import prep
    import synthetic_bins

    synthetic_bins.generate(tmp_path / "photos", 40, seed=1)
    prep.prepare(str(tmp_path / "photos"), str(tmp_path / "prepared"), workers=1)
    argv = [
        "--data",
        str(tmp_path / "prepared"),
        "--models",
        "mobilenet_v3_small@64",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--rounds",
        "2",
        "--threads",
        "1",
    ]
    assert train_throughput.main(argv) == 0
    result = json.loads((results_in_tmp / "train_throughput.json").read_text())
    (row,) = result["rows"]
    assert row["images_per_round"] == 8 and row["img_s"] > 0 and row["image_size"] == 64 and row["processes"] == 1
    assert result["command"].endswith(" ".join(argv)) and result["machine"]["cpus"] >= 1


def test_train_throughput_refuses_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert train_throughput.main(["--models", "alexnet"]) == 2
    assert "unknown architecture" in capsys.readouterr().err
    assert train_throughput.main(["--steps", "0"]) == 2
    assert train_throughput.main(["--data", "/nonexistent", "--quick"]) == 2
    assert "no train/ channel" in capsys.readouterr().err


def test_gpu_path_says_clearly_when_there_is_no_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the no-GPU message cannot be checked here")
    assert train_throughput.main(["--device", "cuda", "--quick"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_cold_start_times_the_handler_import(tmp_path: Path) -> None:
    source = ":".join(str(common.ROOT / p) for p in ("lambda/preprocess", "training_code"))
    timing = cold_start.time_imports([sys.executable], cold_start.lambda_env(source), runs=1)
    assert timing["import_ms"] > 0 and timing["process_ms"] > timing["import_ms"]
    assert timing["pillow_from"].endswith("__init__.py")
    (tmp_path / "asset" / "pkg").mkdir(parents=True)
    (tmp_path / "asset" / "pkg" / "a.py").write_bytes(b"x" * 1000)
    (tmp_path / "asset" / "b.py").write_bytes(b"y" * 24)
    total, per_entry = cold_start.folder_size(tmp_path / "asset")
    assert total == 1024 and per_entry == {"pkg": 1000, "b.py": 24}


def test_run_all_refuses_unknown_parts(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_all.main(["--only", "preprocess,warp_drive"]) == 2
    assert "warp_drive" in capsys.readouterr().err


def test_gpu_resident_batches_cover_a_permutation() -> None:
    # The GPU path's batching is device-agnostic: checked here on CPU tensors.
    import torch

    images = torch.arange(10).view(10, 1, 1, 1).expand(10, 2, 2, 3).to(torch.uint8)
    targets = torch.arange(10)
    batches = list(train_throughput.gpu_resident_batches(images, targets, 3, 3, torch.Generator().manual_seed(0)))
    assert [len(t) for _, t in batches] == [3, 3, 3]
    seen = torch.cat([t for _, t in batches])
    assert len(set(seen.tolist())) == 9
    for batch_images, batch_targets in batches:
        assert torch.equal(batch_images[:, 0, 0, 0].long(), batch_targets)  # images stay paired with their labels


def test_report_rewrites_only_marked_blocks(tmp_path: Path, results_in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import report

    common.write_result("cold_start", "python -m bench.cold_start", [{"case": "as shipped", "runs": 3, "import_ms": 412.5}])
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "intro\n<!-- bench:cold_start -->\nSTALE-TABLE\n<!-- /bench:cold_start -->\n<!-- bench:model_latency -->\nkept\n<!-- /bench:model_latency -->\n"
    )
    monkeypatch.setattr(report, "DOCS", docs)
    assert report.update_docs() == ["cold_start"]
    text = docs.read_text()
    assert "STALE-TABLE" not in text and "| as shipped | 3 | 412 |" in text and "`python -m bench.cold_start`" in text
    assert "kept" in text and text.startswith("intro\n")  # no result file for model_latency: left alone


def test_decision_rules_score_argmax_and_expected_count() -> None:
    import numpy as np

    from bench import decision_rules

    classes = [1, 2, 3]
    # Photo 0 (true 1): argmax 1, expected 0.5*1 + 0.5*3 -> 2. Photo 1 (true 3): both rules say 3.
    probs = np.array([[0.5, 0.0, 0.5], [0.1, 0.1, 0.8]])
    rows = decision_rules.score_rules(probs, np.array([0, 2]), classes, None)
    by_rule = {r["rule"]: r for r in rows}
    assert set(by_rule) == {"argmax", "expected"}
    assert by_rule["argmax"]["accuracy"] == 1.0 and by_rule["argmax"]["rmse"] == 0.0
    assert by_rule["expected"]["accuracy"] == 0.5 and by_rule["expected"]["rmse"] == pytest.approx((1 / 2) ** 0.5)
