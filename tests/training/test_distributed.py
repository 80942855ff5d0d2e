"""torchrun on one machine (gloo, loopback): 2 processes, and 2 "nodes" with a static rendezvous on 127.0.0.1.

Real: torchrun, torch.distributed (gloo), DDP, train.py end to end. Every rank writes a hash of its final
weights (train.WEIGHTS_HASH_ENV, a test hook); the ranks must agree and every process must exit 0.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import train

from tests.training.conftest import TINY, TRAINING_CODE, channel_args, subprocess_env

pytestmark = pytest.mark.slow
TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(launcher: list[str], prepared: Path, work: Path, hashes: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *launcher,
        str(TRAINING_CODE / "train.py"),
        *channel_args(prepared, work),
        *TINY,
        "--epochs",
        "2",
    ]
    env = subprocess_env(**{train.WEIGHTS_HASH_ENV: str(hashes)})
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _finish(processes: list[subprocess.Popen[str]]) -> list[str]:
    outputs = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, out[-3000:]
            outputs.append(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return outputs


def _check(work: Path, hashes: Path, outputs: list[str], world: int) -> None:
    digests = [(hashes / f"rank{r}.sha256").read_text() for r in range(world)]
    assert len(set(digests)) == 1, f"ranks ended with different weights: {digests}"
    text = "".join(outputs)
    assert text.count("METRICS epoch=") == 2, "metrics must be printed by rank 0 only, once per epoch"
    report = json.loads((work / "output" / "evaluation.json").read_text())
    # Unpadded distributed evaluation: every test image exactly once.
    assert report["n"] == len(json.loads((work.parent / "prepared" / "test" / "labels.json").read_text())["ids"])
    assert (work / "model" / "model.pth").is_file()


@pytest.fixture()
def layout(prepared: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    (tmp_path / "prepared").symlink_to(prepared)
    hashes = tmp_path / "hashes"
    hashes.mkdir()
    return tmp_path / "prepared", tmp_path / "work", hashes


def test_two_processes_agree_and_exit_cleanly(layout) -> None:
    prepared, work, hashes = layout
    launcher = ["--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    outputs = _finish([_torchrun(launcher, prepared, work, hashes)])
    _check(work, hashes, outputs, 2)


def test_two_nodes_agree_and_exit_cleanly(layout) -> None:
    prepared, work, hashes = layout
    port = str(_free_port())
    nodes = [
        _torchrun(
            ["--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", port],
            prepared,
            work,
            hashes,
        )
        for rank in (0, 1)
    ]
    outputs = _finish(nodes)
    _check(work, hashes, outputs, 2)
