"""prepare: the Prepare Processing job's twin. Writes runs/<id>/prepare/{train,validation,test}/ + summary.json.

Without --source it first generates synthetic bins with the project's generator into prepare/source/
(bucket layout), then runs prep.py on it exactly as on a real folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import dataset_layout

from local_mode.runner import RunContext, StepFailed, run_logged, write_json_atomic
from local_mode.steps.common import child_env, cpu_threads, script
from local_mode.steps.source import read_file_list


def _usable_count(source: Path, image_id: str, classes: tuple[int, ...]) -> int | None:
    """The id's count when prep.py would keep it (metadata with a count in `classes`, and a photo), else None."""
    try:
        count = dataset_layout.count_from_metadata((source / dataset_layout.metadata_key(image_id)).read_bytes())
    except (OSError, dataset_layout.MetadataError):
        return None  # prep.py reports such ids; here they are simply not chosen
    return count if count in classes and (source / dataset_layout.image_key(image_id)).is_file() else None


def _subset_file_list(source: Path, file_list: Path | None, classes: tuple[int, ...], limit: int, out: Path) -> Path:
    """A file list of at most `limit` ids with a count in `classes`, chosen by a hash of the id (stable, unbiased)."""
    metadata = source / dataset_layout.METADATA_DIR
    candidates = read_file_list(file_list) if file_list else [p.stem for p in metadata.glob(f"*{dataset_layout.METADATA_SUFFIX}")]
    usable = []
    for image_id in candidates:
        count = _usable_count(source, image_id, classes)
        if count is not None:
            usable.append((hashlib.sha256(image_id.encode()).hexdigest(), image_id, count))
    chosen = sorted(usable)[:limit]
    groups: dict[str, list[str]] = {}
    for _, image_id, count in sorted(chosen, key=lambda row: row[1]):
        groups.setdefault(str(count), []).append(dataset_layout.metadata_key(image_id))
    write_json_atomic(out, groups)
    return out


def run(ctx: RunContext, step_dir: Path) -> dict[str, Any]:
    options, settings = ctx.options, ctx.options["settings"]
    classes_arg = ",".join(map(str, settings.classes))
    env = child_env(cpu_threads())
    if options["source"]:
        source = Path(options["source"])
    else:
        source = step_dir / "source"
        ctx.log(f"Generating {options['bins']} synthetic bins into {source} ...")
        run_logged(
            [*script("synthetic_bins.py"), "--output", str(source), "--count", str(options["bins"]), "--seed", str(options["seed"])]
            + ["--classes", classes_arg],
            step_dir / "synthetic_bins.log",
            env=env,
            what="synthetic_bins.py",
        )
    file_list = Path(options["file_list"]) if options["file_list"] else None
    if options["max_images"]:
        file_list = _subset_file_list(source, file_list, settings.classes, options["max_images"], step_dir / "file_list.json")
        ctx.log(f"Using at most {options['max_images']} photos: {file_list}")
    # --auxiliary as the pipeline's npy Prepare: photos with fewer or more items than the classes go to
    # train/auxiliary/ and train.py trains on them (synthetic bins have none, so the demo is unchanged).
    command = [*script("prep.py"), "--source", str(source), "--output", str(step_dir), "--classes", classes_arg, "--auxiliary"]
    if file_list:
        command += ["--file-list", str(file_list)]
    ctx.log(f"prep.py: decoding and splitting {source} ...")
    # prep.py's progress bars (stderr) go straight to the terminal; its report (stdout) to prep.log.
    run_logged(command, step_dir / "prep.log", env=env, what="prep.py", stderr_to_terminal=True)
    summary = json.loads((step_dir / "summary.json").read_text())
    splits = {name: split["total"] for name, split in summary["splits"].items()}
    if min(splits.values()) == 0:
        raise StepFailed(f"prep.py left a split empty ({splits}): the source has too few usable photos; see {step_dir / 'summary.json'}")
    ctx.log(f"read {summary['read']}, written {summary['written']} ({splits}), skipped {summary['skipped']} {summary['skipped_by_reason']}")
    return {"source": str(source), "read": summary["read"], "written": summary["written"], "skipped": summary["skipped"], "splits": splits}
