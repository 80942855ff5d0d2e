"""--max-images: the file list the prepare step hands prep.py (real files, no mocks)."""

from __future__ import annotations

import json
from pathlib import Path

from local_mode.steps.prepare import _subset_file_list
from local_mode.steps.source import read_file_list


def _bucket(root: Path, labels: dict[str, int], missing_images: tuple[str, ...] = ()) -> Path:
    (root / "bin-images").mkdir(parents=True)
    (root / "metadata").mkdir()
    for name, count in labels.items():
        if name not in missing_images:
            (root / "bin-images" / f"{name}.jpg").write_bytes(b"\xff\xd8\xff")
        (root / "metadata" / f"{name}.json").write_text(json.dumps({"EXPECTED_QUANTITY": count}))
    return root


def test_subset_takes_only_usable_ids_and_is_stable(tmp_path: Path) -> None:
    labels = {f"id{i:03d}": 1 + i % 7 for i in range(60)}  # counts 6 and 7 are outside the classes
    source = _bucket(tmp_path / "src", labels, missing_images=("id000",))
    first = _subset_file_list(source, None, (1, 2, 3, 4, 5), 20, tmp_path / "a.json")
    second = _subset_file_list(source, None, (1, 2, 3, 4, 5), 20, tmp_path / "b.json")
    assert first.read_text() == second.read_text()
    ids = read_file_list(first)
    assert len(ids) == 20 and "id000" not in ids
    assert all(labels[i] <= 5 for i in ids)
    groups = json.loads(first.read_text())
    assert all(labels[Path(p).stem] == int(count) for count, paths in groups.items() for p in paths)


def test_subset_stays_inside_a_given_file_list(tmp_path: Path) -> None:
    source = _bucket(tmp_path / "src", {f"id{i}": 2 for i in range(10)})
    (tmp_path / "list.json").write_text(json.dumps({"2": ["data/metadata/id1.json", "data/metadata/id2.json", "data/metadata/id3.json"]}))
    chosen = read_file_list(_subset_file_list(source, tmp_path / "list.json", (1, 2), 5, tmp_path / "out.json"))
    assert sorted(chosen) == ["id1", "id2", "id3"]
