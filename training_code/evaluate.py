"""The pipeline's Evaluate step (SageMaker Processing): score a trained model on the test channel.

    python evaluate.py --model model.tar.gz --test prepared/test --output evaluation/

--model is a model.tar.gz or an unpacked model dir (train.py's layout). Writes evaluation.json (with the
calibration block: ECE, reliability bins, accuracy on the most-confident 50 % / 75 %), confusion_matrix.png,
reliability.png and curves.png (from the training history stored with the model) to --output, with the
same metric maths as train.py (scoring.py, engine.py, calibration.py) and the model as served: its stored
temperature and test-time flips (model_meta.json) apply.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import calibration
import dataset
import engine
import inference
import numpy as np
import scoring
import torch

PROCESSING_MODEL = "/opt/ml/processing/model"
PROCESSING_TEST = "/opt/ml/processing/test"
PROCESSING_OUTPUT = "/opt/ml/processing/evaluation"


def unpack_model(path: Path, into: Path) -> Path:
    """A model dir as is; a .tar.gz (or a folder holding exactly one, as a Processing input) unpacked into `into`."""
    if path.is_dir() and (path / "model_meta.json").is_file():
        return path
    if path.is_dir():
        archives = sorted(path.glob("*.tar.gz"))
        if len(archives) != 1:
            raise ValueError(
                f"--model {path} holds no model_meta.json and {len(archives)} .tar.gz files: give a model dir or one model.tar.gz"
            )
        path = archives[0]
    if not path.is_file() or not tarfile.is_tarfile(path):
        raise ValueError(f"--model {path} is neither a model dir nor a readable model.tar.gz")
    with tarfile.open(path) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(into, filter="data")  # refuses absolute paths and links out of `into`
        else:  # Python < 3.11.4 (older DLCs)
            archive.extractall(into)  # noqa: S202 (our own training job's archive)
    return into


def evaluate_model(model_path: str | Path, test_dir: str | Path, output_dir: str | Path, batch_size: int = 64) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        loaded = inference.load_model(unpack_model(Path(model_path), Path(scratch)))
    split = dataset.load_split(test_dir, loaded.classes)
    # One pass through the served model (its stored temperature and test-time flips included): the
    # probabilities give both the metrics and the calibration block.
    logits = engine.predict_logits(loaded.model, split, batch_size, loaded.device)
    matrix, _, sq_error = engine.score_logits(logits, split.targets, loaded.classes)
    train_counts = loaded.meta.get("train_class_counts")
    majority = None  # the test set's own commonest class when the model does not record the training mix
    if train_counts:
        commonest = max(loaded.classes, key=lambda c: train_counts.get(str(c), 0))
        majority = float(np.mean(split.targets == loaded.classes.index(commonest)))
    report = scoring.report(
        matrix, loaded.classes, expected_sq_error=sq_error, model_version=loaded.model_version, majority_baseline=majority
    )
    report["split"] = "test"
    if "kept_epoch" in loaded.meta:
        report["kept_epoch"] = loaded.meta["kept_epoch"]
    report["tta"] = loaded.meta.get("tta", "none")
    probabilities = logits.softmax(dim=1).numpy()
    report["calibration"] = calibration.summary(probabilities, split.targets, float(loaded.meta.get("temperature", 1.0)))
    scoring.write_report(report, output_dir, loaded.meta.get("history"))  # + reliability.png
    return report


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a trained model on a prepared test channel.")
    parser.add_argument("--model", default=PROCESSING_MODEL, help="model.tar.gz, a folder with one, or a model dir")
    parser.add_argument("--test", default=PROCESSING_TEST, help="the test channel (prep.py split folder)")
    parser.add_argument("--output", default=PROCESSING_OUTPUT, help="where evaluation.json and the PNGs go")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        report = evaluate_model(args.model, args.test, args.output, args.batch_size)
    except (ValueError, OSError, tarfile.TarError) as error:  # DataError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"accuracy {report['accuracy']:.4f}, rmse {report['rmse']:.3f}, off-by-one {report['off_by_one']:.3f}, "
        f"ece {report['calibration']['ece']:.3f}, most-confident 50 % {report['calibration']['accuracy_most_confident_50']:.4f}, "
        f"n {report['n']} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
