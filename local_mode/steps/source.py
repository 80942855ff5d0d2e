"""Checks a --source folder (and --file-list) before any step runs, so that a bad one stops at once.

The layout and the file-list format are training_code/dataset_layout.py's, the definition prep.py reads
too, so whatever passes here prep.py accepts, and a bad file list is refused here with prep.py's message.
The check reads metadata until it finds one usable photo (an image with a label among the classes):
enough to reject a wrong folder in well under a second, without re-doing prep's full validation.
"""

from __future__ import annotations

from pathlib import Path

import dataset_layout

from local_mode.runner import UsageError

LAYOUT = dataset_layout.LAYOUT


def _label(metadata: Path) -> int | None:
    try:
        return dataset_layout.count_from_metadata(metadata.read_bytes())
    except (OSError, dataset_layout.MetadataError):
        return None


def read_file_list(path: Path) -> list[str]:
    """The ids a --file-list chooses (sorted, distinct); UsageError with prep.py's message when it cannot be used."""
    try:
        return dataset_layout.read_file_list(path)
    except dataset_layout.FileListError as error:
        raise UsageError(str(error)) from None


def check_source(source: Path, classes: tuple[int, ...], file_list: Path | None = None) -> dict[str, int]:
    """Raise UsageError naming what is wrong with `source`; return a few counts when it is usable."""
    if not source.exists():
        raise UsageError(f"--source {source}: no such folder. Expected {LAYOUT}")
    if not source.is_dir():
        raise UsageError(f"--source {source} is a file, not a folder. Expected {LAYOUT}")
    images_dir, metadata_dir = source / dataset_layout.IMAGES_DIR, source / dataset_layout.METADATA_DIR
    missing = [p.name + "/" for p in (images_dir, metadata_dir) if not p.is_dir()]
    if missing:
        raise UsageError(f"--source {source} has no {' and no '.join(missing)} subfolder. Expected {LAYOUT}")
    images = {p.stem for p in images_dir.glob(f"*{dataset_layout.IMAGE_SUFFIX}")}  # exactly what prep.py lists
    if not images:
        raise UsageError(f"--source {source}: bin-images/ holds no <id>.jpg photos. Expected {LAYOUT}")
    wanted = set(read_file_list(file_list)) if file_list else None
    metadata = sorted(p for p in metadata_dir.glob(f"*{dataset_layout.METADATA_SUFFIX}") if wanted is None or p.stem in wanted)
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
