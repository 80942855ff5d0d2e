"""Seed ensembles and other what-ifs scored from the served models' test probabilities (issue 12).

    # where the models are (the GPU machine after bench.recipe_sweep): one npz of every member's served probabilities
    python -m bench.ensemble dump --test PREPARED/test --models RUN/model [RUN/model ...] --out probs.npz
    # anywhere: score each member and the mean of the first k members of every group
    python -m bench.ensemble score --probabilities probs.npz --groups NAME=MEMBER,MEMBER,... [...] --out result.json

A member's probabilities are exactly what inference.py serves (its stored temperature and test-time flips applied),
so an ensemble here is the mean of what its members would answer. The test split is the one every recipe is scored
on (prep's test split of ../shared/abid); the targets travel in the npz, with the photo ids to prove the order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench import common


def served_probabilities(model_dir: Path, test_dir: Path) -> tuple[np.ndarray, Any]:
    """[N, classes] probabilities the served model gives for the test split, and the split."""
    import dataset
    import engine
    import inference

    loaded = inference.load_model(model_dir)
    split = dataset.load_split(test_dir, loaded.classes)
    logits = engine.predict_logits(loaded.model, split, 128, loaded.device)
    return logits.softmax(dim=1).numpy(), split


def dump(models: list[Path], test_dir: Path, out: Path, prefix: str = "") -> None:
    arrays: dict[str, np.ndarray] = {}
    for model_dir in models:
        probabilities, split = served_probabilities(model_dir, test_dir)
        arrays[prefix + member_name(model_dir)] = probabilities.astype(np.float32)
        arrays["_targets"], arrays["_ids"] = np.asarray(split.targets), np.asarray(split.ids)
        print(f"{prefix + member_name(model_dir)}: {len(probabilities)} photos")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)


def member_name(model_dir: Path) -> str:
    """RUN/model -> RUN's folder name (bench.recipe_sweep names runs RECIPE-sSEED)."""
    return model_dir.parent.name if model_dir.name == "model" else model_dir.name


def score(probabilities: np.ndarray, targets: np.ndarray, classes: list[int]) -> dict[str, float]:
    """The figures of docs/benchmarks.md's recipe table, computed by evaluate.py's own scoring (scoring.report,
    calibration.summary) from served probabilities, and issue 13's verification AUROC (bench.verification_quality's
    seeded records: half changed by +-1 or +-2; mismatch score 1 - p_match)."""
    import calibration
    import scoring

    counts = np.asarray(classes, dtype=np.float64)
    matrix = scoring.confusion_matrix(targets, probabilities.argmax(axis=1), len(classes))
    expected_sq_error = float(((probabilities.astype(np.float64) @ counts - counts[targets]) ** 2).sum())
    report = scoring.report(matrix, classes, expected_sq_error=expected_sq_error)
    confidence = calibration.summary(probabilities, targets, temperature=1.0)  # the temperature field is unused here
    return {
        **{k: report[k] for k in ("accuracy", "rmse", "rmse_expected", "off_by_one")},
        **{k: confidence[k] for k in ("ece", "accuracy_most_confident_50", "accuracy_most_confident_75")},
        "verification_auroc": verification_auroc(probabilities, targets, classes),
    }


def verification_auroc(probabilities: np.ndarray, targets: np.ndarray, classes: list[int]) -> float:
    from bench import verification_quality as vq

    records, wrong, _ = vq.corrupt_records([classes[t] for t in targets], classes, vq.RECORDS_SEED)
    p_match = probabilities[np.arange(len(records)), [classes.index(r) for r in records]]
    return vq.auroc(1.0 - p_match.astype(np.float64), wrong)


def score_groups(arrays: dict[str, np.ndarray], groups: dict[str, list[str]], classes: list[int]) -> list[dict[str, Any]]:
    """One row per member, and per group one row for the mean of its first k members, k = 2..len(group)."""
    targets = arrays["_targets"]
    rows = [{"members": [name], **score(arrays[name], targets, classes)} for name in sorted(set(sum(groups.values(), [])))]
    for group, members in groups.items():
        for k in range(2, len(members) + 1):
            mean = np.mean([arrays[m] for m in members[:k]], axis=0)
            rows.append({"group": group, "k": k, "members": members[:k], **score(mean, targets, classes)})
    return rows


def parse_groups(specs: list[str], available: set[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, _, members = spec.partition("=")
        names = [m for m in members.split(",") if m]
        missing = [m for m in names if m not in available]
        if not name or not names:
            raise common.BenchError(f"--groups {spec!r}: expected NAME=MEMBER,MEMBER,...")
        if missing:
            raise common.BenchError(f"--groups {spec!r}: unknown member(s) {', '.join(missing)} (the file has {sorted(available)})")
        groups[name] = names
    return groups


def load_dumps(paths: list[Path]) -> dict[str, np.ndarray]:
    """One or more dumps as one: the same test photos in the same order, every member name once."""
    arrays: dict[str, np.ndarray] = {}
    for path in paths:
        if not path.is_file():
            raise common.BenchError(f"--probabilities {path}: no such file (write one with `bench.ensemble dump`)")
        with np.load(path) as npz:
            for name in npz.files:
                if name.startswith("_") and name in arrays and not np.array_equal(arrays[name], npz[name]):
                    raise common.BenchError(f"--probabilities {path}: its {name[1:]} differ from the other dumps': score one test split")
                if not name.startswith("_") and name in arrays:
                    raise common.BenchError(f"--probabilities {path}: member {name} is in another dump too (dump with --prefix)")
                arrays[name] = npz[name]
    return arrays


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Score seed ensembles from served test probabilities.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    dump_parser = verbs.add_parser("dump", help="write every model's served test probabilities into one npz")
    dump_parser.add_argument("--test", type=Path, required=True, help="prep.py's test split")
    dump_parser.add_argument("--models", type=Path, nargs="+", required=True, help="train.py model dirs")
    dump_parser.add_argument("--out", type=Path, required=True, help="the npz to write")
    dump_parser.add_argument("--prefix", default="", help="prepended to every member's name (e.g. refit-)")
    score_parser = verbs.add_parser("score", help="score members and ensembles from a dump")
    score_parser.add_argument("--probabilities", type=Path, nargs="+", required=True, help="one or more dumps' npz files")
    score_parser.add_argument("--classes", default="1,2,3,4,5", help="the models' classes, in order")
    score_parser.add_argument("--groups", nargs="+", default=[], help="NAME=MEMBER,MEMBER,...: ensembles of the first k")
    score_parser.add_argument("--out", type=Path, help="result JSON (default: print only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        if args.verb == "dump":
            dump(args.models, args.test, args.out, args.prefix)
            return 0
        arrays = load_dumps(args.probabilities)
        members = {name for name in arrays if not name.startswith("_")}
        rows = score_groups(arrays, parse_groups(args.groups, members), [int(c) for c in args.classes.split(",")])
    except common.BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for row in rows:
        label = f"{row['group']} k={row['k']}" if "group" in row else row["members"][0]
        print(
            f"{label:48s} top-1 {row['accuracy']:.4f} rmse {row['rmse']:.3f} within-1 {row['off_by_one']:.3f} "
            f"ece {row['ece']:.3f} top50 {row['accuracy_most_confident_50']:.3f} auroc {row['verification_auroc']:.3f}"
        )
    if args.out:
        args.out.write_text(
            json.dumps({"benchmark": "ensemble", "command": common.command_line("bench.ensemble", argv), "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
