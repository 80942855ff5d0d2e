"""Bin verification: how well p_match ranks wrong records, and the local twin's bulk throughput (issue 13).

    .venv/bin/python -m bench.verification_quality --part quality      # AUROC, precision/recall at the defaults
    .venv/bin/python -m bench.verification_quality --part throughput   # local twin, 1k and 10k photos
    .venv/bin/python -m bench.verification_quality                     # both

Quality: prep's test split of ../shared/abid (bench/results/tmp/abid_prepared/test, written by
bench.real_data_accuracy) scored by a trained model loaded and run exactly as the endpoint runs it
(inference.model_fn / input_fn / predict_fn on application/x-npy batches). Half of the records (seeded)
are changed by +-1 or +-2, always to another of the model's classes (a record outside the classes is
"review" by rule, never scored). Mismatch score = 1 - p_match; AUROC over all rows; precision and recall of
the verdict "mismatch" (and of "not match") at verification.py's default thresholds.

Throughput: `python -m local_mode.verify` as a subprocess on N photos (abid JPEGs copied under new ids,
records as a CSV), wall time end to end (model load, prepare, transform, report), the child's CPU seconds and peak RSS; the
1-minute load average is written with each figure because this 2-core machine is shared.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import verification

from bench import common

PREPARED = common.SCRATCH_DIR / "abid_prepared"
GPU_MODELS = common.ROOT / ".cache" / "gpu_models"
MODEL_DIR = common.SCRATCH_DIR / "verification_model"
RECORDS_SEED = 13  # which records are changed (corrupt_records); bench.ensemble scores the same ones


def assemble_model(weights: Path, meta: Path, target: Path = MODEL_DIR) -> Path:
    """model.pth + model_meta.json in one folder: the layout inference.load_model reads."""
    for path in (weights, meta):
        if not path.is_file():
            raise common.BenchError(f"{path} is missing: pass --weights/--meta of a model trained by train.py, or --model-dir")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, target / "model.pth")
    shutil.copyfile(meta, target / "model_meta.json")
    return target


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random positive > a random negative), ties counted half."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        raise ValueError("AUROC needs both positives and negatives")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def predict_split(model_dir: Path, images: np.ndarray, views: str, batch_size: int = 32) -> tuple[list[dict[str, float]], list[int], str]:
    import inference

    from local_mode.verify import container_environment

    with container_environment(inference.VIEWS_ENV, views):  # as Batch Transform's Environment sets it
        model = inference.model_fn(str(model_dir))
    rows: list[dict[str, float]] = []
    reply: dict[str, Any] = {}
    for start in range(0, len(images), batch_size):
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(images[start : start + batch_size]))
        reply = json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(buffer.getvalue(), inference.NPY), model)))
        rows.extend(p["probabilities"] for p in reply["predictions"])
    return rows, reply.get("classes", []), reply.get("model_version", "")


def corrupt_records(true_counts: list[int], classes: list[int], seed: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Half the rows (seeded) get a record off by +-1 or +-2, staying inside the classes. -> records, wrong mask, |delta|."""
    rng = np.random.default_rng(seed)
    n = len(true_counts)
    wrong = np.zeros(n, dtype=bool)
    wrong[rng.permutation(n)[: n // 2]] = True
    records, deltas = list(true_counts), np.zeros(n, dtype=np.int64)
    for i in np.flatnonzero(wrong):
        options = [d for d in (-2, -1, 1, 2) if true_counts[i] + d in classes]
        delta = int(rng.choice(options))
        records[i], deltas[i] = true_counts[i] + delta, abs(delta)
    return records, wrong, deltas


def quality(model_dir: Path, split_dir: Path, seed: int, views: str) -> dict[str, Any]:
    import dataset
    import verification

    split = dataset.load_split(split_dir)
    started = time.perf_counter()
    probs, classes, version = predict_split(model_dir, split.images, views)
    seconds = time.perf_counter() - started
    true_counts = [split.classes[t] for t in split.targets]
    records, wrong, deltas = corrupt_records(true_counts, split.classes, seed)
    results = [verification.verify(p, r) for p, r in zip(probs, records, strict=True)]
    p_match = np.array([r["p_match"] for r in results], dtype=np.float64)
    verdicts = np.array([r["verdict"] for r in results])
    score = 1.0 - p_match

    def precision_recall(flagged: np.ndarray) -> dict[str, float]:
        tp = int((flagged & wrong).sum())
        return {
            "precision": round(tp / max(1, int(flagged.sum())), 4),
            "recall": round(tp / max(1, int(wrong.sum())), 4),
            "flagged": int(flagged.sum()),
        }

    # Threshold sweep: what each candidate default would do (docs/verification.md picks from it).
    sweep = []
    for match_t in (0.3, 0.35, 0.4, 0.45, 0.5):
        for mismatch_t in (0.05, 0.1, 0.15, 0.2):
            v = np.where(p_match >= match_t, "match", np.where(p_match <= mismatch_t, "mismatch", "review"))
            sweep.append(
                {
                    "match_threshold": match_t,
                    "mismatch_threshold": mismatch_t,
                    "mismatch": precision_recall(v == "mismatch"),
                    "match_share_wrong": round(float(wrong[v == "match"].mean()) if (v == "match").any() else 0.0, 4),
                    "review_share": round(float((v == "review").mean()), 4),
                }
            )
    row = {
        "model_version": version,
        "views": views,
        "classes": classes,
        "rows": len(records),
        "wrong_records": int(wrong.sum()),
        "seed": seed,
        "auroc": round(auroc(score, wrong), 4),
        "auroc_off_by_1": round(auroc(score[(deltas == 1) | ~wrong], wrong[(deltas == 1) | ~wrong]), 4),
        "auroc_off_by_2": round(auroc(score[(deltas == 2) | ~wrong], wrong[(deltas == 2) | ~wrong]), 4),
        "match_threshold": verification.DEFAULT_MATCH_THRESHOLD,
        "mismatch_threshold": verification.DEFAULT_MISMATCH_THRESHOLD,
        "verdicts": {v: int((verdicts == v).sum()) for v in verification.VERDICTS},
        "mismatch": precision_recall(verdicts == "mismatch"),
        "not_match": precision_recall(verdicts != "match"),
        "wrong_among_match": round(float(wrong[verdicts == "match"].mean()) if (verdicts == "match").any() else 0.0, 4),
        "predict_seconds": round(seconds, 1),
    }
    return {"row": row, "sweep": sweep}


def make_photos(target: Path, n: int) -> Path:
    """N photos laid out like the bucket (abid JPEGs reused under new ids) and records.csv."""
    sources = sorted((common.ABID_DIR / "bin-images").glob("*.jpg"))
    if not sources:
        raise common.BenchError(f"{common.ABID_DIR}/bin-images has no JPEGs: the throughput part reuses the real photos")
    if target.exists():
        shutil.rmtree(target)
    (target / "bin-images").mkdir(parents=True)
    with open(target / "records.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["bin_id", "expected_count"])
        for i in range(n):
            source = sources[i % len(sources)]
            bin_id = f"b{i:06d}"
            os.link(source, target / "bin-images" / f"{bin_id}.jpg") if source.stat().st_dev == target.stat().st_dev else shutil.copyfile(
                source, target / "bin-images" / f"{bin_id}.jpg"
            )
            writer.writerow([bin_id, 1 + i % 5])
    return target


def throughput(model_dir: Path, sizes: list[int], command: str, views: str, name: str = "verification_throughput") -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        photos = make_photos(common.SCRATCH_DIR / f"verify_photos_{n}", n)
        output = common.SCRATCH_DIR / f"verify_out_{n}"
        shutil.rmtree(output, ignore_errors=True)
        child = [sys.executable, "-m", "local_mode.verify", "--model-dir", str(model_dir), "--photos", str(photos)]
        child += ["--records", str(photos / "records.csv"), "--output", str(output), "--views", views, "--no-progress"]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        log_path = output.parent / f"verify_{n}.log"  # a file, not a pipe: a full pipe would stall the child
        with open(log_path, "w") as log:
            process = subprocess.Popen(child, cwd=common.ROOT, stdout=log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise common.BenchError(f"local_mode.verify failed on {n} photos: see {log_path}")
        summary = json.loads((output / "report" / "summary.json").read_text())
        rows.append(
            {
                "photos": n,
                "views": views,
                "seconds": round(seconds, 1),
                "photos_per_s": round(n / seconds, 1),
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                # CPU seconds of the child (all threads): far less sensitive to other processes' load than wall time.
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
                "photos_per_cpu_s": round(n / (usage.ru_utime + usage.ru_stime), 1),
                "rows_in_report": summary["rows"],
                "load_avg_1m_before": round(load_before, 2),
                "load_avg_1m_after": round(os.getloadavg()[0], 2),
            }
        )
        print(rows[-1], flush=True)
        extra = {"child_command": " ".join(["python", *child[1:]]).replace(str(n), "N")}
        common.write_result(name, command, rows, extra)  # after each size: a long run keeps what it measured
        shutil.rmtree(photos)
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("quality", "throughput", "all"), default="all")
    parser.add_argument("--model-dir", type=Path, help="a train.py model dir (default: assemble --weights + --meta)")
    parser.add_argument("--weights", type=Path, default=GPU_MODELS / "m0_model.pth")
    parser.add_argument("--meta", type=Path, default=GPU_MODELS / "m0_model_meta.json")
    parser.add_argument("--data", type=Path, default=PREPARED / "test", help="prep.py test split (images.npy + labels.json)")
    parser.add_argument("--seed", type=int, default=RECORDS_SEED)
    parser.add_argument("--sizes", default="1000,10000", help="photo counts for the throughput part")
    parser.add_argument("--views", choices=verification.VIEWS, default=verification.DEFAULT_BULK_VIEWS, help="what the model serves")
    parser.add_argument("--tag", default="", help="suffix of the result files' names (keeps another model's figures beside these)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        model_dir = args.model_dir or assemble_model(args.weights, args.meta)
        command = common.command_line("bench.verification_quality", argv)
        suffix = f"_{args.tag}" if args.tag else ""
        if args.part in ("quality", "all"):
            result = quality(model_dir, args.data, args.seed, args.views)
            path = common.write_result(f"verification_quality{suffix}", command, [result["row"]], {"threshold_sweep": result["sweep"]})
            print(json.dumps(result["row"], indent=2))
            print(f"-> {common.display(path)}")
        if args.part in ("throughput", "all"):
            throughput(model_dir, [int(s) for s in args.sizes.split(",")], command, args.views, f"verification_throughput{suffix}")
            print(f"-> {common.display(common.RESULTS_DIR / f'verification_throughput{suffix}.json')}")
    except common.BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
