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
