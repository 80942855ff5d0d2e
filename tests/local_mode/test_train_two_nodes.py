"""The train step with --nodes 2: two torchrun processes (--nnodes 2, --node_rank 0/1, master 127.0.0.1)
train one model, as two SageMaker instances would. Real prep, torchrun, gloo and train.py; the tune
step's result is written by hand (a fixed hyperparameter set) to keep the test short."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from local_mode.runner import RunContext, Step, run_steps, write_json_atomic
from local_mode.steps import load_settings, prepare, train

HYPERPARAMETERS = {"model": "mobilenet_v3_small", "epochs": "1", "image-size": "64", "batch-size": "8", "lr": "0.003", "seed": "42"}


@pytest.mark.slow
def test_two_emulated_nodes_train_one_model(tmp_path: Path) -> None:
    options = {"source": None, "file_list": None, "bins": 40, "max_images": 0, "seed": 3, "nodes": 2, "nproc_per_node": 1}
    ctx = RunContext(run_id="two", run_dir=tmp_path, options={**options, "settings": load_settings()}, log=lambda _: None)
    write_json_atomic(
        tmp_path / "tune" / "_SUCCESS", {"result": {"best_hyperparameters": HYPERPARAMETERS}, "duration_s": 0, "finished_at": ""}
    )
    markers = run_steps(ctx, [Step("prepare", "", prepare.run), Step("train", "", train.run)])

    result = markers["train"]["result"]
    assert result["nodes"] == 2
    logs = {p.name: p.read_text() for p in (tmp_path / "train").glob("train-*.log")}
    assert set(logs) == {"train-algo-1.log", "train-algo-2.log"}
    assert "--nnodes 2 --node_rank 1 --master_addr 127.0.0.1" in logs["train-algo-2.log"]
    assert "METRICS epoch=1;" in logs["train-algo-1.log"]  # rank 0 lives on node 0 and prints the metrics
    assert "world 2" in logs["train-algo-1.log"]
    with tarfile.open(result["model_tar"]) as tar:
        names = set(tar.getnames())
    assert {"model.pth", "model_meta.json", "code/inference.py"} <= names
    meta = json.loads((tmp_path / "train" / "model" / "model_meta.json").read_text())
    assert meta["architecture"] == "mobilenet_v3_small"
