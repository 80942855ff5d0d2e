"""--max-images: the file list the prepare step hands prep.py, and the one file-list format the demo's pre-check and
prep.py share (training_code/dataset_layout.py). Real files, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import dataset_layout
import pytest

from local_mode.runner import UsageError
from local_mode.steps.prepare import _subset_file_list
from local_mode.steps.source import check_source, read_file_list


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


# --- one file-list format: the demo's pre-check and prep.py accept and refuse the same files -------------


def _prep_verdict(source: Path, file_list: Path, out: Path) -> str:
    import prep

    try:
        prep.prepare(str(source), str(out), file_list=str(file_list), workers=1)
    except prep.PrepError as error:
        return str(error)
    return "accepted"


def _demo_verdict(source: Path, file_list: Path) -> str:
    try:
        check_source(source, (1, 2, 3, 4, 5), file_list)
    except UsageError as error:
        return str(error)
    return "accepted"


@pytest.mark.parametrize(
    ("content", "verdict"),
    [
        ("UDACITY", "accepted"),
        ('["ID0", "ID1"]', "it holds a JSON list, not an object of lists of metadata paths"),  # a plain list of ids
        ('{"1": "metadata/ID0.json"}', "it holds a JSON dict, not an object of lists of metadata paths"),
        ('{"1": [1, 2]}', "it holds a JSON dict, not an object of lists of metadata paths"),
        ("{}", "it lists no metadata paths"),
        ("{not json", "it is not valid JSON"),
        (None, "no such file"),
    ],
)
def test_demo_pre_check_and_prep_agree_on_file_lists(content: str | None, verdict: str, tmp_path: Path) -> None:
    import synthetic_bins

    ids = sorted(image_id for image_id, _ in synthetic_bins.generate(tmp_path / "src", 10, seed=5))
    file_list = tmp_path / "file_list.json"
    if content == "UDACITY":
        content = json.dumps({"1": [f"data/metadata/{i}.json" for i in ids]})  # keys are not trusted: every count under "1"
    if content is not None:
        file_list.write_text(content.replace("ID0", ids[0]).replace("ID1", ids[1]))
    demo = _demo_verdict(tmp_path / "src", file_list)
    assert demo == _prep_verdict(tmp_path / "src", file_list, tmp_path / "out")
    if verdict == "accepted":
        assert demo == "accepted"
    else:
        assert demo.startswith(f"--file-list {file_list} cannot be read") and verdict in demo, demo
        assert dataset_layout.FILE_LIST_FORMAT in demo


def test_the_shipped_udacity_list_is_read_by_the_shared_parser() -> None:
    ids = dataset_layout.read_file_list(Path(__file__).resolve().parents[2] / "training_code" / "file_lists" / "udacity_file_list.json")
    assert len(ids) == 10441 and ids == sorted(set(ids)) and "100313" in ids
