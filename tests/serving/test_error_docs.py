"""Every error code the API can return, with its status, is documented in docs/serving.md and docs/openapi.yaml.

The codes are collected from the code itself (not from a list kept by hand): every ApiError subclass or
ImageError constructed with a literal code in lambda/preprocess/ and training_code/preprocessing_spec.py
(status from the class, or count_api.errors.IMAGE_ERROR_STATUS), every `_error(status, "code", ...)` in the
handler, the local API's own refusals (local_mode.api_server.GATEWAY_ERRORS) and the gateway responses the
stack configures (infra/serving_stack.py GATEWAY_ERRORS, read from its source without synthesizing).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from local_mode.api_server import GATEWAY_ERRORS

ROOT = Path(__file__).resolve().parents[2]
LAMBDA = ROOT / "lambda" / "preprocess"
SERVING_MD = (ROOT / "docs" / "serving.md").read_text()
OPENAPI = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())


def _literal_codes(path: Path) -> list[tuple[str, str, int | None]]:
    """(constructor or function name, code, literal status or None) for each call with a literal code."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr if isinstance(node.func, ast.Attribute) else ""
        args = node.args
        if name == "_error" and len(args) >= 2 and isinstance(args[1], ast.Constant) and isinstance(args[0], ast.Constant):
            found.append((name, args[1].value, args[0].value))
        elif args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str) and re.fullmatch(r"[a-z_]+", args[0].value):
            found.append((name, args[0].value, None))
    return found


def codes_in_code() -> dict[str, set[int]]:
    import count_api.errors as errors

    classes = {name: cls.status for name, cls in vars(errors).items() if isinstance(cls, type) and issubclass(cls, errors.ApiError)}
    codes: dict[str, set[int]] = {}
    sources = [*LAMBDA.rglob("*.py"), ROOT / "training_code" / "preprocessing_spec.py"]
    for path in sources:
        for name, code, status in _literal_codes(path):
            if name == "_error":
                codes.setdefault(code, set()).add(status)
            elif name in classes:
                codes.setdefault(code, set()).add(classes[name])
            elif name in ("ImageError", "ImageProblem"):
                codes.setdefault(code, set()).add(errors.IMAGE_ERROR_STATUS.get(code, 400))
    for code, status in GATEWAY_ERRORS.items():
        codes.setdefault(code, set()).add(status)
    stack = ast.parse((ROOT / "infra" / "serving_stack.py").read_text())
    for node in ast.walk(stack):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "GATEWAY_ERRORS" for t in node.targets):
            for value in node.value.values:  # type: ignore[attr-defined]
                status, code = value.elts[0].value, value.elts[1].value
                codes.setdefault(code, set()).add(int(status))
    return codes


CODES = codes_in_code()


def test_the_collector_sees_codes_from_every_source() -> None:
    # Would fail if the AST walk missed a source: one code from each.
    assert CODES["sagemaker_unreachable"] == {503}  # count_api/endpoint.py (health)
    assert CODES["method_not_allowed"] >= {405} and CODES["internal_error"] >= {500}  # handler _error(...)
    assert CODES["unsupported_image_format"] == {415}  # preprocessing_spec ImageError via IMAGE_ERROR_STATUS
    assert CODES["length_required"] == {411}  # local API
    assert CODES["quota_exceeded"] == {429}  # the stack's gateway responses
    assert len(CODES) >= 30


def _serving_md_rows() -> list[tuple[set[int], str]]:
    rows = []
    for line in SERVING_MD.splitlines():
        cells = line.split("|")
        if len(cells) > 3 and re.fullmatch(r"\s*\d{3}( / \d{3})*\s*", cells[1]):
            rows.append(({int(s) for s in re.findall(r"\d{3}", cells[1])}, line))
    return rows


@pytest.mark.parametrize("code", sorted(CODES))
def test_code_is_in_the_serving_doc_table_with_its_status(code: str) -> None:
    rows = _serving_md_rows()
    for status in CODES[code]:
        assert any(status in statuses and f"`{code}`" in line for statuses, line in rows), f"{status} {code} is not in docs/serving.md"


def _openapi_descriptions() -> dict[int, str]:
    described: dict[int, str] = {}
    for operations in OPENAPI["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                while "$ref" in response:
                    response = OPENAPI["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                described[int(status)] = described.get(int(status), "") + " " + response["description"]
    return described


@pytest.mark.parametrize("code", sorted(CODES))
def test_code_is_in_the_openapi_document_under_its_status(code: str) -> None:
    described = _openapi_descriptions()
    for status in CODES[code]:
        assert re.search(rf"\b{code}\b", described.get(status, "")), f"{status} {code} is not described in docs/openapi.yaml"


def test_the_docs_list_no_code_the_api_cannot_return() -> None:
    documented = set()
    for _, line in _serving_md_rows():
        documented |= set(re.findall(r"`([a-z_]+)`", line.split("|")[2]))
    assert documented - set(CODES) == set()
