"""Post-hoc decision rules on one trained model's test-split probabilities: what each would score (issue 7, item 5).

    .venv/bin/python -m bench.decision_rules --model-dir RUN/model [--data bench/results/tmp/abid_prepared] [--recipe NAME]

The model is loaded exactly as the endpoint loads it (training_code/inference.load_model). Rules, all
from the same weights, no retraining:
- argmax: the served rule (inference.py's `count`).
- expected: the probability-weighted count, rounded to the nearest class (lower RMSE when the model is unsure
  between neighbours; DESIGN.md measured ~0.1 RMSE less).
- tta-argmax / tta-expected: the same on probabilities averaged over the 4 flips (none, horizontal,
  vertical, both), which keep the count; costs 4 forward passes per photo.
Metrics come from training_code/scoring.report (the same definitions as evaluation.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench import common

PREPARED = common.SCRATCH_DIR / "abid_prepared"


def probabilities(model, images: np.ndarray, flips: bool, batch_size: int = 64) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.array(images[start : start + batch_size]))  # a writable copy of the memory-mapped rows
            views = [batch, batch.flip(2), batch.flip(1), batch.flip(1).flip(2)] if flips else [batch]  # NHWC: 2 = width, 1 = height
            out.append(torch.stack([model(v).float().softmax(dim=1) for v in views]).mean(dim=0).numpy())
    return np.concatenate(out)


def score_rules(probs: np.ndarray, targets: np.ndarray, classes: list[int], tta_probs: np.ndarray | None) -> list[dict]:
    import scoring

    counts = np.asarray(classes, dtype=np.float64)
    rows = []
    for label, p in (("", probs), ("tta-", tta_probs)):
        if p is None:
            continue
        expected_index = np.abs((p @ counts)[:, None] - counts[None, :]).argmin(axis=1)  # nearest class to sum_k p_k * count_k
        for rule, predicted in (("argmax", p.argmax(axis=1)), ("expected", expected_index)):
            matrix = scoring.confusion_matrix(targets, predicted, len(classes))
            report = scoring.report(matrix, classes)
            rows.append(
                {
                    "rule": label + rule,
                    "n": report["n"],
                    "accuracy": report["accuracy"],
                    "rmse": report["rmse"],
                    "off_by_one": report["off_by_one"],
                    "per_class_recall": {c: round(v["recall"], 4) for c, v in report["per_class"].items()},
                }
            )
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Score decision rules (argmax, expected count, flip TTA) on one model's test split.")
    parser.add_argument("--model-dir", type=Path, required=True, help="a train.py model dir (model.pth + model_meta.json)")
    parser.add_argument("--data", type=Path, default=PREPARED, help="prep.py output folder; its test/ channel is scored")
    parser.add_argument("--recipe", default="", help="name used in the result file (decision_rules_<recipe>.json)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    import dataset
    import inference
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        loaded = inference.load_model(args.model_dir, torch.device("cpu"))
        split = dataset.load_split(args.data / "test", loaded.classes)
    except ValueError as error:  # DataError is a ValueError; load_model raises ValueError for a bad model dir
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = score_rules(
        probabilities(loaded.model, split.images, False), split.targets, loaded.classes, probabilities(loaded.model, split.images, True)
    )
    common.print_table(rows, ["rule", "n", "accuracy", "rmse", "off_by_one"])
    name = f"decision_rules_{args.recipe}" if args.recipe else "decision_rules"
    path = common.write_result(
        name, common.command_line("bench.decision_rules", argv), rows, {"model_dir": common.display(args.model_dir.resolve())}
    )
    print(f"wrote {common.display(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
