"""training_code/ packaged as a deterministic tar.gz (real files, real tarfile/gzip; no AWS)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from infra.pipeline.code_asset import TRAINING_CODE_DIR, CodeAssetError, build_tarball, write_tarball


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getnames()


def test_two_builds_give_the_same_bytes_whatever_the_file_times(tmp_path: Path) -> None:
    source = tmp_path / "code"
    (source / "sub").mkdir(parents=True)
    (source / "train.py").write_text("print('train')\n")
    (source / "sub" / "util.py").write_text("X = 1\n")
    first = build_tarball(source)
    # Touch every file with a new mtime, and add the clutter a local run leaves behind.
    for path in source.rglob("*.py"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\x00junk")
    (source / "sub" / "util.pyc").write_bytes(b"\x00junk")
    second = build_tarball(source)
    assert first == second
    assert _names(first) == ["sub/util.py", "train.py"]
    # Different content, different bytes.
    (source / "train.py").write_text("print('train v2')\n")
    assert build_tarball(source) != first


def test_the_real_training_code_tarball_is_stable_and_complete(tmp_path: Path) -> None:
    first, second = write_tarball(TRAINING_CODE_DIR, tmp_path), write_tarball(TRAINING_CODE_DIR, tmp_path)
    assert first == second and first.read_bytes() == second.read_bytes()
    names = _names(first.read_bytes())
    # What the pipeline runs from it: the entry points, the file list Prepare uses, and the deploy rule Evaluate runs.
    for required in ("prep.py", "train.py", "evaluate.py", "inference.py", "file_lists/udacity_file_list.json", "deploy_rule.py"):
        assert required in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    with tarfile.open(first, "r:gz") as tar:
        assert {(m.mtime, m.uid, m.gid, m.mode) for m in tar.getmembers()} == {(0, 0, 0, 0o644)}


def test_missing_or_empty_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CodeAssetError, match="does not exist"):
        build_tarball(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodeAssetError, match="no files"):
        build_tarball(tmp_path / "empty")
