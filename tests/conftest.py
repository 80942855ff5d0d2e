"""Shared pytest set-up: quiet, offline CDK/jsii; helpers for the project's cdk.json context."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_ABID = ROOT.parent / "shared" / "abid"

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_RUNTIME_PACKAGE_CACHE_ROOT", str(ROOT / ".cache" / "jsii"))
os.environ.setdefault("CDK_HOME", str(ROOT / ".cache" / "cdk"))
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def default_context() -> dict:
    """cdk.json's context: the defaults a user deploys with."""
    return json.loads((ROOT / "cdk.json").read_text())["context"]


@pytest.fixture(scope="session")
def abid_dir() -> Path:
    """The real photos in ../shared/abid; tests using them skip when a clone does not have it."""
    if not (SHARED_ABID / "bin-images").is_dir():
        pytest.skip("../shared/abid is not present (real bin photos): skipping")
    return SHARED_ABID
