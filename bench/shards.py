"""Shard format, sharded prep and the shard reader, measured on synthetic bins (issue 16).

    .venv/bin/python -m bench.shards format [--photos 2000]          -> bench/results/shards_format.json
    .venv/bin/python -m bench.shards prep [--photos 2000]            -> bench/results/shards_prep[_<photos>].json
    .venv/bin/python -m bench.shards memory [--sizes 2000,8000]      -> bench/results/shards_memory.json
    .venv/bin/python -m bench.shards throughput [--steps 10]         -> bench/results/shards_throughput.json

format: candidate shard records for the spec's 224x224 pixels (uint8 .npy members; JPEG members at fixed
qualities) written as tar shards: bytes on disk per image, encode and decode CPU ms per image, read
throughput of a whole shard (read + decode, warm page cache) and the JPEG pixels' error against the spec.
prep: wall time of `prep.py --format shards` in 1, 2 and 4 concurrent processes (each --workers 1) over
the same photos, and each process's peak RSS. memory: peak RSS of one prep process and of one
training-data pass (dataset.ShardStream, one epoch, no model) at two dataset sizes. throughput: train.py's
own step (train.train_one_epoch, mobilenet_v3_small@128, batch 32) fed by the memory-mapped reader and by
the shard reader, rounds interleaved, medians. Synthetic photos come from synthetic_bins.py into the
git-ignored bench/results/tmp/shards/.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from bench import common

WORK = common.SCRATCH_DIR / "shards"
PYTHON = sys.executable
JPEG_QUALITIES = (90, 95)
SEEDS = {2000: 7, 8000: 8}  # one independent synthetic set per size (seed 0 for other sizes)


def photos(count: int) -> Path:
    """A synthetic bucket of `count` photos, generated once."""
    import synthetic_bins

    seed = SEEDS.get(count, 0)
    folder = WORK / f"photos-{count}-s{seed}"
    if not (folder / "metadata").is_dir() or len(list((folder / "metadata").glob("*.json"))) < count:
        synthetic_bins.generate(folder, count, seed=seed)
    return folder


def spec_pixels(bucket: Path, limit: int) -> list[bytes]:
    import preprocessing_spec

    paths = sorted((bucket / "bin-images").glob("*.jpg"))[:limit]
    return [preprocessing_spec.preprocess_bytes(p.read_bytes()) for p in paths]


# --- format ------------------------------------------------------------------------------------------


def encoder(kind: str):
    """(encode raw -> member bytes, decode member bytes -> uint8 [224,224,3]) for one candidate."""
    import numpy as np
    import shards
    from PIL import Image

    if kind == "npy":
        return shards.encode_example, shards.decode_example
    quality = int(kind.removeprefix("jpeg"))

    def encode(raw: bytes) -> bytes:
        out = io.BytesIO()
        Image.frombuffer("RGB", (224, 224), raw).save(out, format="JPEG", quality=quality)
        return out.getvalue()

    def decode(data: bytes):
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    return encode, decode


def write_tar(path: Path, members: list[bytes], suffix: str) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for index, data in enumerate(members):
            info = tarfile.TarInfo(f"{index:08d}.{suffix}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def read_tar(path: Path, decode) -> int:
    n = 0
    with tarfile.open(path, "r|") as tar:  # streaming mode, as a WebDataset reader reads
        for member in tar:
            decode(tar.extractfile(member).read())
            n += 1
    return n


def measure_format(kind: str, raws: list[bytes], rounds: int) -> dict[str, Any]:
    import numpy as np

    encode, decode = encoder(kind)
    started = time.process_time()
    members = [encode(r) for r in raws]
    encode_ms = (time.process_time() - started) * 1000 / len(raws)
    path = WORK / f"format-{kind}.tar"
    write_tar(path, members, "npy" if kind == "npy" else "jpg")
    decode_ms, read_img_s = [], []
    for _ in range(rounds):
        started = time.process_time()
        for m in members:
            decode(m)
        decode_ms.append((time.process_time() - started) * 1000 / len(members))
        started = time.perf_counter()
        n = read_tar(path, decode)
        read_img_s.append(n / (time.perf_counter() - started))
    sample = range(0, len(raws), max(1, len(raws) // 200))
    error = [np.abs(decode(members[i]).astype(np.int16) - np.frombuffer(raws[i], np.uint8).reshape(224, 224, 3)).mean() for i in sample]
    return {
        "candidate": kind,
        "images": len(raws),
        "bytes_per_image": path.stat().st_size / len(raws),
        "encode_ms_per_image": encode_ms,
        "decode_ms_per_image": statistics.median(decode_ms),
        "read_decode_img_s": statistics.median(read_img_s),
        "mean_abs_pixel_error": float(np.mean(error)),
        "full_dataset_gb_536k": path.stat().st_size / len(raws) * 536_000 / 1e9,
    }


def run_format(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    raws = spec_pixels(photos(args.photos), args.photos)
    rows = [measure_format(kind, raws, args.rounds) for kind in ("npy", *(f"jpeg{q}" for q in JPEG_QUALITIES))]
    return rows, {"chosen": "npy"}


# --- prep scaling and memory -------------------------------------------------------------------------


def run_processes(commands: list[list[str]]) -> tuple[float, list[int], float]:
    """Start the commands together; (wall seconds until all end, each one's peak RSS in MB, their CPU seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    children = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env) for c in commands]
    peaks, cpu = {}, 0.0
    for child in children:
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise common.BenchError(f"{' '.join(commands[children.index(child)])} failed")
        peaks[child.pid] = usage.ru_maxrss // 1024  # Linux: KB
        cpu += usage.ru_utime + usage.ru_stime
    return time.perf_counter() - started, [peaks[c.pid] for c in children], cpu


def prep_commands(bucket: Path, out: Path, processes: int, workers: int = 1) -> list[list[str]]:
    prep = str(common.ROOT / "training_code" / "prep.py")
    return [
        [
            PYTHON,
            prep,
            "--source",
            str(bucket),
            "--output",
            str(out),
            "--format",
            "shards",
            "--shard",
            f"{i}/{processes}",
            "--workers",
            str(workers),
        ]
        for i in range(processes)
    ]


def fresh(folder: Path) -> Path:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return folder


def run_prep(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    bucket = photos(args.photos)
    counts = tuple(int(n) for n in args.processes.split(","))
    out = Path(args.prep_output) if args.prep_output else WORK
    walls: dict[int, list[float]] = {n: [] for n in counts}
    peaks: dict[int, list[int]] = {n: [] for n in counts}
    cpus: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(args.rounds):
        for processes in counts:  # interleaved: a slow spell of the shared machine hits every count alike
            wall, rss, cpu = run_processes(prep_commands(bucket, fresh(out / f"prep-{processes}"), processes))
            walls[processes].append(wall)
            peaks[processes].append(max(rss))
            cpus[processes].append(cpu)
    rows = [
        {
            "processes": n,
            "workers_per_process": 1,
            "photos": args.photos,
            "wall_s": statistics.median(walls[n]),
            "wall_s_rounds": [round(w, 1) for w in walls[n]],
            # CPU per photo: flat across counts = the work divides; the wall-time speedup is then the machine's share
            "cpu_ms_per_photo": round(1000 * statistics.median(cpus[n]) / args.photos, 2),
            "peak_rss_mb": max(peaks[n]),
        }
        for n in counts
    ]
    base = rows[0]["wall_s"]
    for row in rows:
        row["speedup_vs_1"] = base / row["wall_s"]
        row["photos_per_s"] = args.photos / row["wall_s"]
    return rows, {}


DATA_PASS = """
import resource, sys, dataset, shards
stream = dataset.ShardStream(shards.open_channel(sys.argv[1]), batch_size=32, seed=0)
stream.set_epoch(1)
n = sum(len(t) for _, t in stream)
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def data_pass_rss(channel: Path) -> tuple[int, int]:
    done = subprocess.run(
        [PYTHON, "-c", DATA_PASS, str(channel)], capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    images, rss = done.stdout.split()
    return int(images), int(rss)


def run_memory(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        bucket = photos(size)
        out = fresh(WORK / f"memory-{size}")
        wall, rss, _ = run_processes(prep_commands(bucket, out, 1, workers=2))
        disk = sum(p.stat().st_size for p in out.rglob("*.tar")) / 1e6
        images, pass_rss = data_pass_rss(out / "train")
        rows.append(
            {
                "photos": size,
                "prep_wall_s": wall,
                "prep_peak_rss_mb": rss[0],
                "shard_disk_mb": disk,
                "train_pass_images": images,
                "train_pass_peak_rss_mb": pass_rss,
            }
        )
    return rows, {}


# --- training throughput ------------------------------------------------------------------------------


def run_throughput(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import dataset
    import models
    import prep
    import torch
    import train

    from bench.train_throughput import Counted, take

    torch.set_num_threads(args.threads)
    bucket = photos(args.photos)
    arrays, sharded = WORK / f"throughput-arrays-{args.photos}", WORK / f"throughput-shards-{args.photos}"
    if not (arrays / "train" / dataset.IMAGES_FILE).is_file():
        prep.prepare(str(bucket), str(fresh(arrays)), workers=2)
    if not list((sharded / "train").glob("manifest-*")):
        prep.prepare_shards(str(bucket), str(fresh(sharded)), workers=2)
    step_args = train.get_args_parser().parse_args(["--train", "x", "--validation", "x"])
    step_args.batch_size, step_args.workers, step_args.seed, step_args.augment = args.batch_size, 0, 0, "on"
    step_args.model, step_args.image_size = "mobilenet_v3_small", 128
    readers = {"memory_map": dataset.load_split(arrays / "train"), "shards": dataset.load_split(sharded / "train")}
    loaders = {name: train.make_loader(split, step_args, 0, 1) for name, split in readers.items()}
    torch.manual_seed(0)
    net = models.build_model("mobilenet_v3_small", len(readers["shards"].classes), image_size=128)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, train.lr_lambda(10**6))
    rates: dict[str, list[float]] = {name: [] for name in readers}
    for round_index in range(args.rounds + 1):  # interleaved, so load changes hit both readers alike
        for name, (loader, sampler) in loaders.items():
            sampler.set_epoch(round_index)
            generator = train.seed_everything(0, round_index, 0)
            batches = Counted(take(loader, args.steps))
            started = time.perf_counter()
            train.train_one_epoch(net, batches, optimizer, scheduler, None, step_args, torch.device("cpu"), generator, None, 1)
            if round_index:  # round 0 warms up
                rates[name].append(batches.images / (time.perf_counter() - started))
    rows = [
        {
            "reader": name,
            "model": "mobilenet_v3_small@128",
            "batch": args.batch_size,
            "steps": args.steps,
            "threads": args.threads,
            "img_s": statistics.median(r),
            "img_s_all": r,
        }
        for name, r in rates.items()
    ]
    return rows, {"shards_vs_memory_map": rows[1]["img_s"] / rows[0]["img_s"]}


MEASURES = {"format": run_format, "prep": run_prep, "memory": run_memory, "throughput": run_throughput}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Shard format, sharded prep and shard reader measurements (issue 16).")
    parser.add_argument("measure", choices=sorted(MEASURES))
    parser.add_argument("--photos", type=int, default=2000, help="synthetic photos (format, prep, throughput)")
    parser.add_argument("--sizes", default="2000,8000", help="memory: dataset sizes to compare")
    parser.add_argument("--rounds", type=int, default=3, help="repeats (median reported)")
    parser.add_argument("--processes", default="1,2,4", help="prep: process counts to compare (the first is the baseline)")
    parser.add_argument(
        "--prep-output",
        default=None,
        help="prep: where the shards go (e.g. /dev/shm: leaves out this VM's disk writeback, which shares the 2 cores)",
    )
    parser.add_argument("--steps", type=int, default=10, help="throughput: training steps per round")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="throughput: torch threads (1: robust on a shared machine)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    try:
        rows, extra = MEASURES[args.measure](args)
    except common.BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    columns = list(rows[0])
    common.print_table(rows, [c for c in columns if not c.endswith("_all")])
    name = f"shards_{args.measure}" + (f"_{args.photos}" if args.measure == "prep" and args.photos != 2000 else "")
    path = common.write_result(name, common.command_line("bench.shards", argv), rows, extra)
    print(f"wrote {common.display(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
