"""Fixtures for training_code tests: a tiny synthetic bucket, its prepared channels, a trained model.

Everything is real (synthetic JPEGs on disk, prep.py, train.py, torch on CPU); nothing is mocked. Sizes
are the smallest that still exercise every path, so the folder runs in a few minutes on 2 shared cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TRAINING_CODE = ROOT / "training_code"
# A model small enough to train an epoch in seconds: mobilenet_v3_small downsampling to 32 px.
TINY = ["--model", "mobilenet_v3_small", "--image-size", "32", "--batch-size", "8", "--lr", "0.003", "--workers", "0"]

torch.set_num_threads(1)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for train.py subprocesses: one thread each, training_code importable, no SM_* leakage."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(TRAINING_CODE), PYTHONUNBUFFERED="1", **extra)
    return env


def run_train(args: list[str], timeout: int = 240, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TRAINING_CODE / "train.py"), *args], capture_output=True, text=True, timeout=timeout, env=subprocess_env(**env)
    )


@pytest.fixture(scope="session")
def synthetic_bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import synthetic_bins

    folder = tmp_path_factory.mktemp("bucket")
    synthetic_bins.generate(folder, 50, seed=3)
    return folder


@pytest.fixture(scope="session")
def prepared(synthetic_bucket: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import prep

    out = tmp_path_factory.mktemp("prepared")
    prep.prepare(str(synthetic_bucket), str(out), workers=2)
    return out


def channel_args(prepared: Path, work: Path, test: bool = True) -> list[str]:
    args = ["--train", str(prepared / "train"), "--validation", str(prepared / "validation")]
    if test:
        args += ["--test", str(prepared / "test")]
    return args + [
        "--model-dir",
        str(work / "model"),
        "--output-data-dir",
        str(work / "output"),
        "--checkpoint-dir",
        str(work / "checkpoints"),
    ]


@pytest.fixture(scope="session")
def trained(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder after one real train.py epoch (in-process): model/, output/, checkpoints/."""
    import train

    work = tmp_path_factory.mktemp("trained")
    assert train.main([*channel_args(prepared, work), *TINY, "--epochs", "1", "--model-version", "test-v1"]) == 0
    return work


@pytest.fixture(scope="session")
def model_tarball(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.tar.gz packed exactly as docs/contracts.md says: tar czf model.tar.gz -C MODEL_DIR ."""
    path = tmp_path_factory.mktemp("packed") / "model.tar.gz"
    subprocess.run(["tar", "czf", str(path), "-C", str(trained / "model"), "."], check=True)
    return path


def copy_bucket(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
