"""bench.recipe_table: docs/benchmarks.md §5's table of every recipe is generated from the result files."""

from __future__ import annotations

import json

from bench import real_data_accuracy, recipe_table


def test_recipe_flags_drop_only_the_per_run_plumbing() -> None:
    command = (
        "(cd training_code && python train.py --model efficientnet_lite0 --image-size 192 --seed 7 "
        "--train /p/train --validation /p/validation --test /p/test --model-dir /r/model --output-data-dir /r/out "
        "--checkpoint-dir /r/ck --model-version x-s7)"
    )
    assert recipe_table.recipe_flags(command) == "train.py --model efficientnet_lite0 --image-size 192 --seed 7"


def test_the_docs_table_is_the_generated_one_with_every_run() -> None:
    table = recipe_table.render()
    runs = sum(len(json.loads(p.read_text())["rows"]) for p in recipe_table.RESULTS.glob("sweep*/sweep.json"))
    runs += sum(len(json.loads(p.read_text())["rows"]) for p in recipe_table.RESULTS.glob("accuracy_*.json"))
    assert table.count("\n| ") == runs  # one line per run after the header and separator
    docs = recipe_table.DOCS.read_text()
    assert f"{recipe_table.BEGIN}\n{table}{recipe_table.END}" in docs, "run: python -m bench.recipe_table --write"


def test_the_default_recipe_is_the_measured_winner_with_auxiliary_photos_and_flips() -> None:
    default = real_data_accuracy.RECIPES[real_data_accuracy.DEFAULT_RECIPE]
    assert default == [*real_data_accuracy.RECIPES["lite0-im-160-e6-cl0.5-flip4"][:7], "4", "--lr", "0.001", "--batch-size", "64",
        "--count-loss-weight", "0.5", "--tta", "flip4", "--auxiliary", "auto"]  # fmt: skip
    assert real_data_accuracy.get_args_parser().parse_args([]).recipe == real_data_accuracy.DEFAULT_RECIPE
