"""Build the count function's asset without Docker: the handler, a copy of the preprocessing spec and
its dependencies vendored for the Lambda runtime (python3.13, x86_64) with pip's --platform wheels, and
every module compiled to bytecode by that same Python version (docs/serving.md, "Packaging").

Why python3.13 on x86_64: /var/task is read-only, so an asset without .pyc recompiles every module at each
cold start (~0.2 s here); bytecode must be compiled by the runtime's own minor version, and this machine can
run exactly that interpreter natively from Debian's packages (trixie's python3.13, fetched once into
.cache/python3.13 by target_python()). No Debian release ships 3.12, the earlier runtime, and 3.11 is past
its Lambda deprecation date. The same interpreter runs the exact asset in tests/serving/test_lambda_asset.py.

Reproducible and cached: the vendored folder is keyed by a hash of lambda/preprocess/requirements.txt and
the target platform, built once under .cache/ (ignored) and reused; the asset folder is keyed by that
plus the source files, so CDK's asset hash only changes when something in it changes.
"""

from __future__ import annotations

import contextlib
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
# The one verification rule (standard library only), shared with the bulk report like the spec.
VERIFICATION_FILE = ROOT / "training_code" / "verification.py"
SHARED_FILES = (SPEC_FILE, VERIFICATION_FILE)
# What the function's own folder contributes: its modules and the try-it page (count_api/page.html).
SOURCE_SUFFIXES = (".py", ".html")
REQUIREMENTS = LAMBDA_SOURCE / "requirements.txt"
CACHE = ROOT / ".cache" / "lambda"

PYTHON_VERSION = "3.13"  # infra/serving_stack.py: lambda_.Runtime.PYTHON_3_13
PIP_PLATFORM = "manylinux2014_x86_64"  # infra/serving_stack.py: lambda_.Architecture.X86_64
SO_SUFFIX = "cpython-313-x86_64-linux-gnu.so"
# The runtime's Python from Debian (bytecode compiler and test interpreter), unpacked without installing.
TARGET_PYTHON_DIR = ROOT / ".cache" / "python3.13"
DEBIAN_SUITE = "trixie"
DEBIAN_PACKAGES = (
    "python3.13-minimal", "libpython3.13-minimal", "libpython3.13-stdlib", "libc6", "libmpdec4", "libexpat1", "libffi8",
    "libssl3t64", "zlib1g", "libbz2-1.0", "liblzma5", "libzstd1", "libuuid1", "libsqlite3-0", "libcrypt1",
)  # fmt: skip
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


def _sysroot_command(root: Path) -> list[str]:
    libs = os.pathsep.join(str(root / d) for d in ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"))
    return [str(root / "usr/lib64/ld-linux-x86-64.so.2"), "--library-path", libs, str(root / "usr/bin/python3.13")]


def target_python(fetch: bool = True) -> list[str]:
    """The command that runs the Lambda runtime's Python (3.13) on this machine.

    LAMBDA_PYTHON (a path), else python3.13 on PATH, else Debian trixie's python3.13 unpacked under
    .cache/python3.13 with its own loader and libraries (fetched once with apt-get download: Debian's
    registry only, no root needed, the system's apt configuration untouched).
    """
    if os.environ.get("LAMBDA_PYTHON"):
        return [os.environ["LAMBDA_PYTHON"]]
    if shutil.which("python3.13") and _runs_313([str(shutil.which("python3.13"))]):  # not a pyenv shim without 3.13
        return [str(shutil.which("python3.13"))]
    if (TARGET_PYTHON_DIR / ".complete").is_file():
        return _sysroot_command(TARGET_PYTHON_DIR)
    if not fetch:
        raise AssetBuildError("python3.13 is not available here: set LAMBDA_PYTHON, or let target_python() fetch Debian's once")
    return _sysroot_command(fetch_debian_python())


def _runs_313(command: list[str]) -> bool:
    probe = subprocess.run([*command, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=False)
    return probe.stdout.strip() == "(3, 13)"


def debian_mirror(sources_dir: Path = Path("/etc/apt/sources.list.d"), sources_list: Path = Path("/etc/apt/sources.list")) -> str:
    """The Debian archive this machine's apt already uses (its first `URIs:` / `deb` line for the main archive)."""
    candidates: list[str] = []
    for path in sorted(sources_dir.glob("*.sources")):
        candidates += [line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith("URIs:")]
    if sources_list.is_file():
        candidates += [
            line.split()[1] for line in sources_list.read_text().splitlines() if line.startswith("deb ") and len(line.split()) > 2
        ]
    for uri in (u for entry in candidates for u in entry.split()):
        if uri.rstrip("/").endswith("/debian"):  # the main archive, not -security or a third-party repository
            return uri
    raise AssetBuildError("no Debian archive found in apt's sources: set LAMBDA_PYTHON to a python3.13 instead")


def fetch_debian_python(target: Path = TARGET_PYTHON_DIR) -> Path:
    """Download Debian trixie's python3.13 packages and unpack them (not install) into `target`."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise AssetBuildError("building the Lambda asset needs python3.13 (set LAMBDA_PYTHON) or apt-get + dpkg-deb to fetch Debian's")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tmp-python-", dir=target.parent))
    try:
        for folder in ("parts", "lists/partial", "cache/archives/partial", "debs", "root"):
            (work / folder).mkdir(parents=True)
        (work / "parts" / f"{DEBIAN_SUITE}.sources").write_text(
            f"Types: deb\nURIs: {debian_mirror()}\nSuites: {DEBIAN_SUITE}\nComponents: main\n"
            "Architectures: amd64\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        options = [
            "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={work / 'parts'}",
            "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}", "-o", "APT::Architectures::=amd64",
        ]  # fmt: skip
        for command in (["apt-get", "-qq", *options, "update"], ["apt-get", "-qq", *options, "download", *DEBIAN_PACKAGES]):
            result = subprocess.run(command, cwd=work / "debs", capture_output=True, text=True, check=False, timeout=600)
            if result.returncode != 0:
                raise AssetBuildError(
                    f"fetching Debian's python3.13 failed ({' '.join(command[:2])} ... {command[-1]}):\n{result.stderr[-1500:]}"
                )
        for deb in sorted((work / "debs").glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True, capture_output=True)
        probe = subprocess.run(
            [*_sysroot_command(work / "root"), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
        )
        if probe.stdout.strip() != "(3, 13)":
            raise AssetBuildError(f"the fetched python3.13 does not run here: {probe.stderr[-800:]}")
        # Debian compiles the standard library at install time (postinst), which unpacking skips: as on Lambda,
        # whose runtime ships it compiled, the stdlib must not be recompiled at each start.
        subprocess.run([*_sysroot_command(work / "root"), "-m", "compileall", "-q", str(work / "root/usr/lib/python3.13")], check=False)
        (work / "root" / ".complete").write_text(DEBIAN_SUITE)
        with contextlib.suppress(OSError):  # a parallel fetch may have won
            os.replace(work / "root", target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _source_files() -> list[Path]:
    return sorted(
        p
        for p in LAMBDA_SOURCE.rglob("*")
        if p.is_file() and p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts and ".vendor" not in p.parts
    )


def vendor_dependencies(requirements: Path = REQUIREMENTS, cache: Path = CACHE) -> Path:
    """The folder of vendored packages for the Lambda platform, built once per requirements hash."""
    key = _digest(requirements.read_bytes(), PIP_PLATFORM.encode(), PYTHON_VERSION.encode(), "\n".join(PRUNE).encode())
    target = cache / f"vendor-{key}"
    if (target / ".complete").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="tmp-vendor-", dir=cache))
    result = _pip_install_for_runtime(staging, ["-r", str(requirements)])
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise AssetBuildError(
            f"pip could not vendor {requirements} for {PIP_PLATFORM} / Python {PYTHON_VERSION} (no network to PyPI?):\n"
            f"{result.stderr.strip()[-2000:]}\nOnce it succeeds, the result is cached in {cache} and reused offline."
        )
    for pattern in PRUNE:
        for path in staging.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return _publish(staging, target, key)


def _pip_install_for_runtime(staging: Path, requirements: list[str]) -> subprocess.CompletedProcess[str]:
    """pip install of wheels for the Lambda runtime's platform and Python into `staging` (no deps, no bytecode)."""
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile", "--no-deps",
        "--only-binary=:all:", "--platform", PIP_PLATFORM, "--python-version", PYTHON_VERSION, "--implementation", "cp",
        "--target", str(staging), *requirements,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _publish(staging: Path, target: Path, marker: str) -> Path:
    """Mark a finished staging folder complete and move it to `target` atomically (a parallel build either wins or finds ours)."""
    (staging / ".complete").write_text(marker)
    try:
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_asset(cache: Path = CACHE) -> Path:
    """The asset folder: vendored packages + handler + count_api (with page.html) + preprocessing_spec.py + verification.py."""
    vendor = vendor_dependencies(cache=cache)
    sources = _source_files()
    key = _digest(
        vendor.name.encode(),
        b"bytecode:" + PYTHON_VERSION.encode(),
        *(p.name.encode() + p.read_bytes() for p in SHARED_FILES),
        *(str(p.relative_to(LAMBDA_SOURCE)).encode() + p.read_bytes() for p in sources),
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
    for shared in SHARED_FILES:
        shutil.copy2(shared, staging / shared.name)
    try:
        compile_bytecode(staging)
    except AssetBuildError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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


def compile_bytecode(folder: Path) -> None:
    """Compile every module with the runtime's Python version. unchecked-hash: the .pyc is used as is, whatever
    the mtimes the zip gives the sources (the asset is immutable; timestamp .pyc would be recompiled, unwritably)."""
    command = [*target_python(), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssetBuildError(f"compiling the asset with python{PYTHON_VERSION} failed:\n{(result.stdout + result.stderr)[-2000:]}")


# What the python3.13 runtime provides beside the asset (boto3's botocore and its dependencies), at this
# project's pinned versions: for running the exact asset here (tests, bench/cold_start.py), never shipped.
RUNTIME_PROVIDED = ("botocore", "jmespath", "python-dateutil", "urllib3", "six")


def runtime_provided_packages(cache: Path = CACHE) -> Path:
    """A folder with the runtime-provided packages for python3.13, compiled like the runtime's own (cached)."""
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in RUNTIME_PROVIDED]
    target = cache / f"runtime-{_digest(*(pin.encode() for pin in pins), PYTHON_VERSION.encode())}"
    if (target / ".complete").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="tmp-runtime-", dir=cache))
    result = _pip_install_for_runtime(staging, pins)
    try:
        if result.returncode != 0:
            raise AssetBuildError(f"pip could not fetch {pins} for Python {PYTHON_VERSION}:\n{result.stderr.strip()[-1500:]}")
        compile_bytecode(staging)
    except AssetBuildError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _publish(staging, target, "ok")


def _remove_stale(cache: Path, keep: Path, older_than_s: float = 3600) -> None:
    """Drop asset folders of earlier source versions (an hour old: a parallel synth may still read a newer one)."""
    now = time.time()
    for folder in cache.glob("asset-*"):
        if folder != keep and now - folder.stat().st_mtime > older_than_s:
            shutil.rmtree(folder, ignore_errors=True)
