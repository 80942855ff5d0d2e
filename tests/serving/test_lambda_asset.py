"""The Lambda asset, built without Docker: vendored for python3.12 / arm64, handler and spec copy inside,
under the cold-start size budget, cached by requirements hash. Vendoring needs PyPI (or the cache) once."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from infra import lambda_asset


@pytest.fixture(scope="module")
def asset() -> Path:
    try:
        return lambda_asset.build_asset()
    except lambda_asset.AssetBuildError as error:  # offline with an empty cache: say so rather than fail obscurely
        pytest.skip(f"cannot vendor the Lambda dependencies here: {error}")


def test_asset_holds_handler_package_and_spec_copy(asset: Path) -> None:
    assert (asset / "handler.py").read_bytes() == (lambda_asset.LAMBDA_SOURCE / "handler.py").read_bytes()
    assert (asset / "count_api" / "endpoint.py").is_file()
    assert (asset / "preprocessing_spec.py").read_bytes() == lambda_asset.SPEC_FILE.read_bytes()
    for package in ("aws_lambda_powertools", "aws_xray_sdk", "wrapt", "PIL"):
        assert (asset / package).is_dir(), package
    assert not (asset / "boto3").exists() and not (asset / "botocore").exists()  # the runtime provides them


def test_pillow_is_built_for_the_lambda_platform(asset: Path) -> None:
    extensions = sorted(p.name for p in (asset / "PIL").glob("*.so"))
    assert f"_imaging.{lambda_asset.SO_SUFFIX}" in extensions
    assert all(name.endswith("cpython-312-aarch64-linux-gnu.so") for name in extensions), extensions
    assert not (asset / "PIL" / f"_avif.{lambda_asset.SO_SUFFIX}").exists()  # pruned
    assert not list(asset.rglob("*.pyc"))  # pip's .pyc would be for this machine's Python, not 3.12


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) is not installed")
def test_pruning_kept_every_library_the_kept_extensions_load(asset: Path) -> None:
    # Each kept PIL extension's DT_NEEDED entries must be in pillow.libs or be system libraries of the runtime.
    bundled = {p.name for p in (asset / "pillow.libs").iterdir()}
    system = re.compile(r"^lib(c|m|z|pthread|dl|rt)\.so\.\d+$|^ld-linux")
    pending = [p for p in (asset / "PIL").glob("*.so")]
    seen: set[str] = set()
    while pending:
        library = pending.pop()
        output = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
        for needed in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", output):
            if system.match(needed):
                continue
            assert needed in bundled, f"{library.name} needs {needed}, which pruning removed"
            if needed not in seen:
                seen.add(needed)
                pending.append(asset / "pillow.libs" / needed)


def test_asset_is_under_the_cold_start_budget(asset: Path) -> None:
    size = sum(p.stat().st_size for p in asset.rglob("*") if p.is_file())
    assert size <= 30 * 1024 * 1024, f"{size / 2**20:.1f} MB"


def test_asset_is_reused_and_requirements_are_pinned(asset: Path) -> None:
    assert lambda_asset.build_asset() == asset  # cached: same inputs, same folder, no pip run
    lines = [line for line in lambda_asset.REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", line) for line in lines), lines
