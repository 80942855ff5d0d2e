"""Runs the local pipeline's steps in order inside runs/<run id>/, one folder per step.

A step writes its outputs into runs/<id>/<step>/ (what its SageMaker twin writes to S3) and is marked
done by an atomically written `_SUCCESS` marker only after they are complete. On --resume a step with
a marker is skipped; a step folder without one is a leftover of an interrupted run and is emptied and
run again. Steps marked `live` (the servers and what uses them) run on every resume: a server does not
outlive the process that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MARKER = "_SUCCESS"
SUMMARY = "summary.json"
OPTIONS = "options.json"
# How long a child gets to stop after SIGINT before it is killed.
STOP_GRACE_SECONDS = 10.0


class StepFailed(RuntimeError):
    """A step could not finish: the message says which and why (shown without a traceback)."""


class RuntimeExceeded(StepFailed):
    """A child ran past its max_runtime_s and was stopped (SageMaker's MaxRuntimeInSeconds); `output` is what it printed."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


class UsageError(ValueError):
    """Bad input from the user (a flag, a --source folder): exit code 2, message only."""


@dataclass
class RunContext:
    """What a step sees: its run's folder, the run's options and a place to register cleanups."""

    run_id: str
    run_dir: Path
    options: dict[str, Any]
    cleanups: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    log: Callable[[str], None] = print

    def step_dir(self, name: str) -> Path:
        return self.run_dir / name

    def result_of(self, name: str) -> dict[str, Any]:
        """The result a finished step recorded in its marker (works across --resume)."""
        marker = read_marker(self.step_dir(name))
        if marker is None:
            raise StepFailed(f"step '{name}' has not finished in run {self.run_id}: run it first (no {name}/{MARKER})")
        return marker["result"]


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    run: Callable[[RunContext, Path], dict[str, Any]]
    live: bool = False


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a reader (or a crash) never sees half a file: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_marker(step_dir: Path) -> dict[str, Any] | None:
    path = step_dir / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # cannot happen with atomic writes; treat as not done rather than crash


def banner(index: int, total: int, step: Step, out: Callable[[str], None] = print) -> None:
    line = f"[{index}/{total}] {step.name}: {step.title}"
    out("")
    out("=" * max(60, len(line)))
    out(line)
    out("=" * max(60, len(line)))


def run_steps(ctx: RunContext, steps: Sequence[Step]) -> dict[str, dict[str, Any]]:
    """Run (or skip, when done) each step; returns {step: marker}. Raises StepFailed / KeyboardInterrupt."""
    markers: dict[str, dict[str, Any]] = {}
    for index, step in enumerate(steps, start=1):
        step_dir = ctx.step_dir(step.name)
        done = read_marker(step_dir)
        if done is not None and not step.live:
            ctx.log(f"[{index}/{len(steps)}] {step.name}: already done ({done['duration_s']:.1f} s, {done['finished_at']}), skipping")
            markers[step.name] = done
            continue
        if step_dir.exists():
            # A folder without a marker is what an interrupted attempt left: start the step clean.
            shutil.rmtree(step_dir)
        step_dir.mkdir(parents=True)
        banner(index, len(steps), step, ctx.log)
        start = time.monotonic()
        result = step.run(ctx, step_dir)
        marker = {
            "step": step.name,
            "duration_s": round(time.monotonic() - start, 2),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "result": result,
        }
        write_json_atomic(step_dir / MARKER, marker)
        markers[step.name] = marker
    return markers


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so that children are stopped and no step is marked done."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_process_group(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGINT the child's process group (torchrun passes it on to its workers), then SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    # SIGTERM too: a child started from a background shell may have SIGINT ignored.
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# Children started by run_logged and still running: what stop_all_children() stops (from any thread).
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def stop_all_children(grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop every running child of run_logged (parallel trials, torchrun nodes) when one thread is interrupted."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for process in live:
        stop_process_group(process, grace)


def run_logged(
    command: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    what: str = "command",
    stderr_to_terminal: bool = False,
    max_runtime_s: float | None = None,
) -> None:
    """Run a child in its own process group, its output to log_path (and on_line), and raise StepFailed on failure.

    Its own process group, so that Ctrl-C reaches it only through us: we stop it, then re-raise, and the
    step is never marked done. With max_runtime_s, a child still running then is stopped like a SageMaker
    job past MaxRuntimeInSeconds, and RuntimeExceeded (a StepFailed) carries everything it printed.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=15)
    with log_path.open("w", buffering=1) as log:  # line-buffered: `tail -f` follows a running child
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=None if stderr_to_terminal else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(process)
        exceeded = threading.Event()
        output: list[str] = []

        def stop_for_time() -> None:
            exceeded.set()
            stop_process_group(process)

        timer = threading.Timer(max_runtime_s, stop_for_time) if max_runtime_s else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                output.append(line)
                tail.append(line.rstrip())
                if on_line is not None:
                    on_line(line)
            process.wait()
        except BaseException:
            stop_process_group(process)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            with _LIVE_LOCK:
                _LIVE.discard(process)
            log.flush()
    if exceeded.is_set():
        raise RuntimeExceeded(f"{what} was stopped at its {max_runtime_s:g} s limit; log: {log_path}", "".join(output))
    if process.returncode != 0:
        last = "\n    ".join(tail)
        raise StepFailed(f"{what} exited with code {process.returncode}; full log: {log_path}\n  last lines:\n    {last}")


def run_parallel(
    jobs: Sequence[Callable[[], Any]], *, stop_others_on_error: bool = False, on_interrupt: Callable[[], None] | None = None
) -> list[Any]:
    """Run each job in a thread; return their results (an exception object for a job that raised).

    The main thread waits in short slices so that Ctrl-C reaches it; it then stops every child and
    re-raises. With stop_others_on_error (torchrun nodes), one failing job stops the others' children,
    so that no peer waits for a rendezvous that will never come.
    """
    results: list[Any] = [None] * len(jobs)

    def work(index: int) -> None:
        try:
            results[index] = jobs[index]()
        except BaseException as error:  # noqa: BLE001 - handed to the caller as a result
            results[index] = error
            if stop_others_on_error:
                stop_all_children(grace=2.0)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
    except BaseException:
        if on_interrupt is not None:
            on_interrupt()  # e.g. tell workers to start nothing new
        stop_all_children()
        for thread in threads:
            thread.join(timeout=STOP_GRACE_SECONDS + 5)
        raise
    return results
