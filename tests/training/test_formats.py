"""metrics_format, search_space and synthetic_bins: the small shared APIs (docs/contracts.md)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import metrics_format
import pytest
import search_space
import synthetic_bins
import train


def test_every_defined_metric_is_printed_and_parsed_back() -> None:
    values = {name: 0.25 + i for i, name in enumerate(metrics_format.METRIC_NAMES)} | {"epoch": 3}
    line = metrics_format.format_metrics(values)
    for definition in metrics_format.METRIC_DEFINITIONS:
        assert float(re.search(definition["Regex"], line).group(1)) == pytest.approx(values[definition["Name"]])
    assert metrics_format.parse_metrics(f"noise\n{line}\nINFO done") == [{k: float(v) for k, v in values.items()}]
    assert metrics_format.OBJECTIVE_METRIC in metrics_format.METRIC_NAMES


def test_names_do_not_match_inside_longer_names_and_nan_is_left_out() -> None:
    line = metrics_format.format_metrics({"pretrain:loss": 9.0, "train:loss": 1.5, "validation:rmse": float("nan")})
    loss = next(d["Regex"] for d in metrics_format.METRIC_DEFINITIONS if d["Name"] == "train:loss")
    assert re.search(loss, line).group(1) == "1.5"
    assert "validation:rmse" not in line
    with pytest.raises(ValueError, match="metric name 'Bad Name' is invalid"):
        metrics_format.format_metrics({"Bad Name": 1.0})


def test_search_space_matches_train_flags_and_sagemaker_shape() -> None:
    flags = {action.dest for action in train.get_args_parser()._actions}
    for space, static in (
        (search_space.SEARCH_SPACE, search_space.STATIC_HYPERPARAMETERS),
        (search_space.DEMO_SEARCH_SPACE, search_space.DEMO_STATIC_HYPERPARAMETERS),
    ):
        for name in [*space, *static]:
            assert name.replace("-", "_") in flags, f"{name} is not a train.py flag"
        point = search_space.sample(random.Random(0), space)
        args = train.parse_args([*search_space.to_cli_args(point | static), "--train", "t", "--validation", "v"])
        assert args.epochs == point["epochs"]
    ranges = search_space.to_sagemaker_ranges()
    assert set(ranges) == {"ContinuousParameterRanges", "IntegerParameterRanges", "CategoricalParameterRanges"}
    lr = next(r for r in ranges["ContinuousParameterRanges"] if r["Name"] == "lr")
    assert lr["ScalingType"] == "Logarithmic" and float(lr["MinValue"]) < float(lr["MaxValue"])
    assert all(isinstance(v, str) for r in ranges["CategoricalParameterRanges"] for v in r["Values"])


def test_sampling_stays_in_range() -> None:
    rng = random.Random(1)
    for _ in range(200):
        for space in (search_space.SEARCH_SPACE, search_space.DEMO_SEARCH_SPACE):
            point = search_space.sample(rng, space)
            for name, parameter in space.items():
                if isinstance(parameter, search_space.Categorical):
                    assert point[name] in parameter.values
                else:
                    assert parameter.min <= point[name] <= parameter.max, (name, point[name])
                    assert isinstance(point[name], int) == isinstance(parameter, search_space.Integer)
    with pytest.raises(ValueError, match="Logarithmic scaling needs min > 0"):
        search_space.Continuous(0.0, 1.0, "Logarithmic")


def test_synthetic_bins_are_deterministic_and_in_the_bucket_layout(tmp_path: Path) -> None:
    first = synthetic_bins.generate(tmp_path / "a", 10, seed=2)
    second = synthetic_bins.generate(tmp_path / "b", 10, seed=2)
    assert first == second
    assert sorted(c for _, c in first) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    for image_id, count in first:
        assert (tmp_path / "a" / "bin-images" / f"{image_id}.jpg").read_bytes() == (
            tmp_path / "b" / "bin-images" / f"{image_id}.jpg"
        ).read_bytes()
        assert json.loads((tmp_path / "a" / "metadata" / f"{image_id}.json").read_text())["EXPECTED_QUANTITY"] == count
    assert synthetic_bins.generate(tmp_path / "c", 10, seed=3) != first


def test_synthetic_cli_rejects_bad_classes(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        synthetic_bins.main(["--output", str(tmp_path), "--classes", "one,two"])
    assert "--classes 'one,two' is invalid" in capsys.readouterr().err
    assert synthetic_bins.main(["--output", str(tmp_path), "--count", "0"]) == 2
