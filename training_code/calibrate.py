"""Fit a model dir's calibration temperatures again, on a validation split (prep.py's split folder).

    python calibrate.py --model MODEL_DIR --validation PREPARED/validation [--batch-size 64]

Rewrites model_meta.json's `temperature` (the served path: with test-time flips, the flip-averaged probabilities)
and `single_view_temperature` (the photo alone, inference.py's views "one"), fitted exactly as train.py fits them
(calibration.fit_temperatures), and records the split under `calibrated_on`. For a model trained before
single_view_temperature existed, or to recalibrate on newer photos of the same classes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import calibration
import dataset
import engine
import inference
import torch


def calibrate(model_dir: Path, validation_dir: Path, batch_size: int = 64) -> dict[str, Any]:
    """Fit both temperatures on the split and write them into model_meta.json; -> the updated meta."""
    net, meta = inference.read_model_dir(model_dir)
    split = dataset.load_split(validation_dir, meta["classes"])
    if len(split) == 0:
        raise ValueError(f"{validation_dir} holds no photos: the temperatures need a labelled split to fit on")
    net.eval()
    logits = engine.predict_logits(net, split, batch_size, torch.device("cpu"), views=True)  # T = 1 as read
    meta.update(calibration.fit_temperatures(logits, torch.from_numpy(split.targets)))
    meta["calibrated_on"] = {"split": str(validation_dir), "photos": len(split)}
    (model_dir / "model_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Fit a model dir's calibration temperatures on a validation split.")
    parser.add_argument("--model", type=Path, required=True, help="a train.py model dir (model.pth + model_meta.json)")
    parser.add_argument("--validation", type=Path, required=True, help="prep.py split folder (images.npy + labels.json)")
    parser.add_argument("--batch-size", type=int, default=64, help="photos per forward pass")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        meta = calibrate(args.model, args.validation, args.batch_size)
    except ValueError as error:  # dataset.DataError too
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{args.model / 'model_meta.json'}: temperature {meta['temperature']:.3f} ({meta.get('tta', 'none')}), "
        f"single view {meta['single_view_temperature']:.3f}, on {meta['calibrated_on']['photos']} photos"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
