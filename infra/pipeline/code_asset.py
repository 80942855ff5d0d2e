"""training_code/ as the tar.gz that SageMaker's `sagemaker_submit_directory` expects, content-hashed.

CDK's own directory assets zip the folder; the PyTorch container wants a tar.gz. Building it here
deterministically (sorted entries, fixed mtime/uid/gid/mode, gzip mtime 0, no __pycache__) means the
same code always gives the same bytes, so the asset hash changes only when the code does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

ROOT = Path(__file__).resolve().parents[2]
TRAINING_CODE_DIR = ROOT / "training_code"
BUILD_DIR = ROOT / ".cache" / "pipeline"
_SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_FIXED_MTIME = 0


class CodeAssetError(ValueError):
    """The source folder cannot be packaged (missing, empty)."""


def _members(source: Path) -> list[tuple[str, Path]]:
    if not source.is_dir():
        raise CodeAssetError(f"training code folder {source} does not exist: the pipeline ships it to SageMaker")
    found: list[tuple[str, Path]] = []
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if any(part in _SKIPPED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and not path.name.endswith(_SKIPPED_SUFFIXES):
            found.append((relative.as_posix(), path))
    if not found:
        raise CodeAssetError(f"training code folder {source} has no files to package")
    return sorted(found)


def build_tarball(source: Path = TRAINING_CODE_DIR) -> bytes:
    """The tar.gz bytes: same files and contents -> same bytes, whatever the file times or owners."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in _members(source):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = _FIXED_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    # gzip header: mtime 0 and no file name, so only the content decides the bytes.
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def write_tarball(source: Path = TRAINING_CODE_DIR, out_dir: Path = BUILD_DIR) -> Path:
    """Write the tarball under a content-addressed name in the ignored .cache folder and return its path."""
    data = build_tarball(source)
    digest = hashlib.sha256(data).hexdigest()[:16]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"sourcedir-{digest}.tar.gz"
    if not target.exists() or target.read_bytes() != data:
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target


@dataclass(frozen=True)
class CodeLocation:
    bucket_name: str
    object_key: str
    s3_url: str


class CodeAsset(Construct):
    """Uploads the tarball at deploy time; exposes the asset (for grants) and its S3 URL."""

    def __init__(self, scope: Construct, construct_id: str, *, source: Path = TRAINING_CODE_DIR) -> None:
        super().__init__(scope, construct_id)
        self.tarball = write_tarball(source)
        self.asset = s3_assets.Asset(self, "Tarball", path=str(self.tarball))
        self.location = CodeLocation(self.asset.s3_bucket_name, self.asset.s3_object_key, self.asset.s3_object_url)
