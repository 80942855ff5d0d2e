"""Run several real-data recipes (bench.real_data_accuracy.RECIPES) side by side and tabulate them.

    .venv/bin/python -m bench.recipe_sweep --prepared DIR --out DIR --recipes lite0-im-128-e30,lite0-im-160-e30 \
        [--parallel 4] [--seeds 42,7] [--threads 1] [--extra "--workers 2"]

Made for the accelerator machine, where one GPU trains many small recipes at once; on CPU use --parallel 1.
Each run is `train.py <recipe flags> --seed S` on prep.py's channels; its evaluation.json (test split) and
model_meta.json (history, kept epoch, temperature) become one row of OUT/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from bench import common
from bench.real_data_accuracy import RECIPES


def run_one(recipe: str, seed: int, prepared: Path, out: Path, threads: int, extra: list[str]) -> dict[str, Any]:
    run_dir = out / f"{recipe}-s{seed}"
    flags = [
        *RECIPES[recipe], "--seed", str(seed), *extra,
        "--train", str(prepared / "train"), "--validation", str(prepared / "validation"), "--test", str(prepared / "test"),
        "--model-dir", str(run_dir / "model"), "--output-data-dir", str(run_dir / "output"),
        "--checkpoint-dir", str(run_dir / "checkpoints"), "--model-version", f"{recipe}-s{seed}",
    ]  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (run_dir / "train.log").open("w") as log:
        code = subprocess.run(
            [sys.executable, "train.py", *flags],
            cwd=common.ROOT / "training_code",
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    row: dict[str, Any] = {"recipe": recipe, "seed": seed, "command": "(cd training_code && python train.py " + shlex.join(flags) + ")"}
    row["wall_seconds"] = round(time.monotonic() - started, 1)
    if code != 0:
        row["error"] = f"train.py exited with {code}: " + (run_dir / "train.log").read_text()[-800:]
        return row
    evaluation = json.loads((run_dir / "output" / "evaluation.json").read_text())
    meta = json.loads((run_dir / "model" / "model_meta.json").read_text())
    history = meta["history"]
    calibration = evaluation.get("calibration", {})
    row.update(
        test_accuracy=evaluation["accuracy"],
        test_rmse=evaluation["rmse"],
        test_rmse_expected=evaluation.get("rmse_expected"),
        test_off_by_one=evaluation["off_by_one"],
        ece=calibration.get("ece"),
        accuracy_most_confident_50=calibration.get("accuracy_most_confident_50"),
        accuracy_most_confident_75=calibration.get("accuracy_most_confident_75"),
        temperature=meta.get("temperature"),
        kept_epoch=meta.get("kept_epoch"),
        best_validation_accuracy=max(h["validation:accuracy"] for h in history),
        last_validation_accuracy=history[-1]["validation:accuracy"],
        epochs=len(history),
        mean_epoch_seconds=sum(h["epoch_seconds"] for h in history) / len(history),
        model_dir=str(run_dir / "model"),
        test_accuracy_flip4=flip_averaged_accuracy(run_dir / "model", prepared / "test"),
    )
    return row


def flip_averaged_accuracy(model_dir: Path, test_dir: Path) -> float:
    """Test accuracy when the probabilities of the photo and its three flips are averaged (test-time augmentation)."""
    import dataset
    import inference
    import numpy as np
    import torch

    loaded = inference.load_model(model_dir)
    split = dataset.load_split(test_dir, loaded.classes)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(split), 128):
            images = torch.from_numpy(np.array(split.images[start : start + 128])).to(loaded.device)
            views = (images, images.flip(1), images.flip(2), images.flip(1).flip(2))  # NHWC: vertical, horizontal, both
            probabilities = sum(loaded.model(v).float().softmax(dim=1) for v in views)
            correct += int((probabilities.argmax(dim=1).cpu().numpy() == split.targets[start : start + 128]).sum())
    return correct / len(split)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train several recipes on prepared real photos and tabulate test-split figures.")
    parser.add_argument("--prepared", type=Path, required=True, help="prep.py output (train/, validation/, test/)")
    parser.add_argument("--out", type=Path, required=True, help="where runs and sweep.json go")
    parser.add_argument("--recipes", required=True, help="comma-separated names from bench.real_data_accuracy.RECIPES")
    parser.add_argument("--seeds", default="42", help="comma-separated seeds; every recipe runs once per seed")
    parser.add_argument("--parallel", type=int, default=1, help="runs at the same time")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    parser.add_argument("--extra", default="", help="extra train.py flags for every run (e.g. '--workers 2')")
    args = parser.parse_args(argv)
    names = [r for r in args.recipes.split(",") if r]  # NAME runs once per --seeds seed; NAME@SEED once with that seed
    unknown = [r for r in names if r.split("@")[0] not in RECIPES]
    if unknown or args.parallel < 1:
        print(f"error: unknown recipe(s) {unknown} (choose from {', '.join(RECIPES)}) or --parallel < 1", file=sys.stderr)
        return 2
    jobs = [(r, int(s)) for s in args.seeds.split(",") for r in names if "@" not in r]
    jobs += [(r.split("@")[0], int(r.split("@")[1])) for r in names if "@" in r]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(run_one, *job, args.prepared, args.out, args.threads, shlex.split(args.extra)) for job in jobs]
        for future in as_completed(futures):  # rewrite the table after every run: a cut-short sweep keeps what finished
            rows.append(future.result())
            (args.out / "sweep.json").write_text(json.dumps({"machine": common.machine(), "rows": rows}, indent=2) + "\n")
    for row in rows:
        if "error" in row:
            print(f"{row['recipe']} s{row['seed']}: {row['error'][:300]}")
        else:
            print(
                f"{row['recipe']:32s} s{row['seed']:<3d} test {row['test_accuracy']:.4f} rmse {row['test_rmse']:.3f} "
                f"ece {row['ece']:.3f} top50 {row['accuracy_most_confident_50']:.3f} val {row['best_validation_accuracy']:.4f} "
                f"kept {row['kept_epoch']} flip4 {row['test_accuracy_flip4']:.4f} {row['mean_epoch_seconds']:.1f}s/epoch"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
