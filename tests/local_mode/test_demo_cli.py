"""`python -m local_mode.demo` input checks: a bad --source or flag stops at once with exit code 2 and a
message that says what was expected, never a traceback. The real CLI entry point (main) on real folders;
one case runs it as a subprocess to check the exit code as a shell sees it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from local_mode.demo import main

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def demo(capsys: pytest.CaptureFixture[str]):
    def run(*args: str, runs: Path) -> Result:
        code = main(["--runs-dir", str(runs), *args])  # an exception here fails the test: no traceback allowed
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def test_bad_source_exit_code_in_a_shell(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local_mode.demo", "--runs-dir", str(tmp_path / "runs"), "--source", str(tmp_path / "nowhere")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no such folder" in result.stderr and "Traceback" not in result.stderr


def _bucket(root: Path, labels: dict[str, int], with_images: bool = True) -> Path:
    (root / "bin-images").mkdir(parents=True)
    (root / "metadata").mkdir()
    for name, count in labels.items():
        if with_images:
            (root / "bin-images" / f"{name}.jpg").write_bytes(b"\xff\xd8\xff")
        (root / "metadata" / f"{name}.json").write_text(json.dumps({"EXPECTED_QUANTITY": count}))
    return root


@pytest.mark.parametrize(
    ("make_source", "expected"),
    [
        (lambda tmp: tmp / "nowhere", "no such folder"),
        (lambda tmp: (tmp / "flat").mkdir() or tmp / "flat", "has no bin-images/ and no metadata/ subfolder"),
        (lambda tmp: _bucket(tmp / "noimg", {"a": 2}, with_images=False), "bin-images/ holds no <id>.jpg photos"),
        (lambda tmp: _bucket(tmp / "nolabels", {"a": 0, "b": 9}), "EXPECTED_QUANTITY in the classes [1, 2, 3, 4, 5]"),
    ],
    ids=["missing", "not-bucket-layout", "no-images", "no-labels-in-classes"],
)
def test_bad_source_exits_2_with_a_message(demo, tmp_path: Path, make_source, expected: str) -> None:
    result = demo("--source", str(make_source(tmp_path)), runs=tmp_path / "runs")
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Expected" in result.stderr or "Point --source" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "a rejected run must leave no run folder"


def test_bad_file_list_and_flags_exit_2(demo, tmp_path: Path) -> None:
    source = _bucket(tmp_path / "src", {"a": 2})
    (tmp_path / "list.json").write_text("{not json")
    cases = [
        (["--source", str(source), "--file-list", str(tmp_path / "list.json")], "is not valid JSON"),
        (["--source", str(source), "--file-list", str(tmp_path / "absent.json")], "no such file"),
        (["--file-list", str(tmp_path / "list.json")], "--file-list needs --source"),
        (["--trials", "0"], "--trials 0 is invalid"),
        (["--set", "epochs"], "expected NAME=VALUE"),
        (["--set", "epoch=3"], "'epoch' is not a train.py hyperparameter"),
        (["--set", "epochs=many"], "'many' is not a valid value for epochs"),
        (["--set", "model=vgg"], "model must be one of"),
        (["--set", "model-dir=/tmp"], "not a train.py hyperparameter"),
        (["--resume", "no-such-run"], "no run there"),
    ]
    for args, expected in cases:
        result = demo(*args, runs=tmp_path / "runs")
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_resume_refuses_changed_options(demo, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "options.json").write_text("{}")
    result = demo("--resume", "r1", "--trials", "5", runs=tmp_path / "runs")
    assert result.returncode == 2
    assert "drop --trials" in result.stderr
