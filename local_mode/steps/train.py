"""train: the training job's twin, under torchrun (gloo on CPU).

One node: `python -m torch.distributed.run --standalone --nproc_per_node N train.py ...`. --nodes 2
emulates two instances: two torchrun processes with --nnodes 2 --node_rank i --master_addr 127.0.0.1,
each with its own SM_CURRENT_HOST, as the PyTorch DLC launches them. Writes runs/<id>/train/model/ (the
model dir), output/ (train.py's evaluation.json and PNGs), model.tar.gz and one log per node.
Checkpoints live in runs/<id>/checkpoints/train/, outside the step folder: an interrupted train step
resumes from the newest epoch on --resume, as a spot training job does.
"""

from __future__ import annotations

import json
import os
import socket
import tarfile
from pathlib import Path
from typing import Any

import metrics_format
import search_space
from tqdm import tqdm

from local_mode.runner import RunContext, StepFailed, run_logged, run_parallel
from local_mode.steps.common import channels, child_env, cpu_threads, script


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(nodes: int, nproc: int, node_rank: int, port: int) -> list[str]:
    launcher = [*script("train.py")[:1], "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    if nodes == 1:
        return [*launcher, "--standalone"]
    return [*launcher, "--nnodes", str(nodes), "--node_rank", str(node_rank), "--master_addr", "127.0.0.1", "--master_port", str(port)]


def _split_batch(hyperparameters: dict[str, Any], world: int) -> dict[str, str]:
    """Keep the tuned trial's global batch: train.py's --batch-size is per process, and the trial ran one process.

    With twice the batch the final training takes half the optimizer steps per epoch: measured on the
    demo's defaults, test accuracy fell from the trials' ~78 % to 71 %. A batch that does not divide is kept.
    """
    batch = int(hyperparameters.get("batch-size", 0) or 0)
    if world <= 1 or batch < world or batch % world:
        return {}
    return {"batch-size": str(batch // world)}


def cap_epochs(hyperparameters: dict[str, Any], budget_s: float, seconds_per_epoch: float | None) -> tuple[int, int] | None:
    """Fit the epochs into the budget at the trials' measured pace (in place); (before, after) when capped.

    The pace is a trial's (one process, one thread, beside the other trials, start-up included); the final
    run splits each epoch over several processes, so it is an upper bound and the budget a safe one.
    """
    if not budget_s or not seconds_per_epoch or "epochs" not in hyperparameters:
        return None
    epochs = int(hyperparameters["epochs"])
    fits = max(1, int(budget_s // seconds_per_epoch))
    if fits >= epochs:
        return None
    hyperparameters["epochs"] = str(fits)
    return epochs, fits


def write_model_tar(model_dir: Path, target: Path) -> None:
    """`tar czf model.tar.gz -C MODEL_DIR .`, written to a temporary name first."""
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    os.replace(partial, target)


def run(ctx: RunContext, step_dir: Path) -> dict[str, Any]:
    options = ctx.options
    tuned = ctx.result_of("tune")
    hyperparameters = dict(tuned["best_hyperparameters"])
    epochs_capped = cap_epochs(hyperparameters, options.get("train_budget_s", 0), tuned.get("seconds_per_epoch"))
    if epochs_capped:
        ctx.log(
            f"epochs {epochs_capped[0]} -> {epochs_capped[1]}: {tuned['seconds_per_epoch']:.0f} s per epoch measured by the trials "
            f"fits {epochs_capped[1]} in the {options['train_budget_s']} s training budget (--train-budget)"
        )
    data = channels(ctx.step_dir("prepare"))
    model_dir, output_dir = step_dir / "model", step_dir / "output"
    checkpoints = ctx.run_dir / "checkpoints" / "train"
    nodes, nproc = options["nodes"], options["nproc_per_node"]
    threads = max(1, cpu_threads() // (nodes * nproc))
    hosts = [f"algo-{i + 1}" for i in range(nodes)]
    world = nodes * nproc
    per_process = _split_batch(hyperparameters, world)
    train_args = [*search_space.to_cli_args({**hyperparameters, **per_process}), "--model-version", f"local-{ctx.run_id}"]
    ctx.log(f"{nodes} node(s) x {nproc} process(es), {threads} thread(s) each; hyperparameters {hyperparameters}")
    if per_process:
        ctx.log(f"batch-size {hyperparameters['batch-size']} (the trial's, one process) = {world} processes x {per_process['batch-size']}")

    bar = tqdm(total=int(hyperparameters["epochs"]), desc="epochs", unit="epoch", dynamic_ncols=True)

    def on_line(line: str) -> None:
        for record in metrics_format.parse_metrics(line):
            bar.n = int(record.get("epoch", bar.n + 1))  # a resumed run starts past epoch 1
            acc = record.get(metrics_format.OBJECTIVE_METRIC)
            bar.set_postfix_str(f"{metrics_format.OBJECTIVE_METRIC}={acc:.3f}" if acc is not None else "")
            bar.refresh()

    port = free_port()
    launches = []
    for rank, host in enumerate(hosts):
        env = child_env(
            threads,
            {
                "SM_CHANNEL_TRAIN": str(data["train"]),
                "SM_CHANNEL_VALIDATION": str(data["validation"]),
                "SM_CHANNEL_TEST": str(data["test"]),
                "SM_MODEL_DIR": str(model_dir),
                "SM_OUTPUT_DATA_DIR": str(output_dir),
                "SM_CHECKPOINT_DIR": str(checkpoints),
                "SM_HOSTS": json.dumps(hosts),
                "SM_CURRENT_HOST": host,
                "SM_NUM_GPUS": "0",
            },
        )
        command = [*torchrun_command(nodes, nproc, rank, port), *script("train.py")[1:], *train_args]
        launches.append((command, step_dir / f"train-{host}.log", env, on_line if rank == 0 else None))
    try:
        if nodes == 1:
            command, log, env, handler = launches[0]
            run_logged(command, log, env=env, on_line=handler, what="torchrun train.py")
        else:
            _run_nodes(launches)
    finally:
        bar.close()
    if not (model_dir / "model.pth").is_file():
        raise StepFailed(f"training finished without writing {model_dir / 'model.pth'}; see {step_dir}/train-*.log")
    write_model_tar(model_dir, step_dir / "model.tar.gz")
    report = json.loads((output_dir / "evaluation.json").read_text()) if (output_dir / "evaluation.json").is_file() else {}
    ctx.log(
        f"model.tar.gz: {step_dir / 'model.tar.gz'}; train.py's {report.get('split', 'test')} accuracy {report.get('accuracy', float('nan')):.3f}"
    )
    return {
        "model_dir": str(model_dir),
        "model_tar": str(step_dir / "model.tar.gz"),
        "hyperparameters": hyperparameters,
        "epochs_capped_by_budget": epochs_capped,
        "nodes": nodes,
        "nproc_per_node": nproc,
        "batch_size_per_process": int((per_process or hyperparameters).get("batch-size", 0)) or None,
        "train_report_accuracy": report.get("accuracy"),
    }


def _run_nodes(launches: list[tuple[list[str], Path, dict[str, str], Any]]) -> None:
    """Start every node's torchrun at once; one failing (or Ctrl-C) stops the others."""
    jobs = [
        (
            lambda command=command, log=log, env=env, handler=handler: run_logged(
                command, log, env=env, on_line=handler, what=f"torchrun {log.stem}"
            )
        )
        for command, log, env, handler in launches
    ]
    errors = [result for result in run_parallel(jobs, stop_others_on_error=True) if isinstance(result, BaseException)]
    if errors:
        # The node that failed first explains; the others only say they were stopped.
        raise next((e for e in errors if isinstance(e, StepFailed) and "code -" not in str(e)), errors[0])
