"""Checks a --source folder (and --file-list) before any step runs, so that a bad one stops at once.

The expected layout is the public bucket's: `bin-images/<id>.jpg` and `metadata/<id>.json` whose
`EXPECTED_QUANTITY` is the count. The check reads metadata until it finds one usable photo (an image
with a label among the classes): enough to reject a wrong folder in well under a second, without
re-doing prep's full validation.
"""

from __future__ import annotations

import json
from pathlib import Path

from local_mode.runner import UsageError

IMAGE_SUFFIXES = (".jpg",)  # what prep.py reads: bin-images/<id>.jpg
LAYOUT = "a folder laid out like the bucket s3://aft-vbi-pds/: bin-images/<id>.jpg and metadata/<id>.json with EXPECTED_QUANTITY"


def _label(metadata: Path) -> int | None:
    try:
        value = json.loads(metadata.read_text()).get("EXPECTED_QUANTITY")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_file_list(path: Path) -> list[str]:
    """Ids from a Udacity-style file list ({"1": ["data/metadata/00001.json", ...], ...}) or a JSON list of ids/paths."""
    if not path.is_file():
        raise UsageError(f"--file-list {path}: no such file. Expected a JSON file such as ../shared/abid/file_list.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f'--file-list {path} is not valid JSON ({error}). Expected {{"1": ["metadata/<id>.json", ...], ...}}') from None
    entries = (
        [e for group in data.values() for e in group]
        if isinstance(data, dict) and all(isinstance(v, list) for v in data.values())
        else data
    )
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
        raise UsageError(
            f'--file-list {path}: expected a non-empty {{"<count>": ["metadata/<id>.json", ...]}} object or a JSON list of ids'
        )
    return [Path(e).stem for e in entries]


def check_source(source: Path, classes: tuple[int, ...], file_list: Path | None = None) -> dict[str, int]:
    """Raise UsageError naming what is wrong with `source`; return a few counts when it is usable."""
    if not source.exists():
        raise UsageError(f"--source {source}: no such folder. Expected {LAYOUT}")
    if not source.is_dir():
        raise UsageError(f"--source {source} is a file, not a folder. Expected {LAYOUT}")
    images_dir, metadata_dir = source / "bin-images", source / "metadata"
    missing = [p.name + "/" for p in (images_dir, metadata_dir) if not p.is_dir()]
    if missing:
        raise UsageError(f"--source {source} has no {' and no '.join(missing)} subfolder. Expected {LAYOUT}")
    images = {p.stem: p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    if not images:
        raise UsageError(f"--source {source}: bin-images/ holds no <id>.jpg photos. Expected {LAYOUT}")
    wanted = set(read_file_list(file_list)) if file_list else None
    metadata = sorted(p for p in metadata_dir.glob("*.json") if wanted is None or p.stem in wanted)
    if not metadata:
        where = f" for the ids in --file-list {file_list}" if wanted is not None else ""
        raise UsageError(f"--source {source}: metadata/ holds no <id>.json files{where}. Expected {LAYOUT}")
    for path in metadata:
        if path.stem in images and _label(path) in classes:
            return {"images": len(images), "metadata": len(metadata)}
    raise UsageError(
        f"--source {source}: none of the {len(metadata)} metadata files with a photo has EXPECTED_QUANTITY in the classes "
        f"{list(classes)} (cdk.json 'classes'). Point --source at bin photos whose counts are among those classes"
    )
