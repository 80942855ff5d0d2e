"""Training throughput (img/s) with the real data path and train step (issue 7, item 4).

    .venv/bin/python -m bench.train_throughput [--models mobilenet_v3_small@128,resnet18] [--device cpu|cuda]
        [--batch-size 32] [--steps 5] [--rounds 3] [--amp on|off] [--channels-last on|off] [--data-path loader|gpu-resident]
        [--data DIR] [--threads 2] [--json-out FILE]
    torchrun --standalone --nproc-per-node 2 -m bench.train_throughput ...   (data parallel: see bench/train_scaling.py)

What is timed is training_code's own code: dataset.load_split + train.make_loader (memory-mapped uint8
batches through a DataLoader) and train.train_one_epoch (count-preserving augmentation, forward, loss,
backward, AdamW step, LR schedule, under DistributedDataParallel when torchrun starts several processes).
Each round is an "epoch" of --steps batches per process; img/s = images of all processes / round time;
the median of --rounds rounds is reported, after one untimed warm-up round.

--data is a prep.py output folder (its train/ channel is used). By default bench/results/tmp/abid_prepared
(the real photos, prepared by bench/real_data_accuracy.py or prep.py) when present, else a small synthetic
set is generated and prepared with synthetic_bins.py + prep.py into bench/results/tmp/.

GPU options (--device cuda): --amp (bfloat16 autocast, as train.py does on GPUs), --channels-last, and
--data-path gpu-resident: the whole uint8 channel is copied to GPU memory once and batches are indexed
there, so augmentation (train.augment runs on whatever device its input is on) and the step never wait
for host-to-device copies. The loader path with pinned memory is the default, as in train.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench import common

DEFAULT_DATA = common.SCRATCH_DIR / "abid_prepared"
SYNTHETIC_DATA = common.SCRATCH_DIR / "synthetic_prepared"
DEFAULT_MODELS = "mobilenet_v3_small@128,mobilenet_v3_small,resnet18"


def parse_model(text: str) -> tuple[str, int]:
    """'resnet18' or 'mobilenet_v3_small@128' -> (architecture, internal image size)."""
    import models

    name, _, size = text.partition("@")
    if name not in models.ARCHITECTURES:
        raise common.BenchError(f"--models entry {text!r}: unknown architecture; choose from {', '.join(models.ARCHITECTURES)}")
    if size and (not size.isdigit() or not 32 <= int(size) <= 224):
        raise common.BenchError(f"--models entry {text!r}: the size after @ must be a whole number from 32 to 224")
    return name, int(size or 224)


def ensure_data(folder: Path | None) -> Path:
    """A prep.py output folder to read: the given one, the real photos, or a synthetic set made once."""
    if folder is not None:
        if not (folder / "train").is_dir():
            raise common.BenchError(f"--data {folder} has no train/ channel: give a prep.py --output folder")
        return folder
    if (DEFAULT_DATA / "train").is_dir():
        return DEFAULT_DATA
    if not (SYNTHETIC_DATA / "train").is_dir():
        import prep
        import synthetic_bins

        photos = common.SCRATCH_DIR / "synthetic_photos"
        synthetic_bins.generate(photos, 400, seed=3)
        prep.prepare(str(photos), str(SYNTHETIC_DATA), workers=2)
    return SYNTHETIC_DATA


def gpu_resident_batches(images, targets, batch_size: int, steps: int, generator) -> Iterator:
    """Batches indexed from uint8 tensors already in GPU memory (a random permutation per round)."""
    import torch

    order = torch.randperm(images.shape[0], generator=generator)[: steps * batch_size].to(images.device)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        yield images[index], targets[index]


def take(loader, steps: int) -> Iterator:
    for step, batch in enumerate(loader):
        if step >= steps:
            return
        yield batch


class Counted:
    """Wraps a batch iterator and counts the images it handed out (a short last round is not overstated)."""

    def __init__(self, batches: Iterator) -> None:
        self.batches, self.images = batches, 0

    def __iter__(self) -> Iterator:
        for images, targets in self.batches:
            self.images += len(targets)
            yield images, targets


def run(args: argparse.Namespace) -> list[dict]:
    import dataset
    import models
    import numpy as np
    import torch
    import train
    from torch.nn.parallel import DistributedDataParallel

    rank, world, device = train.init_distributed()
    if args.device == "cuda" and device.type != "cuda":
        raise common.BenchError("--device cuda: no CUDA device is visible to torch here (GPU rows need a GPU machine)")
    if args.device == "cpu":
        device = torch.device("cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = ensure_data(args.data)
    split = dataset.load_split(data / "train")
    if len(split) < args.batch_size * world:
        raise common.BenchError(
            f"the train channel has {len(split)} images, fewer than --batch-size x processes ({args.batch_size * world})"
        )
    amp_dtype = (torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16) if args.amp == "on" else None
    # train.py's own defaults for everything the step reads (augmentation, loss), so the bench follows its changes.
    step_args = train.get_args_parser().parse_args(["--train", str(data / "train"), "--validation", str(data / "train")])
    step_args.batch_size, step_args.workers, step_args.seed, step_args.augment = args.batch_size, args.workers, 0, "on"
    resident = None
    if args.data_path == "gpu-resident":
        if device.type != "cuda":
            raise common.BenchError("--data-path gpu-resident needs --device cuda")
        # One copy into RAM (the memory map is read-only), then into GPU memory: fine for this dataset's size.
        resident = (torch.from_numpy(np.array(split.images)).to(device), torch.from_numpy(split.targets).to(device))
    rows = []
    for entry in args.models.split(","):
        architecture, image_size = parse_model(entry.strip())
        step_args.model, step_args.image_size = architecture, image_size
        torch.manual_seed(0)
        net = models.build_model(architecture, len(split.classes), image_size=image_size).to(device)
        if args.channels_last == "on":
            net = net.to(memory_format=torch.channels_last)
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else net
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, train.lr_lambda(args.steps * (args.rounds + 1)))
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        loader, sampler = train.make_loader(split, step_args, rank, world)
        seconds, cpu_seconds, images = [], [], []
        for round_index in range(args.rounds + 1):  # round 0 warms up (allocator, cuDNN autotune, thread pools)
            generator = train.seed_everything(0, round_index, rank)
            sampler.set_epoch(round_index)
            batches = Counted(
                gpu_resident_batches(*resident, args.batch_size, args.steps, generator) if resident else take(loader, args.steps)
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
            started, started_cpu = time.perf_counter(), time.process_time()
            train.train_one_epoch(model, batches, optimizer, scheduler, scaler, step_args, device, generator, amp_dtype, world)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_index:
                seconds.append(time.perf_counter() - started)
                cpu_seconds.append(time.process_time() - started_cpu)
                images.append(batches.images * world)  # every process runs the same number of equal batches
        rates = [n / s for n, s in zip(images, seconds, strict=True)]
        rows.append(
            {
                "model": architecture,
                "image_size": image_size,
                "device": str(device.type),
                "processes": world,
                "threads_per_process": torch.get_num_threads(),
                "batch_per_process": args.batch_size,
                "amp": args.amp,
                "channels_last": args.channels_last,
                "data_path": args.data_path,
                "img_s": statistics.median(rates),
                "img_s_min": min(rates),
                "img_s_max": max(rates),
                # This process's CPU time (all its threads): robust to other processes' load with one thread, one process.
                "cpu_img_s": statistics.median(n / world / c for n, c in zip(images, cpu_seconds, strict=True)),
                "images_per_round": images[0],
                "rounds": args.rounds,
                "data": str(data.relative_to(common.ROOT) if data.is_relative_to(common.ROOT) else data),
            }
        )
        if rank == 0:
            common.print_table(
                rows[-1:],
                ["model", "image_size", "device", "processes", "threads_per_process", "img_s", "img_s_min", "img_s_max", "cpu_img_s"],
            )
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Training img/s with training_code's loader and train step (CPU, or GPU with --device cuda)."
    )
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated architecture[@internal size]")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to train")
    parser.add_argument("--batch-size", type=int, default=32, help="images per process per step")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported), after one warm-up round")
    parser.add_argument("--amp", default=None, choices=("on", "off"), help="bfloat16 autocast (default: on for cuda, off for cpu)")
    parser.add_argument(
        "--channels-last", default=None, choices=("on", "off"), help="channels_last weights (default: on for cuda, as train.py)"
    )
    parser.add_argument(
        "--data-path",
        default="loader",
        choices=("loader", "gpu-resident"),
        help="DataLoader from the memory map, or all data in GPU memory",
    )
    parser.add_argument("--data", type=Path, default=None, help="prep.py output folder (default: real photos if prepared, else synthetic)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (default: OMP_NUM_THREADS, else 2)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default as train.py: 2 on cuda, 0 on cpu)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the rows here (used by bench/train_scaling.py)")
    parser.add_argument("--quick", action="store_true", help="mobilenet_v3_small@128 only, 3 steps x 2 rounds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.quick:
        common.quick_results()
    if args.workers is None:
        args.workers = 2 if args.device == "cuda" else 0
    if min(args.batch_size, args.steps, args.rounds) < 1 or args.threads < 0 or args.workers < 0:
        print("error: --batch-size, --steps and --rounds must be at least 1; --threads and --workers at least 0", file=sys.stderr)
        return 2
    args.amp = args.amp or ("on" if args.device == "cuda" else "off")
    args.channels_last = args.channels_last or ("on" if args.device == "cuda" else "off")
    if args.quick:
        args.models, args.steps, args.rounds = "mobilenet_v3_small@128", 3, 2
    import torch

    torch.set_num_threads(args.threads or int(os.environ.get("OMP_NUM_THREADS", "2")))
    try:
        rows = run(args)
    except (common.BenchError, ValueError) as error:  # dataset.DataError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        if args.json_out:
            args.json_out.write_text(json.dumps(rows, indent=2) + "\n")
        name = "train_throughput" if args.device == "cpu" else "train_throughput_gpu"
        # Under bench/train_scaling.py (--json-out) the rows are its input, not this benchmark's result file.
        if args.json_out is None and int(os.environ.get("WORLD_SIZE", "1")) == 1:
            path = common.write_result(name, common.command_line("bench.train_throughput", argv), rows)
            print(f"wrote {common.display(path)}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # torchrun workers: leave without interpreter finalizers (DESIGN.md: gloo teardown can abort at exit).
    if "LOCAL_RANK" in os.environ:
        os._exit(code)
    sys.exit(code)
