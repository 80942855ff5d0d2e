"""The Lambda asset, built without Docker: vendored for python3.13 / x86_64 and compiled to bytecode by that
Python, handler and spec copy inside, under the cold-start size budget, cached by requirements hash; and the
exact asset imported and run on a real photo by the runtime's own Python version on this machine.
Vendoring needs PyPI (or the cache) once, the runtime's Python Debian's registry once."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from infra import lambda_asset
from local_mode.scripted_model import ScriptedEndpoint
from tests.serving.helpers import handler_environment


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
    assert (asset / "verification.py").read_bytes() == lambda_asset.VERIFICATION_FILE.read_bytes()
    assert (asset / "count_api" / "page.html").read_bytes() == (lambda_asset.LAMBDA_SOURCE / "count_api" / "page.html").read_bytes()
    for package in ("aws_lambda_powertools", "PIL"):
        assert (asset / package).is_dir(), package
    assert not (asset / "boto3").exists() and not (asset / "botocore").exists()  # the runtime provides them
    assert not (asset / "aws_xray_sdk").exists() and not (asset / "wrapt").exists()  # Lambda active tracing, no SDK


def test_pillow_is_built_for_the_lambda_platform(asset: Path) -> None:
    extensions = sorted(p.name for p in (asset / "PIL").glob("*.so"))
    assert f"_imaging.{lambda_asset.SO_SUFFIX}" in extensions
    assert all(name.endswith("cpython-313-x86_64-linux-gnu.so") for name in extensions), extensions
    assert not (asset / "PIL" / f"_avif.{lambda_asset.SO_SUFFIX}").exists()  # pruned


def test_every_module_ships_bytecode_for_the_runtime_python(asset: Path) -> None:
    sources = [p for p in asset.rglob("*.py")]
    missing = [p for p in sources if not (p.parent / "__pycache__" / f"{p.stem}.cpython-313.pyc").is_file()]
    assert sources and not missing, missing[:5]
    assert not [p for p in asset.rglob("*.pyc") if ".cpython-313." not in p.name]  # no other Python's bytecode
    # unchecked-hash .pyc (PEP 552 flags = 0b01): used whatever mtimes the deployment zip gives the sources
    header = (asset / "__pycache__" / "handler.cpython-313.pyc").read_bytes()[4:8]
    assert int.from_bytes(header, "little") == 0b01


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


def _real_photo() -> bytes:
    from tests.conftest import SHARED_ABID

    with (SHARED_ABID / "index.csv").open() as handle:
        row = next(r for r in csv.DictReader(handle) if int(r["width"]) > 448)
    return (SHARED_ABID / "bin-images" / f"{row['image_id']}.jpg").read_bytes()


PROBE = r"""
import base64, json, platform, sys
import handler, PIL
event = json.loads(sys.stdin.read())
class Context:
    aws_request_id = "asset-test"; function_name = "count"; function_version = "$LATEST"; memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:1:function:count"
    def get_remaining_time_in_millis(self): return 20000
reply = handler.lambda_handler(event, Context())
print(json.dumps({"reply": reply, "python": list(sys.version_info[:2]), "machine": platform.machine(),
                  "handler": handler.__file__, "pil": PIL.__file__, "cached": handler.__cached__,
                  "xray": "aws_xray_sdk" in sys.modules}))
"""


def test_the_exact_asset_counts_a_real_photo_on_the_runtime_python(
    asset: Path, abid_dir: Path, scripted_endpoint: ScriptedEndpoint
) -> None:
    """python3.13 on x86_64, the runtime's version and architecture, imports the asset's own files (Pillow's
    compiled extensions included, nothing from this venv) and answers a real bin photo through the emulated
    endpoint. Only the runtime-provided botocore comes from elsewhere (pinned, as the runtime ships it)."""
    try:
        python = lambda_asset.target_python()
        runtime = lambda_asset.runtime_provided_packages()
    except lambda_asset.AssetBuildError as error:
        pytest.skip(f"the runtime's python3.13 is not obtainable here: {error}")
    from local_mode.api_server import build_event

    scripted_endpoint.mode = "ok"
    # With an expected count: the asset's own copy of verification.py answers it.
    event = build_event("POST", "/v1/count?expected_count=2", {"x-api-key": "k", "content-type": "image/jpeg"}, _real_photo(), "127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_", "POWERTOOLS_", "LD_"))}
    env.update(handler_environment(scripted_endpoint), PYTHONPATH=f"{asset}{os.pathsep}{runtime}", PYTHONDONTWRITEBYTECODE="1")
    env.update(AWS_LAMBDA_FUNCTION_NAME="count", AWS_REGION="us-east-1")
    result = subprocess.run([*python, "-c", PROBE], input=json.dumps(event), env=env, capture_output=True, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["python"] == [3, 13] and report["machine"] == "x86_64"
    assert report["handler"] == str(asset / "handler.py") and report["pil"].startswith(str(asset))
    assert report["cached"].endswith("handler.cpython-313.pyc") and report["xray"] is False
    reply = report["reply"]
    assert reply["statusCode"] == 200, reply
    body = json.loads(reply["body"])
    assert body["count"] in (1, 2, 3, 4, 5) and body["model_version"] == "fake-7"
    assert body["verification"]["expected_count"] == 2 and body["verification"]["verdict"] in ("match", "mismatch", "review")
    assert scripted_endpoint.calls[-1] == ("application/x-npy", (1, 224, 224, 3))
