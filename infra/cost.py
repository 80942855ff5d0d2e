"""Estimate one training-pipeline run's AWS cost from cdk.json: instance-hours per step times the dated
price table in infra/prices.json, on-demand and with managed spot. Run `make cost` (python -m infra.cost).

The hours per step are estimates for the Udacity subset (10,441 photos) on the default instance types,
printed with the result and overridable (--trial-hours ...). Storage, data transfer and the endpoint's
running time are not part of a run; the endpoint's monthly cost is printed beside it.

`--dataset all` estimates a run on the whole Amazon Bin Image Dataset (execution input `{"dataset": "all"}`)
from per-image figures instead (`PerImage`: each with its source, printed under the table), with cdk.json's
instance types and counts (prepareInstanceCount, tuningMaxJobs, trainingInstanceCount).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import AppConfig, ConfigError, config_from_mapping, is_gpu_instance

ROOT = Path(__file__).resolve().parents[1]
PRICES = Path(__file__).resolve().parent / "prices.json"
HOURS_PER_MONTH = 730
# State transitions of one run that tunes and deploys (about 50); Step Functions bills standard workflows per transition.
TRANSITIONS_PER_RUN = 60


class CostError(ValueError):
    """The price table lacks an instance type, or an input is unusable; the message says what to fix."""


@dataclass(frozen=True)
class Hours:
    """Wall-clock hours one job of each step runs (estimates; see the module docstring)."""

    prepare: float = 0.4  # download + decode 10,441 JPEGs from the public bucket on ml.m5.xlarge
    trial: float = 0.5  # one tuning trial: ~15-40 epochs over ~6k photos on one ml.g5.xlarge
    train: float = 0.75  # the final training job, per instance (longest epochs of the space)
    evaluate: float = 0.1  # the test split (~2k photos) on ml.m5.xlarge


DEFAULT_HOURS = Hours()


@dataclass(frozen=True)
class Line:
    step: str
    instance_type: str
    instances: int
    hours: float
    on_demand: float
    spot: float


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    try:
        prices = json.loads(path.read_text())
    except FileNotFoundError:
        raise CostError(f"price table {path} is missing") from None
    except json.JSONDecodeError as error:
        raise CostError(f"price table {path} is not valid JSON: {error}") from None
    for key in ("as_of", "region", "spot_saving", "sagemaker_per_hour", "step_functions_per_1000_transitions"):
        if key not in prices:
            raise CostError(f"price table {path} lacks '{key}'")
    return prices


def _price(prices: dict[str, Any], instance_type: str, use: str, key: str) -> float:
    try:
        return float(prices["sagemaker_per_hour"][instance_type][use])
    except KeyError:
        raise CostError(
            f"infra/prices.json has no {use} price for {instance_type} (cdk.json '{key}'): add it from the SageMaker pricing page, "
            "or choose a listed instance type"
        ) from None


def estimate(config: AppConfig, prices: dict[str, Any], hours: Hours = DEFAULT_HOURS, *, prepare_instances: int = 1) -> list[Line]:
    """One line per step; spot applies to tuning trials and the final training job when useSpot is true."""
    spot_factor = 1.0 - float(prices["spot_saving"]) if config.use_spot else 1.0

    def line(step: str, instance_type: str, key: str, use: str, instances: int, step_hours: float, spot: bool) -> Line:
        on_demand = _price(prices, instance_type, use, key) * instances * step_hours
        return Line(step, instance_type, instances, step_hours, on_demand, on_demand * (spot_factor if spot else 1.0))

    return [
        line(
            "Prepare (processing)",
            config.processing_instance_type,
            "processingInstanceType",
            "processing",
            prepare_instances,
            hours.prepare,
            False,
        ),
        line(
            f"Tune ({config.tuning_max_jobs} trials)",
            config.tuning_instance_type,
            "tuningInstanceType",
            "training",
            config.tuning_max_jobs,
            hours.trial,
            True,
        ),
        line("Train", config.training_instance_type, "trainingInstanceType", "training", config.training_instance_count, hours.train, True),
        line("Evaluate (processing)", config.processing_instance_type, "processingInstanceType", "processing", 1, hours.evaluate, False),
    ]


# --- the whole dataset, from per-image figures -------------------------------------------------------------

# Photos in the public dataset (s3://aft-vbi-pds/bin-images/, issue 16: "536k photos").
DATASET_PHOTOS = 536_434
# prep.py's split shares (training_code/prep.py SPLITS).
SPLIT_SHARES = {"train": 0.6, "validation": 0.2, "test": 0.2}
# Measured H200 training throughput of the default model (efficientnet_lite0 at 192 px, bf16, batch 128, DataLoader with
# 8 workers: docs/benchmarks.md section 4c, bench/results/train_throughput_h200_loader.json) and the H200's memory bandwidth.
H200_IMAGES_PER_SECOND = 2985.0
H200_MEMORY_GB_S = 4800.0
# GPU memory bandwidth (GB/s) of the GPU in each instance family (NVIDIA data sheets; A10G as the A10: 600 GB/s).
GPU_MEMORY_GB_S = {"ml.g5": 600.0, "ml.g4dn": 320.0, "ml.p3": 900.0, "ml.g6": 300.0}
# CPU training throughput per physical core (efficientnet_lite0 at 192 px, one thread, docs/benchmarks.md section 4c).
CPU_IMAGES_PER_SECOND_PER_CORE = 4.5


@dataclass(frozen=True)
class PerImage:
    """The per-image figures of the whole-dataset estimate; `sources()` prints where each comes from."""

    photos: int = DATASET_PHOTOS
    kept_share: float = 6061 / 9102  # photos holding 1..5 items: prep.py on ../shared/abid kept 6,061 of 9,102
    prep_cpu_s: float = 0.0044  # CPU seconds per photo read: 2.6 ms decode+resize of an original (benchmarks 1) + 1.8 ms rest (prep.py run)
    s3_get_s: float = 0.05  # one small GET (AWS S3 performance whitepaper: median latency "tens of milliseconds")
    gets_per_photo: int = 2  # the photo and its metadata JSON
    train_img_s: float | None = None  # training images/s per instance; None: derived for the instance type
    epochs: int = 10  # search_space: epochs 6..14, the recipe's 10
    multi_instance_efficiency: float = 0.9  # data-parallel scaling across training instances (assumed)
    eval_cpu_img_s_per_core: float = 31.8  # forward passes/s per core: efficientnet_b0 TorchScript batch 16 (benchmarks 3)
    eval_passes: int = 4  # tta flip4: four forward passes per test photo
    job_overhead_h: float = 0.1  # instance start, image pull, listing 536k keys, upload (assumed)

    def split(self, name: str) -> float:
        return self.photos * self.kept_share * SPLIT_SHARES[name]


def training_images_per_second(instance_type: str, prices: dict[str, Any], figures: PerImage) -> tuple[float, str]:
    """Training images/s of one instance of `instance_type`, and how the figure was obtained."""
    if figures.train_img_s is not None:
        return figures.train_img_s, "given with --train-img-s"
    family = ".".join(instance_type.split(".")[:2])
    if family in GPU_MEMORY_GB_S:
        rate = H200_IMAGES_PER_SECOND * GPU_MEMORY_GB_S[family] / H200_MEMORY_GB_S
        return rate, (
            f"H200 measured {H200_IMAGES_PER_SECOND:,.0f} img/s (benchmarks 4c) x GPU memory bandwidth "
            f"{GPU_MEMORY_GB_S[family]:,.0f}/{H200_MEMORY_GB_S:,.0f} GB/s: an estimate, not a measurement"
        )
    if is_gpu_instance(instance_type):
        raise CostError(f"no training throughput for {instance_type}: pass --train-img-s (images/s of one instance)")
    cores = _cores(prices, instance_type)
    return CPU_IMAGES_PER_SECOND_PER_CORE * cores, f"{CPU_IMAGES_PER_SECOND_PER_CORE} img/s per core x {cores:g} cores (benchmarks 4c, CPU)"


def _cores(prices: dict[str, Any], instance_type: str) -> float:
    """Physical cores (half the vCPUs: hyperthreads add little to decode and convolution)."""
    try:
        return float(prices["vcpus"][instance_type]) / 2
    except KeyError:
        raise CostError(f'infra/prices.json has no vCPU count for {instance_type}: add it under "vcpus"') from None


def whole_dataset_hours(config: AppConfig, prices: dict[str, Any], figures: PerImage) -> tuple[Hours, list[str]]:
    """Hours of one job of each step for every photo, and the figures behind them (one line each)."""
    prep_vcpus = _cores(prices, config.processing_instance_type) * 2
    workers = min(32, 4 * int(prep_vcpus))  # prep.py's default --workers
    cpu_rate = _cores(prices, config.processing_instance_type) / figures.prep_cpu_s
    download_rate = workers / (figures.gets_per_photo * figures.s3_get_s)
    prep_rate = min(cpu_rate, download_rate)
    per_prep_instance = figures.photos / config.prepare_instance_count
    train_rate, train_source = training_images_per_second(config.training_instance_type, prices, figures)
    trial_rate, _ = training_images_per_second(config.tuning_instance_type, prices, figures)
    train, validation, test = (figures.split(name) for name in ("train", "validation", "test"))

    def epochs_hours(rate: float) -> float:
        # validation every epoch: forward only, about a third of a training step's work
        return figures.epochs * (train / rate + validation / (3 * rate)) / 3600 + figures.job_overhead_h

    final_rate = (
        train_rate * config.training_instance_count * (figures.multi_instance_efficiency if config.training_instance_count > 1 else 1)
    )
    eval_rate = figures.eval_cpu_img_s_per_core * _cores(prices, config.processing_instance_type) / figures.eval_passes
    hours = Hours(
        prepare=per_prep_instance / prep_rate / 3600 + figures.job_overhead_h,
        trial=epochs_hours(trial_rate),
        train=epochs_hours(final_rate),
        evaluate=test / eval_rate / 3600 + figures.job_overhead_h,
    )
    notes = [
        f"photos: {figures.photos:,} read; {figures.kept_share:.1%} hold 1..5 items (6,061 of 9,102 in ../shared/abid) -> "
        f"train {train:,.0f}, validation {validation:,.0f}, test {test:,.0f} (prep.py splits 60/20/20)",
        f"prepare: {per_prep_instance:,.0f} photos per instance at {prep_rate:,.0f}/s = min(CPU {cpu_rate:,.0f}/s: "
        f"{figures.prep_cpu_s * 1000:.1f} ms CPU per photo on {_cores(prices, config.processing_instance_type):g} cores; "
        f"S3 {download_rate:,.0f}/s: {workers} workers, {figures.gets_per_photo} GETs of ~{figures.s3_get_s * 1000:.0f} ms per photo)",
        f"training: {train_rate:,.0f} img/s per {config.training_instance_type} ({train_source}); {figures.epochs} epochs, "
        f"validation each epoch at 3x; {config.training_instance_count} instances at {figures.multi_instance_efficiency:.0%} scaling",
        f"evaluate: {eval_rate:,.1f} photos/s ({figures.eval_cpu_img_s_per_core} forward passes/s per core, "
        f"{figures.eval_passes} passes per photo for tta flip4)",
        f"every job: +{figures.job_overhead_h:g} h start-up and listing",
    ]
    return hours, notes


def wall_hours(config: AppConfig, hours: Hours) -> float:
    """A run's duration: tuning runs tuningMaxParallelJobs trials at a time."""
    rounds = -(-config.tuning_max_jobs // config.tuning_max_parallel_jobs)
    return hours.prepare + rounds * hours.trial + hours.train + hours.evaluate


def runtime_warnings(config: AppConfig, hours: Hours) -> list[str]:
    """Jobs longer than maxRuntimeSeconds would be stopped by SageMaker: say so, with the value that fits."""
    limit_h = config.max_runtime_seconds / 3600
    steps = {"Prepare": hours.prepare, "a tuning trial": hours.trial, "Train": hours.train, "Evaluate": hours.evaluate}
    return [
        f"warning: {step} needs ~{value:.1f} h, over maxRuntimeSeconds ({config.max_runtime_seconds} s = {limit_h:g} h): "
        f"raise it to at least {int(value * 3600 * 1.25)} (cdk.json, and maxWaitSeconds with spot)"
        + (", or add Prepare instances (prepareInstances)" if step == "Prepare" else "")
        for step, value in steps.items()
        if value > limit_h
    ]


def render_whole_dataset(config: AppConfig, prices: dict[str, Any], figures: PerImage) -> str:
    hours, notes = whole_dataset_hours(config, prices, figures)
    title = (
        f"One pipeline run on the whole dataset ({figures.photos:,} photos, dataset=all), {prices['region']} prices as of "
        f"{prices['as_of']} (infra/prices.json); hours from per-image figures"
    )
    rows = _table(config, prices, estimate(config, prices, hours, prepare_instances=config.prepare_instance_count), title)
    rows += ["", f"wall time: ~{wall_hours(config, hours):.1f} h (Prepare, the tuning rounds, Train, Evaluate one after another)"]
    rows += ["", "per-image figures (python -m infra.cost --help to change them):", *(f"- {note}" for note in notes)]
    rows += runtime_warnings(config, hours)
    return "\n".join(rows)


def endpoint_monthly(config: AppConfig, prices: dict[str, Any]) -> str:
    if config.endpoint_mode == "serverless":
        return "serverless endpoint: billed per request (GB-seconds of compute); no idle cost"
    hourly = _price(prices, config.endpoint_instance_type, "hosting", "endpointInstanceType")
    low, high = hourly * config.endpoint_min_instances * HOURS_PER_MONTH, hourly * config.endpoint_max_instances * HOURS_PER_MONTH
    return f"endpoint {config.endpoint_instance_type} x {config.endpoint_min_instances}..{config.endpoint_max_instances}: ${low:,.2f}..${high:,.2f} per month (always on)"


def _money(value: float) -> str:
    return f"{'$' + format(value, ',.2f'):>10}"


def _table(config: AppConfig, prices: dict[str, Any], lines: list[Line], title: str) -> list[str]:
    step_functions = TRANSITIONS_PER_RUN / 1000 * float(prices["step_functions_per_1000_transitions"])
    rows = [
        title,
        "",
        f"| {'step':<22} | {'instance':<14} | {'n':>2} | {'hours each':>10} | {'on-demand':>10} | {'with spot' if config.use_spot else 'no spot':>10} |",
        f"|{'-' * 24}|{'-' * 16}|{'-' * 4}|{'-' * 12}|{'-' * 12}|{'-' * 12}|",
    ]
    for item in lines:
        rows.append(
            f"| {item.step:<22} | {item.instance_type:<14} | {item.instances:>2} | {item.hours:>10.2f} | {_money(item.on_demand)} | {_money(item.spot)} |"
        )
    total_on_demand = sum(i.on_demand for i in lines) + step_functions
    total_spot = sum(i.spot for i in lines) + step_functions
    rows.append(f"| {'Step Functions':<22} | {'':<14} | {'':>2} | {'':>10} | {_money(step_functions)} | {_money(step_functions)} |")
    rows.append(f"| {'total per run':<22} | {'':<14} | {'':>2} | {'':>10} | {_money(total_on_demand)} | {_money(total_spot)} |")
    rows += ["", endpoint_monthly(config, prices)]
    if config.use_spot:
        rows.append(f"spot: assumed saving {float(prices['spot_saving']):.0%} on tuning and training ({prices.get('spot_note', '')})")
    return rows


def render(config: AppConfig, prices: dict[str, Any], hours: Hours = DEFAULT_HOURS) -> str:
    title = f"One pipeline run, {prices['region']} prices as of {prices['as_of']} (infra/prices.json); hours are estimates"
    return "\n".join(_table(config, prices, estimate(config, prices, hours), title))


def _overrides(pairs: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CostError(f"-c {pair!r}: expected key=value, like -c tuningMaxJobs=4")
        result[key] = value
    return result


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Estimate one training-pipeline run's AWS cost from cdk.json")
    parser.add_argument(
        "-c", "--context", action="append", default=[], metavar="KEY=VALUE", help="override a cdk.json context value, as with cdk -c"
    )
    parser.add_argument("--cdk-json", type=Path, default=ROOT / "cdk.json", help="the cdk.json to read")
    parser.add_argument("--prices", type=Path, default=PRICES, help="the dated price table")
    parser.add_argument(
        "--dataset",
        choices=("subset", "all"),
        default="subset",
        help="subset: the Udacity list with the --*-hours estimates; all: every photo, from per-image figures (prepareInstanceCount instances)",
    )
    figures = PerImage()
    parser.add_argument("--photos", type=int, default=figures.photos, help=f"--dataset all: photos read (default {figures.photos:,})")
    parser.add_argument(
        "--epochs", type=int, default=figures.epochs, help=f"--dataset all: epochs of each trial and of Train (default {figures.epochs})"
    )
    parser.add_argument(
        "--train-img-s",
        type=float,
        default=None,
        help="--dataset all: training images/s of one instance (default: derived for the instance type)",
    )
    parser.add_argument(
        "--prep-cpu-ms",
        type=float,
        default=figures.prep_cpu_s * 1000,
        help=f"--dataset all: prep CPU ms per photo (default {figures.prep_cpu_s * 1000:g})",
    )
    defaults = DEFAULT_HOURS
    for name in ("prepare", "trial", "train", "evaluate"):
        parser.add_argument(
            f"--{name}-hours",
            type=float,
            default=getattr(defaults, name),
            help=f"estimated hours of one {name} job (default {getattr(defaults, name)})",
        )
    return parser


def _figures(args: argparse.Namespace) -> PerImage:
    if args.photos < 1 or args.epochs < 1 or args.prep_cpu_ms <= 0 or (args.train_img_s is not None and args.train_img_s <= 0):
        raise CostError("--photos, --epochs, --prep-cpu-ms and --train-img-s must be positive")
    return PerImage(photos=args.photos, epochs=args.epochs, train_img_s=args.train_img_s, prep_cpu_s=args.prep_cpu_ms / 1000)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        hours = Hours(args.prepare_hours, args.trial_hours, args.train_hours, args.evaluate_hours)
        if min(hours.prepare, hours.trial, hours.train, hours.evaluate) < 0:
            raise CostError("hours must not be negative")
        try:
            context = json.loads(args.cdk_json.read_text())["context"]
        except (FileNotFoundError, KeyError, json.JSONDecodeError) as error:
            raise CostError(f"cannot read the context of {args.cdk_json}: {error!r}") from None
        config = config_from_mapping({**context, **_overrides(args.context)})
        if args.dataset == "all":
            print(render_whole_dataset(config, load_prices(args.prices), _figures(args)))
        else:
            print(render(config, load_prices(args.prices), hours))
    except (ConfigError, CostError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
