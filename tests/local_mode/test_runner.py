"""The step runner (local_mode.runner): markers, resume, cleanup of interrupted steps, child processes.
Everything here is real (files, subprocesses, signals); the steps are small stand-in functions."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from local_mode.runner import MARKER, RunContext, Step, StepFailed, read_marker, run_logged, run_steps, write_json_atomic


def _ctx(tmp_path: Path) -> RunContext:
    return RunContext(run_id="t", run_dir=tmp_path, options={}, log=lambda _line: None)


def test_steps_run_in_order_and_are_marked(tmp_path: Path) -> None:
    calls: list[str] = []

    def make(name: str) -> Step:
        def run(ctx: RunContext, step_dir: Path) -> dict:
            calls.append(name)
            (step_dir / "out.txt").write_text(name)
            return {"name": name}

        return Step(name, f"the {name} step", run)

    markers = run_steps(_ctx(tmp_path), [make("a"), make("b")])
    assert calls == ["a", "b"]
    assert markers["b"]["result"] == {"name": "b"}
    assert read_marker(tmp_path / "a")["result"] == {"name": "a"}


def test_resume_skips_done_steps_and_restarts_a_half_written_one(tmp_path: Path) -> None:
    calls: list[str] = []

    def ok(ctx: RunContext, step_dir: Path) -> dict:
        calls.append("ok")
        return {}

    def second(ctx: RunContext, step_dir: Path) -> dict:
        calls.append("second")
        assert not (step_dir / "partial.bin").exists(), "the interrupted attempt's leftovers must be removed"
        (step_dir / "partial.bin").write_text("x")
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {"done": True}

    def live(ctx: RunContext, step_dir: Path) -> dict:
        calls.append("live")
        return {}

    steps = [Step("one", "1", ok), Step("two", "2", second), Step("serve", "3", live, live=True)]
    with pytest.raises(KeyboardInterrupt):
        run_steps(_ctx(tmp_path), steps)
    assert read_marker(tmp_path / "two") is None and (tmp_path / "two" / "partial.bin").exists()
    run_steps(_ctx(tmp_path), steps)
    run_steps(_ctx(tmp_path), steps)
    # one ran once; two twice (interrupted, then finished); the live step on every run that reached it.
    assert calls == ["ok", "second", "second", "live", "live"]


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / MARKER, {"a": 1})
    assert json.loads((tmp_path / MARKER).read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == [MARKER]


def test_run_logged_raises_with_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    with pytest.raises(StepFailed, match=r"(?s)exited with code 3.*boom"):
        run_logged([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], log, what="the child")
    assert "boom" in log.read_text()


def test_run_logged_stops_its_child_on_ctrl_c(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); print('started', flush=True); time.sleep(60)"

    def interrupt_when_started() -> None:
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_logged([sys.executable, "-c", script], tmp_path / "child.log")
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_run_logged_passes_lines(tmp_path: Path) -> None:
    lines: list[str] = []
    run_logged([sys.executable, "-c", "print('a'); print('b')"], tmp_path / "log", on_line=lines.append)
    assert [line.strip() for line in lines] == ["a", "b"]


def test_run_logged_stops_a_child_past_its_max_runtime(tmp_path: Path) -> None:
    from local_mode.runner import RuntimeExceeded

    script = "import time\nprint('epoch 1', flush=True)\ntime.sleep(60)\nprint('never')"
    started = time.monotonic()
    with pytest.raises(RuntimeExceeded) as caught:
        run_logged([sys.executable, "-c", script], tmp_path / "child.log", max_runtime_s=1.0, what="the child")
    assert time.monotonic() - started < 15
    assert caught.value.output.startswith("epoch 1\n") and "never" not in caught.value.output and "1 s limit" in str(caught.value)
