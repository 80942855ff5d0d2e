"""Build the count function's asset without Docker: the handler, a copy of the preprocessing spec and
its dependencies vendored for the Lambda runtime (python3.12, arm64) with pip's --platform wheels.

Reproducible and cached: the vendored folder is keyed by a hash of lambda/preprocess/requirements.txt and
the target platform, built once under .cache/ (ignored) and reused; the asset folder is keyed by that
plus the source files, so CDK's asset hash only changes when something in it changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_SOURCE = ROOT / "lambda" / "preprocess"
SPEC_FILE = ROOT / "training_code" / "preprocessing_spec.py"
REQUIREMENTS = LAMBDA_SOURCE / "requirements.txt"
CACHE = ROOT / ".cache" / "lambda"

PYTHON_VERSION = "3.12"
PIP_PLATFORM = "manylinux2014_aarch64"  # Graviton: ~20 % cheaper per GB-second than x86_64
SO_SUFFIX = "cpython-312-aarch64-linux-gnu.so"
# Pillow plugins the handler never uses (fonts, AVIF, WebP, Tk) and the libraries only they load:
# 9 MB of the 32 MB the wheels unpack to. _imaging's own libraries (jpeg, png via zlib, tiff...) stay.
PRUNE = (
    f"PIL/_avif.{SO_SUFFIX}",
    f"PIL/_imagingft.{SO_SUFFIX}",
    f"PIL/_imagingtk.{SO_SUFFIX}",
    f"PIL/_webp.{SO_SUFFIX}",
    "pillow.libs/libavif-*",
    "pillow.libs/libfreetype-*",
    "pillow.libs/libharfbuzz-*",
    "pillow.libs/libbrotli*",
    "pillow.libs/libpng16-*",
    "pillow.libs/libwebp*",
    "pillow.libs/libsharpyuv-*",
    "wrapt-stubs",
)
MAX_UNZIPPED_BYTES = 30 * 1024 * 1024  # cold-start budget for the asset


class AssetBuildError(RuntimeError):
    """Vendoring failed; the message says what to check."""


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _source_files() -> list[Path]:
    return sorted(p for p in LAMBDA_SOURCE.rglob("*.py") if "__pycache__" not in p.parts and ".vendor" not in p.parts)


def vendor_dependencies(requirements: Path = REQUIREMENTS, cache: Path = CACHE) -> Path:
    """The folder of vendored packages for the Lambda platform, built once per requirements hash."""
    key = _digest(requirements.read_bytes(), PIP_PLATFORM.encode(), PYTHON_VERSION.encode(), "\n".join(PRUNE).encode())
    target = cache / f"vendor-{key}"
    if (target / ".complete").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="tmp-vendor-", dir=cache))
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile", "--no-deps",
        "--only-binary=:all:", "--platform", PIP_PLATFORM, "--python-version", PYTHON_VERSION, "--implementation", "cp",
        "--target", str(staging), "-r", str(requirements),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise AssetBuildError(
            f"pip could not vendor {requirements} for {PIP_PLATFORM} / Python {PYTHON_VERSION} (no network to PyPI?):\n"
            f"{result.stderr.strip()[-2000:]}\nOnce it succeeds, the result is cached in {cache} and reused offline."
        )
    for pattern in PRUNE:
        for path in staging.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (staging / ".complete").write_text(key)
    try:
        os.replace(staging, target)  # atomic: a parallel build either wins or finds ours
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_asset(cache: Path = CACHE) -> Path:
    """The asset folder: vendored packages + handler + count_api + preprocessing_spec.py."""
    vendor = vendor_dependencies(cache=cache)
    sources = _source_files()
    key = _digest(
        vendor.name.encode(), SPEC_FILE.read_bytes(), *(str(p.relative_to(LAMBDA_SOURCE)).encode() + p.read_bytes() for p in sources)
    )
    target = cache / f"asset-{key}"
    if (target / ".complete").is_file():
        return target
    staging = Path(tempfile.mkdtemp(prefix="tmp-asset-", dir=cache))
    shutil.copytree(vendor, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete"))
    for path in sources:
        destination = staging / path.relative_to(LAMBDA_SOURCE)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
    shutil.copy2(SPEC_FILE, staging / SPEC_FILE.name)
    size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
    if size > MAX_UNZIPPED_BYTES:
        shutil.rmtree(staging, ignore_errors=True)
        raise AssetBuildError(
            f"the Lambda asset is {size / 2**20:.1f} MB unzipped, above the {MAX_UNZIPPED_BYTES / 2**20:.0f} MB cold-start budget"
        )
    (staging / ".complete").write_text(key)
    try:
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_stale(cache, keep=target)
    return target


def _remove_stale(cache: Path, keep: Path, older_than_s: float = 3600) -> None:
    """Drop asset folders of earlier source versions (an hour old: a parallel synth may still read a newer one)."""
    now = time.time()
    for folder in cache.glob("asset-*"):
        if folder != keep and now - folder.stat().st_mtime > older_than_s:
            shutil.rmtree(folder, ignore_errors=True)
