"""Estimate one training-pipeline run's AWS cost from cdk.json: instance-hours per step times the dated
price table in infra/prices.json, on-demand and with managed spot. Run `make cost` (python -m infra.cost).

The hours per step are estimates for the Udacity subset (10,441 photos) on the default instance types,
printed with the result and overridable (--trial-hours ...). Storage, data transfer and the endpoint's
running time are not part of a run; the endpoint's monthly cost is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import AppConfig, ConfigError, config_from_mapping

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


def estimate(config: AppConfig, prices: dict[str, Any], hours: Hours = DEFAULT_HOURS) -> list[Line]:
    """One line per step; spot applies to tuning trials and the final training job when useSpot is true."""
    spot_factor = 1.0 - float(prices["spot_saving"]) if config.use_spot else 1.0

    def line(step: str, instance_type: str, key: str, use: str, instances: int, step_hours: float, spot: bool) -> Line:
        on_demand = _price(prices, instance_type, use, key) * instances * step_hours
        return Line(step, instance_type, instances, step_hours, on_demand, on_demand * (spot_factor if spot else 1.0))

    return [
        line("Prepare (processing)", config.processing_instance_type, "processingInstanceType", "processing", 1, hours.prepare, False),
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


def endpoint_monthly(config: AppConfig, prices: dict[str, Any]) -> str:
    if config.endpoint_mode == "serverless":
        return "serverless endpoint: billed per request (GB-seconds of compute); no idle cost"
    hourly = _price(prices, config.endpoint_instance_type, "hosting", "endpointInstanceType")
    low, high = hourly * config.endpoint_min_instances * HOURS_PER_MONTH, hourly * config.endpoint_max_instances * HOURS_PER_MONTH
    return f"endpoint {config.endpoint_instance_type} x {config.endpoint_min_instances}..{config.endpoint_max_instances}: ${low:,.2f}..${high:,.2f} per month (always on)"


def _money(value: float) -> str:
    return f"{'$' + format(value, ',.2f'):>10}"


def render(config: AppConfig, prices: dict[str, Any], hours: Hours = DEFAULT_HOURS) -> str:
    lines = estimate(config, prices, hours)
    step_functions = TRANSITIONS_PER_RUN / 1000 * float(prices["step_functions_per_1000_transitions"])
    rows = [
        f"One pipeline run, {prices['region']} prices as of {prices['as_of']} (infra/prices.json); hours are estimates",
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
    return "\n".join(rows)


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
    defaults = DEFAULT_HOURS
    for name in ("prepare", "trial", "train", "evaluate"):
        parser.add_argument(
            f"--{name}-hours",
            type=float,
            default=getattr(defaults, name),
            help=f"estimated hours of one {name} job (default {getattr(defaults, name)})",
        )
    return parser


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
        print(render(config, load_prices(args.prices), hours))
    except (ConfigError, CostError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
