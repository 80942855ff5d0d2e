"""Lambda preprocessing per image: naive full decode + resize vs. the shipped draft-mode path (issue 7, item 1).

    .venv/bin/python -m bench.preprocess_latency [--repeats 5] [--synthetic 40] [--quick]

Photo sets: the real originals in ../shared/abid (index.csv rows that are not 224x224; skipped when the
folder is absent), a sample of its 224x224 copies, and 1000x800 synthetic JPEGs (a synthetic bin scaled
up with sensor-like noise, quality 90: the size of a pod camera's photo). Bytes are read into memory
first: the Lambda gets the body in memory, so file I/O is not part of the figure.

Paths timed on each photo (median of --repeats calls per photo, then median and p90 over photos):
- naive: preprocessing_spec.preprocess_bytes(draft=False): full-resolution decode, then bilinear resize.
- shipped: preprocess_bytes(draft=True), what lambda/preprocess/handler.py runs.
- draft>=168: a candidate, not shipped: let libjpeg's scaled decode go down to >= 168 px a side (instead of
  >= 224) and stretch up from there. Entropy decoding dominates after draft mode, so a smaller DCT scale is
  the remaining lever; the price is detail, shown by the difference column. Reported for the spec owner.
Each path's mean absolute difference from naive (uint8 levels) is reported next to its speed.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from bench import common

# The table's columns, here and in docs/benchmarks.md (bench/report.py).
COLUMNS = [
    "set",
    "path",
    "photos",
    "median_pixels",
    "median_ms",
    "median_cpu_ms",
    "p90_ms",
    "speedup_vs_naive",
    "cpu_speedup_vs_naive",
    "mean_abs_diff_vs_naive",
]

SYNTHETIC_SIZE = (1000, 800)
ABID_224_SAMPLE = 100


CANDIDATE_DRAFT_MIN = 168


def _draft_candidate(data: bytes) -> bytes:
    """The candidate path: the spec's steps, with a draft request of CANDIDATE_DRAFT_MIN instead of IMAGE_SIZE."""
    import preprocessing_spec as spec

    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB", (CANDIDATE_DRAFT_MIN, CANDIDATE_DRAFT_MIN))
    image.load()
    image = ImageOps.exif_transpose(image).convert("RGB")
    if image.size != (spec.IMAGE_SIZE, spec.IMAGE_SIZE):
        image = image.resize((spec.IMAGE_SIZE, spec.IMAGE_SIZE), Image.Resampling.BILINEAR)
    return image.tobytes()


def synthetic_photos(count: int, size: tuple[int, int] = SYNTHETIC_SIZE, seed: int = 7) -> list[bytes]:
    """Large JPEGs built from synthetic bins: upscaled, with per-pixel noise so they compress like camera photos."""
    import synthetic_bins

    rng = np.random.default_rng(seed)
    photos = []
    for index in range(count):
        base = synthetic_bins.render_bin(seed, index, 1 + index % 5).resize(size, Image.Resampling.BICUBIC)
        noisy = np.asarray(base, dtype=np.int16) + rng.normal(0, 5, size=(size[1], size[0], 3)).astype(np.int16)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


def abid_photos() -> tuple[list[bytes], list[bytes]]:
    """(originals: every index.csv row that is not 224x224, the first ABID_224_SAMPLE 224x224 copies)."""
    originals, copies = [], []
    with (common.ABID_DIR / "index.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            path = common.ABID_DIR / "bin-images" / f"{row['image_id']}.jpg"
            if not path.is_file():
                continue
            if (int(row["width"]), int(row["height"])) != (224, 224):
                originals.append(path.read_bytes())
            elif len(copies) < ABID_224_SAMPLE:
                copies.append(path.read_bytes())
    return originals, copies


def measure_set(name: str, photos: list[bytes], paths: dict[str, Callable[[bytes], bytes]], repeats: int) -> list[dict]:
    reference = [np.frombuffer(paths["naive"](p), dtype=np.uint8).astype(np.int16) for p in photos]
    sizes = [Image.open(io.BytesIO(p)).size for p in photos]
    # Per photo, the paths are timed in turns (interleaved), so a burst of load elsewhere hits them alike.
    per_photo_all = [
        common.interleaved_median_ms({label: (lambda p=p, fn=fn: fn(p)) for label, fn in paths.items()}, repeats=repeats) for p in photos
    ]
    rows = []
    for label, fn in paths.items():
        per_photo = [medians[label]["wall_ms"] for medians in per_photo_all]
        per_photo_cpu = [medians[label]["cpu_ms"] for medians in per_photo_all]
        diffs = [
            float(np.abs(np.frombuffer(fn(p), dtype=np.uint8).astype(np.int16) - ref).mean())
            for p, ref in zip(photos, reference, strict=True)
        ]
        rows.append(
            {
                "set": name,
                "path": label,
                "photos": len(photos),
                "median_pixels": int(statistics.median(w * h for w, h in sizes)),
                "median_ms": statistics.median(per_photo),
                "p90_ms": float(np.percentile(per_photo, 90)),
                "median_cpu_ms": statistics.median(per_photo_cpu),
                "mean_abs_diff_vs_naive": statistics.fmean(diffs),
                "max_mean_abs_diff_vs_naive": max(diffs),
            }
        )
    naive, naive_cpu = rows[0]["median_ms"], rows[0]["median_cpu_ms"]
    for row in rows:
        row["speedup_vs_naive"] = naive / row["median_ms"]
        row["cpu_speedup_vs_naive"] = naive_cpu / row["median_cpu_ms"]
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Time the Lambda's image preprocessing (naive vs. shipped draft mode).")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per photo (the median is kept)")
    parser.add_argument("--synthetic", type=int, default=40, help="number of 1000x800 synthetic JPEGs")
    parser.add_argument("--quick", action="store_true", help="fewer photos and repeats (a smoke run)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.quick:
        common.quick_results()
    if args.repeats < 1 or args.synthetic < 1:
        print("error: --repeats and --synthetic must be at least 1", file=sys.stderr)
        return 2
    import preprocessing_spec as spec

    repeats, synthetic = (3, min(args.synthetic, 8)) if args.quick else (args.repeats, args.synthetic)
    paths: dict[str, Callable[[bytes], bytes]] = {
        "naive": lambda data: spec.preprocess_bytes(data, draft=False),
        "shipped": lambda data: spec.preprocess_bytes(data, draft=True),
        f"draft>={CANDIDATE_DRAFT_MIN}": _draft_candidate,
    }
    sets: list[tuple[str, list[bytes]]] = [(f"synthetic {SYNTHETIC_SIZE[0]}x{SYNTHETIC_SIZE[1]}", synthetic_photos(synthetic))]
    if common.abid_available():
        originals, copies = abid_photos()
        if args.quick:
            originals, copies = originals[:20], copies[:20]
        sets = [("abid originals", originals), ("abid 224x224 copies", copies), *sets]
    else:
        print(f"note: {common.ABID_DIR} is absent: real-photo rows skipped")
    rows = [row for name, photos in sets if photos for row in measure_set(name, photos, paths, repeats)]
    common.print_table(
        rows,
        COLUMNS,
    )
    path = common.write_result(
        "preprocess_latency", common.command_line("bench.preprocess_latency", argv), rows, {"repeats": repeats, "target_median_ms": 5.0}
    )
    print(f"wrote {common.display(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
