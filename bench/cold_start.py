"""Lambda cold start: import time of the handler in a fresh process, and the unzipped asset size (issue 7, item 2; issue 15, item 3).

    .venv/bin/python -m bench.cold_start [--runs 7] [--build] [--quick]

The asset is the folder infra/lambda_asset.py builds at synth (.cache/lambda/asset-*, the newest complete
one); --build asks that builder for it when none exists (vendoring needs PyPI once, the runtime's Python
Debian's registry once, then both are cached). The asset targets python3.13 on x86_64, so the exact files
are imported by that interpreter here (infra/lambda_asset.target_python(): Debian's python3.13), with the
packages the runtime provides (botocore and its dependencies, compiled like the runtime's) after it on
PYTHONPATH, PYTHONDONTWRITEBYTECODE=1 (/var/task is read-only) and the environment Lambda sets. Cases:
- as shipped: the asset with the .pyc files the builder compiled (unchecked-hash);
- without .pyc: the same files minus __pycache__ (every module compiled from source at each start): what
  shipping bytecode saves;
- + count_api.endpoint: as shipped, plus the module the handler imports lazily on the first request that
  calls the endpoint (botocore): what that first request adds to the import;
- + X-Ray SDK: as shipped, plus `import aws_xray_sdk.core` first (what the Powertools Tracer imported,
  aws-xray-sdk 2.15.0 + wrapt vendored for python3.13 into the scratch folder): what dropping it saved.
Each figure is the median over --runs fresh processes; `import_ms` is measured inside the process around
`import handler` (wall clock; import_cpu_ms is the process's CPU time for it, which other processes'
load barely changes), `process_ms` is the whole interpreter start + import + exit.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from count_api.settings import ApiSettings, function_environment

from bench import common

ASSET_CACHE = common.ROOT / ".cache" / "lambda"
XRAY_PINS = ("aws-xray-sdk==2.15.0", "wrapt==2.5.2")
TARGET_IMPORT_MS = 300.0
COMPONENTS = (
    "botocore.session",
    "PIL.Image",
    "preprocessing_spec",
    "aws_xray_sdk.core",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "aws_lambda_powertools.event_handler",
    "handler",
)
TARGET_SIZE_MB = 30.0
PROBE = (
    "import time, sys; t, c = time.perf_counter(), time.process_time(); {pre}import handler; "
    "sys.stdout.write(f'{{(time.perf_counter() - t) * 1000}} {{(time.process_time() - c) * 1000}} ' + sys.modules['PIL'].__file__)"
)


def find_asset(build: bool) -> tuple[Path | None, str]:
    """(asset folder or None, how it was found)."""
    built = sorted((p for p in ASSET_CACHE.glob("asset-*") if (p / ".complete").is_file()), key=lambda p: p.stat().st_mtime)
    if built:
        return built[-1], "newest complete asset in .cache/lambda (infra/lambda_asset.py)"
    synthesized = sorted(
        (p for p in (common.ROOT / "cdk.out").glob("asset.*") if (p / "handler.py").is_file()), key=lambda p: p.stat().st_mtime
    )
    if synthesized:
        return synthesized[-1], "cdk.out asset from the last synth"
    if not build:
        return None, "no asset built yet (run `make synth` or pass --build)"
    try:
        from infra import lambda_asset

        return lambda_asset.build_asset(), "built now by infra/lambda_asset.build_asset()"
    except Exception as error:  # no network for the first vendoring, or the builder is not there
        return None, f"the asset could not be built ({type(error).__name__}: {str(error).splitlines()[0][:200]})"


def folder_size(folder: Path) -> tuple[int, dict[str, int]]:
    """Total bytes of the regular files (what Lambda unzips) and bytes per top-level entry."""
    per_entry: dict[str, int] = defaultdict(int)
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name != ".complete":
            size = path.stat().st_size
            total += size
            per_entry[path.relative_to(folder).parts[0]] += size
    return total, dict(per_entry)


def copy_without_bytecode(asset: Path, destination: Path) -> Path:
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(asset, destination, ignore=shutil.ignore_patterns("__pycache__", ".complete"))
    return destination


def xray_packages(destination: Path) -> Path:
    """aws-xray-sdk + wrapt for the target Python (what the Tracer needed), for the '+ X-Ray SDK' case."""
    from infra import lambda_asset

    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--only-binary=:all:",
        "--platform", lambda_asset.PIP_PLATFORM, "--python-version", lambda_asset.PYTHON_VERSION, "--implementation", "cp",
        "--target", str(destination), *XRAY_PINS,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise common.BenchError(f"pip could not fetch {XRAY_PINS}: {result.stderr[-800:]}")
    lambda_asset.compile_bytecode(destination)
    return destination


def lambda_env(pythonpath: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "POWERTOOLS", "AWS_", "LD_"))}
    env.update(
        PYTHONPATH=pythonpath,
        PYTHONDONTWRITEBYTECODE="1",  # /var/task is read-only: nothing compiled at start is kept
        # What the Lambda runtime and the stack set: metrics and logger take their Lambda code paths.
        AWS_LAMBDA_FUNCTION_NAME="bench-cold-start",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        # The function's own variables, as the stack sets them (count_api/settings.py).
        **function_environment(ApiSettings(endpoint_name="bench-endpoint")),
    )
    return env


def time_imports(python: list[str], env: dict[str, str], runs: int, pre: str = "") -> dict[str, float | str]:
    imports, cpu, processes, origin = [], [], [], ""
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run([*python, "-c", PROBE.format(pre=pre)], env=env, capture_output=True, text=True, check=False, cwd="/")
        processes.append((time.perf_counter() - started) * 1000)
        if result.returncode != 0:
            raise common.BenchError(f"importing the handler failed:\n{result.stderr.strip()[-1500:]}")
        wall_ms, cpu_ms, origin = result.stdout.split(" ", 2)
        imports.append(float(wall_ms))
        cpu.append(float(cpu_ms))
    return {
        "import_ms": statistics.median(imports),
        "import_cpu_ms": statistics.median(cpu),
        "process_ms": statistics.median(processes),
        "pillow_from": origin,
    }


def top_imports(python: list[str], env: dict[str, str], limit: int = 8) -> list[dict[str, float | str]]:
    """`python -X importtime -c "import handler"`: self time summed per top-level package, slowest first
    (self times add up to the whole import, so the shares are comparable)."""
    result = subprocess.run(
        [*python, "-X", "importtime", "-c", "import handler"], env=env, capture_output=True, text=True, check=False, cwd="/"
    )
    totals: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            totals[match.group(2).split(".")[0]] += int(match.group(1)) / 1000
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:limit]
    return [{"package": name, "self_ms": ms} for name, ms in ranked]


def component_costs(python: list[str], env: dict[str, str], runs: int) -> list[dict[str, float | str]]:
    """CPU ms to import each heavy dependency alone in a fresh process (median of `runs`): which one to cut.
    They overlap (powertools and count_api import botocore), so they do not add up to the handler's figure."""
    rows = []
    for module in COMPONENTS:
        probe = f"import time, sys; c = time.process_time(); import {module}; sys.stdout.write(str((time.process_time() - c) * 1000))"
        values = []
        for _ in range(runs):
            result = subprocess.run([*python, "-c", probe], env=env, capture_output=True, text=True, check=False, cwd="/")
            if result.returncode != 0:
                break
            values.append(float(result.stdout))
        if values:
            rows.append({"module": module, "import_cpu_ms": statistics.median(values)})
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Time the Lambda handler's import in fresh processes and size its asset.")
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per case (the median is reported)")
    parser.add_argument("--build", action="store_true", help="build the asset with infra/lambda_asset.py when none exists")
    parser.add_argument("--quick", action="store_true", help="3 runs per case")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.quick:
        common.quick_results()
    if args.runs < 1:
        print("error: --runs must be at least 1", file=sys.stderr)
        return 2
    runs = 3 if args.quick else args.runs
    asset, how = find_asset(args.build)
    print(f"asset: {asset or '-'} ({how})")
    rows: list[dict] = []
    extra: dict = {"asset_found": how, "target_import_ms": TARGET_IMPORT_MS, "target_size_mb": TARGET_SIZE_MB}
    scratch = common.SCRATCH_DIR / "cold_start"
    if asset is None:
        print("error: no asset: run `make synth` or pass --build", file=sys.stderr)
        return 1
    try:
        from infra import lambda_asset

        python = lambda_asset.target_python()
        runtime = lambda_asset.runtime_provided_packages()
        total, per_entry = folder_size(asset)
        extra["asset_size_mb"] = total / 2**20
        extra["asset_size_by_entry_mb"] = {k: round(v / 2**20, 3) for k, v in sorted(per_entry.items(), key=lambda kv: -kv[1])}
        extra["python"] = subprocess.run([*python, "-VV"], capture_output=True, text=True, check=False).stdout.strip()
        print(f"asset size unzipped: {total / 2**20:.1f} MB (target <= {TARGET_SIZE_MB:.0f} MB); interpreter: {extra['python']}")
        shipped = lambda_env(os.pathsep.join([str(asset), str(runtime)]))
        no_pyc = lambda_env(os.pathsep.join([str(copy_without_bytecode(asset, scratch / "no-pyc")), str(runtime)]))
        xray = lambda_env(os.pathsep.join([str(asset), str(runtime), str(xray_packages(scratch / "xray"))]))
        cases = [
            ("asset as shipped (python3.13, .pyc)", shipped, ""),
            ("as shipped + count_api.endpoint (botocore: the first endpoint call)", shipped, "import count_api.endpoint; "),
            ("asset without .pyc", no_pyc, ""),
            ("as shipped + X-Ray SDK import (the old Tracer)", xray, "import aws_xray_sdk.core; "),
        ]
        for label, env, pre in cases:
            rows.append({"case": label, "runs": runs, **time_imports(python, env, runs, pre)})
        extra["top_imports"] = top_imports(python, shipped)
        extra["components"] = component_costs(python, xray, 3)
    except (common.BenchError, lambda_asset.AssetBuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    common.print_table(rows, ["case", "runs", "import_ms", "import_cpu_ms", "process_ms"])
    common.print_table(extra["top_imports"], ["package", "self_ms"])
    common.print_table(extra["components"], ["module", "import_cpu_ms"])
    path = common.write_result("cold_start", common.command_line("bench.cold_start", argv), rows, extra)
    print(f"wrote {common.display(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
