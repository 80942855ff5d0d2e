"""End to end: `python -m local_mode.demo` with a tiny config, interrupted with SIGINT during a step, then
finished with --resume --keep-serving, and a photo POSTed to its local API over HTTP.

All real: synthetic bins, prep.py, train.py trials, torchrun (2 processes, gloo), evaluate.py, the gate,
the local endpoint server + API server with the real Lambda handler, HTTP on loopback. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
# An undertrained model: --deploy force makes the gate deploy it so that serve and count run.
TINY = [
    "--bins",
    "60",
    "--trials",
    "1",
    "--set",
    "epochs=1",
    "--set",
    "image-size=64",
    "--set",
    "batch-size=16",
    "--count-images",
    "3",
    "--deploy",
    "force",
]


def _start(runs: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "local_mode.demo", "--runs-dir", str(runs), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"demo exited with {process.returncode} before {path} appeared:\n{out[-3000:]}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.2)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_interrupted_demo_resumes_and_serves_counts(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = runs / "e2e"

    # 1. Ctrl-C during the tune step: exit 130, tune not marked done, no child left behind.
    first = _start(runs, "--run-id", "e2e", *TINY)
    _wait_for(run / "tune" / "trial-001" / "train.log", first, timeout=90)
    time.sleep(1.0)  # let train.py get going
    os.kill(first.pid, signal.SIGINT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, err[-2000:]
    assert "--resume e2e" in err and "Traceback" not in err
    assert (run / "prepare" / "_SUCCESS").is_file()
    assert not (run / "tune" / "_SUCCESS").exists()
    assert _processes_mentioning(str(run)) == [], "a trial process outlived the interrupted demo"

    # 2. --resume finishes every step; --keep-serving leaves the local API up until Ctrl-C.
    second = _start(runs, "--resume", "e2e", "--keep-serving")
    try:
        _wait_for(run / "summary.json", second, timeout=150)
        summary = json.loads((run / "summary.json").read_text())
        serve = json.loads((run / "serve" / "_SUCCESS").read_text())["result"]
        photo = next((run / "prepare" / "source" / "bin-images").glob("*.jpg"))
        reply = requests.post(
            serve["count_url"],
            data=photo.read_bytes(),
            headers={"x-api-key": serve["api_key"], "Content-Type": "image/jpeg"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["count"] in (1, 2, 3, 4, 5)
        denied = requests.post(serve["count_url"], data=photo.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert denied.status_code in (401, 403)
        # The try-it page opens without the key.
        page = requests.get(serve["api_url"] + "/", timeout=30)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    finally:
        os.kill(second.pid, signal.SIGINT)
        out, err = second.communicate(timeout=30)
    assert second.returncode == 0, err[-3000:]
    assert "already done" in out  # prepare was skipped
    assert "counted right" in out  # the counts table
    summary_lines = out.split("Summary of run", 1)[1].splitlines()
    page_line = next(i for i, line in enumerate(summary_lines) if line.strip().startswith("page "))
    assert page_line < next(i for i, line in enumerate(summary_lines) if line.strip().startswith("local API"))  # the page URL first
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert set(summary["durations_s"]) == {"prepare", "tune", "train", "evaluate", "gate", "serve", "count"}
    for step in summary["durations_s"]:
        assert (run / step / "_SUCCESS").is_file(), step
    assert (run / "train" / "model.tar.gz").is_file() and (run / "evaluate" / "evaluation.json").is_file()
    with pytest.raises(requests.ConnectionError):
        requests.get(serve["api_url"] + "/v1/health", timeout=5)  # stopped at exit
