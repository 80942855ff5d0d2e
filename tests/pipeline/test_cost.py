"""infra/cost.py: the estimate's arithmetic, its errors, and that docs/pipeline.md shows the defaults' table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import cost
from infra.config import config_from_mapping

ROOT = Path(__file__).resolve().parents[2]


def _config(**overrides: Any) -> Any:
    return config_from_mapping({**json.loads((ROOT / "cdk.json").read_text())["context"], **overrides})


def test_estimate_multiplies_instance_hours_by_the_price_table() -> None:
    config, prices = _config(), cost.load_prices()
    hours = cost.Hours(prepare=1, trial=2, train=3, evaluate=0.5)
    lines = {line.step.split()[0]: line for line in cost.estimate(config, prices, hours)}
    trial_price = prices["sagemaker_per_hour"][config.tuning_instance_type]["training"]
    assert lines["Tune"].on_demand == pytest.approx(config.tuning_max_jobs * 2 * trial_price)
    assert lines["Tune"].spot == pytest.approx(lines["Tune"].on_demand * (1 - prices["spot_saving"]))
    train_price = prices["sagemaker_per_hour"][config.training_instance_type]["training"]
    assert lines["Train"].instances == config.training_instance_count
    assert lines["Train"].on_demand == pytest.approx(config.training_instance_count * 3 * train_price)
    assert lines["Prepare"].spot == lines["Prepare"].on_demand  # Processing jobs have no managed spot


def test_without_spot_both_columns_agree() -> None:
    lines = cost.estimate(_config(useSpot=False), cost.load_prices())
    assert all(line.spot == line.on_demand for line in lines)


def test_an_unpriced_instance_type_names_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["-c", "trainingInstanceType=ml.p5.48xlarge"]) == 2
    assert "no training price for ml.p5.48xlarge (cdk.json 'trainingInstanceType')" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["-c", "useSpot=maybe"], "'useSpot'"), (["-c", "novalue"], "expected key=value"), (["--train-hours", "-1"], "must not be negative")],
)
def test_bad_input_is_a_clear_error(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert cost.main(argv) == 2
    assert message in capsys.readouterr().err


def test_price_table_is_dated_and_covers_cdk_json_defaults() -> None:
    prices = cost.load_prices()
    config = _config()
    assert prices["as_of"] and prices["region"] == config.region
    for instance_type in (
        config.processing_instance_type,
        config.tuning_instance_type,
        config.training_instance_type,
        config.endpoint_instance_type,
    ):
        assert instance_type in prices["sagemaker_per_hour"]


def test_docs_show_the_defaults_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main([]) == 0
    printed = capsys.readouterr().out.strip()
    docs = (ROOT / "docs" / "pipeline.md").read_text()
    assert printed in docs, "docs/pipeline.md's cost table is stale: paste the output of `make cost` into it"


# --- issue 16: the whole dataset, from per-image figures ----------------------------------------------------------


def test_whole_dataset_hours_follow_the_per_image_figures() -> None:
    """Prepare: photos per instance / min(CPU rate, S3 rate); trials and Train: epochs over the train + validation shares."""
    config, prices = _config(), cost.load_prices()
    figures = cost.PerImage(photos=100_000, kept_share=0.5, prep_cpu_s=0.01, s3_get_s=0.05, train_img_s=100.0, epochs=2, job_overhead_h=0)
    hours, _ = cost.whole_dataset_hours(config, prices, figures)
    cores = prices["vcpus"][config.processing_instance_type] / 2
    prep_rate = min(cores / 0.01, 16 / (2 * 0.05))  # ml.m5.xlarge: 2 cores -> 200/s; 16 workers -> 160/s
    assert hours.prepare == pytest.approx(100_000 / prep_rate / 3600)
    train, validation = 100_000 * 0.5 * 0.6, 100_000 * 0.5 * 0.2
    assert hours.trial == pytest.approx(2 * (train / 100 + validation / 300) / 3600)
    scaled = 100 * config.training_instance_count * figures.multi_instance_efficiency
    assert hours.train == pytest.approx(2 * (train / scaled + validation / (3 * scaled)) / 3600)
    assert hours.evaluate == pytest.approx(100_000 * 0.5 * 0.2 / (figures.eval_cpu_img_s_per_core * cores / 4) / 3600)


def test_prepare_instances_share_the_photos_and_multiply_the_line() -> None:
    prices, figures = cost.load_prices(), cost.PerImage(job_overhead_h=0)
    one, _ = cost.whole_dataset_hours(_config(), prices, figures)
    four, _ = cost.whole_dataset_hours(_config(prepareInstanceCount=4), prices, figures)
    assert four.prepare == pytest.approx(one.prepare / 4)
    lines = {line.step.split()[0]: line for line in cost.estimate(_config(), prices, four, prepare_instances=4)}
    assert lines["Prepare"].instances == 4
    assert lines["Prepare"].on_demand == pytest.approx(4 * four.prepare * prices["sagemaker_per_hour"]["ml.m5.xlarge"]["processing"])


def test_gpu_throughput_scales_the_h200_measurement_by_memory_bandwidth() -> None:
    prices = cost.load_prices()
    rate, source = cost.training_images_per_second("ml.g5.xlarge", prices, cost.PerImage())
    assert rate == pytest.approx(2985 * 600 / 4800) and "estimate" in source
    assert cost.training_images_per_second("ml.g5.xlarge", prices, cost.PerImage(train_img_s=250))[0] == 250
    with pytest.raises(cost.CostError, match="--train-img-s"):
        cost.training_images_per_second("ml.p5.48xlarge", prices, cost.PerImage())


def test_jobs_over_max_runtime_are_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--dataset", "all", "--epochs", "30"]) == 0
    printed = capsys.readouterr().out
    assert "warning: a tuning trial needs" in printed and "over maxRuntimeSeconds (7200 s" in printed
    assert cost.main(["--dataset", "all"]) == 0
    assert "warning" not in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--dataset", "all", "--epochs", "0"], ["--dataset", "all", "--train-img-s", "-5"]])
def test_bad_whole_dataset_figures_are_a_clear_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert cost.main(argv) == 2
    assert "must be positive" in capsys.readouterr().err


def test_benchmarks_show_the_whole_dataset_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--dataset", "all"]) == 0
    printed = capsys.readouterr().out.strip()
    assert "536,434 photos" in printed and "| total per run " in printed
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    section = docs[docs.index("## Whole dataset: cost") :]
    assert printed in section, "docs/benchmarks.md's whole-dataset cost is stale: paste `python -m infra.cost --dataset all` into it"
