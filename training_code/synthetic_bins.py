"""Synthetic bin photos for tests and the demo, in the public bucket's layout.

    python synthetic_bins.py --output DIR --count 600 --seed 0 [--classes 1,2,3,4,5]

writes DIR/bin-images/<id>.jpg and DIR/metadata/<id>.json (with EXPECTED_QUANTITY, like the real
metadata), so prep.py reads it exactly like the real dataset. Each photo is a bin floor with texture,
walls, 1..5 items of varied shape, colour and size that may overlap a little, and tape strips across
the front. Image i depends only on (seed, i): the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DEFAULT_CLASSES = (1, 2, 3, 4, 5)
SHAPES = ("rectangle", "ellipse", "polygon", "rotated_box")
MAX_OVERLAP = 0.35  # an item may hide at most this share of its box behind earlier items


def _parse_classes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--classes {text!r} is invalid: expected comma-separated item counts like 1,2,3,4,5") from None
    if not values or any(v < 0 or v > 12 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"--classes {text!r} is invalid: expected distinct counts from 0 to 12")
    return values


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    base = rng.uniform(70, 190, size=3) * rng.uniform(0.8, 1.1, size=3)  # grey, tan or bluish bin fabric
    noise = rng.normal(0, rng.uniform(4, 14), size=(height, width, 1))
    shade = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(0.9, 1.15), width)[None, :, None]  # uneven lighting
    floor = np.clip((base[None, None, :] + noise) * shade, 0, 255).astype(np.uint8)
    image = Image.fromarray(floor, "RGB")
    draw = ImageDraw.Draw(image)
    # Bin walls: darker bands at the edges, sometimes with the pod's elastic straps.
    wall = tuple(int(c * 0.55) for c in base)
    band = int(rng.integers(6, 18))
    draw.rectangle([0, 0, width, band], fill=wall)
    draw.rectangle([0, height - band, width, height], fill=wall)
    draw.rectangle([0, 0, band, height], fill=wall)
    draw.rectangle([width - band, 0, width, height], fill=wall)
    return image


def _item_box(rng: np.random.Generator, width: int, height: int, placed: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    best: tuple[int, int, int, int] | None = None
    best_overlap = 2.0
    for _ in range(30):  # rejection sampling: prefer a box that hides little of itself behind others
        w = int(width * rng.uniform(0.13, 0.3))
        h = int(height * rng.uniform(0.13, 0.3))
        x = int(rng.integers(18, max(19, width - w - 18)))
        y = int(rng.integers(18, max(19, height - h - 18)))
        box = (x, y, x + w, y + h)
        overlap = max((_overlap(box, other) for other in placed), default=0.0)
        if overlap < best_overlap:
            best, best_overlap = box, overlap
        if overlap <= MAX_OVERLAP * rng.uniform(0.0, 1.0):
            break
    assert best is not None
    return best


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]))


def _draw_item(rng: np.random.Generator, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int]) -> None:
    hue = rng.uniform(0, 1)
    # Saturated product colours with a dark outline, as packaging shows against bin fabric.
    rgb = np.clip(np.array([abs(((hue * 6 + k) % 6) - 3) - 1 for k in (0, 4, 2)]), 0, 1)
    colour = tuple(int(v) for v in (rgb * rng.uniform(120, 255) + rng.uniform(0, 60)).clip(0, 255))
    outline = tuple(int(c * 0.4) for c in colour)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    x0, y0, x1, y1 = box
    if shape == "rectangle":
        draw.rectangle(box, fill=colour, outline=outline, width=2)
    elif shape == "ellipse":
        draw.ellipse(box, fill=colour, outline=outline, width=2)
    else:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        sides = 4 if shape == "rotated_box" else int(rng.integers(3, 7))
        turn = rng.uniform(0, 2 * math.pi)
        points = [
            (cx + rx * math.cos(turn + 2 * math.pi * k / sides), cy + ry * math.sin(turn + 2 * math.pi * k / sides)) for k in range(sides)
        ]
        draw.polygon(points, fill=colour, outline=outline, width=2)
    if rng.uniform() < 0.5:  # a label sticker
        lw, lh = (x1 - x0) // 3, (y1 - y0) // 4
        lx, ly = x0 + (x1 - x0 - lw) // 2, y0 + (y1 - y0 - lh) // 2
        draw.rectangle([lx, ly, lx + lw, ly + lh], fill=(235, 235, 230))


def _tape(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    width, height = image.size
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for _ in range(int(rng.integers(0, 3))):
        y = rng.uniform(0.1, 0.9) * height
        slope = rng.uniform(-0.25, 0.25) * height
        thickness = int(rng.integers(5, 12))
        draw.line([(0, y), (width, y + slope)], fill=(240, 235, 200, int(rng.integers(60, 130))), width=thickness)
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")


def render_bin(seed: int, index: int, count: int) -> Image.Image:
    """One synthetic bin photo with `count` items; deterministic in (seed, index, count)."""
    rng = np.random.default_rng([seed, index, count])
    width, height = int(rng.integers(240, 360)), int(rng.integers(200, 300))
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(count):
        box = _item_box(rng, width, height, placed)
        placed.append(box)
        _draw_item(rng, draw, box)
    image = _tape(rng, image)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.8)))  # camera softness


def bin_id(seed: int, index: int) -> str:
    return f"syn{seed}-{index:06d}"


def generate(output: str | Path, count: int, seed: int = 0, classes: tuple[int, ...] = DEFAULT_CLASSES) -> list[tuple[str, int]]:
    """Write `count` bins (class-balanced, shuffled) and return [(id, item count), ...]."""
    if count < 1:
        raise ValueError(f"--count {count} is invalid: expected at least 1")
    out = Path(output)
    (out / "bin-images").mkdir(parents=True, exist_ok=True)
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = [classes[i % len(classes)] for i in range(count)]
    rng.shuffle(labels)
    written = []
    for index, items in enumerate(labels):
        name = bin_id(seed, index)
        render_bin(seed, index, int(items)).save(out / "bin-images" / f"{name}.jpg", quality=90)
        metadata = {"BIN_FCSKU_DATA": {}, "EXPECTED_QUANTITY": int(items), "image_fname": f"{name}.jpg", "synthetic": True}
        (out / "metadata" / f"{name}.json").write_text(json.dumps(metadata, indent=4))
        written.append((name, int(items)))
    return written


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write synthetic bin photos in the bucket layout (bin-images/, metadata/).")
    parser.add_argument("--output", required=True, help="folder to write bin-images/ and metadata/ into")
    parser.add_argument("--count", type=int, default=600, help="number of photos (class-balanced)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same files")
    parser.add_argument(
        "--classes", type=_parse_classes, default=DEFAULT_CLASSES, help="comma-separated item counts to draw, e.g. 1,2,3,4,5"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        written = generate(args.output, args.count, args.seed, args.classes)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} synthetic bins to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
