"""The import layout (docs/contracts.md): the project installs itself, so no part edits sys.path, loads a project
file by path, or imports a layer above it. Checked on the source text and on the ASTs of every project module."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Product code, then its callers: a part may import the parts before it in this order, never the ones after.
LAYERS = {
    "training_code": {"training_code"},
    "lambda": {"training_code", "count_api"},
    "infra": {"training_code", "count_api", "infra"},
    "local_mode": {"training_code", "count_api", "infra", "local_mode"},
    "bench": {"training_code", "count_api", "infra", "local_mode", "bench"},
}
SKIPPED = {".venv", "cdk.out", "node_modules", ".cache", "runs", ".vendor", ".git", ".gpu"}


def project_files() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if not SKIPPED & set(p.relative_to(ROOT).parts)]


def imported_top_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_pyproject_installs_every_training_code_module():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(setuptools["py-modules"]) == sorted(p.stem for p in (ROOT / "training_code").glob("*.py"))


def test_no_file_edits_sys_path_or_loads_project_files_by_path():
    offenders = []
    for path in project_files():
        text = path.read_text()
        for needle in ("sys.path", "spec_from_file_location", "__import__(", "importlib.import_module("):
            if needle in text and path != Path(__file__):
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_parts_import_only_the_layers_below_them(folder):
    training_modules = {p.stem for p in (ROOT / "training_code").glob("*.py")}
    layer_of = {
        **dict.fromkeys(training_modules, "training_code"),
        **{name: name for name in ("count_api", "infra", "local_mode", "bench", "tests")},
    }
    wrong = {}
    for path in (ROOT / folder).rglob("*.py"):
        if SKIPPED & set(path.relative_to(ROOT).parts):
            continue
        above = sorted(name for name in imported_top_names(path) & set(layer_of) if layer_of[name] not in LAYERS[folder])
        if above:
            wrong[str(path.relative_to(ROOT))] = above
    assert wrong == {}
