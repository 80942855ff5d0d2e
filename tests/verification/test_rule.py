"""verification.py: the one rule (match / mismatch / review), out-of-class counts, bad expected counts."""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import pytest
import verification

PROBS = {"1": 0.05, "2": 0.6, "3": 0.2, "4": 0.1, "5": 0.05}


def test_p_match_is_the_probability_of_the_expected_count() -> None:
    for count, p in PROBS.items():
        assert verification.verify(PROBS, int(count))["p_match"] == pytest.approx(p)
    assert verification.verify({1: 0.3, 2: 0.7}, 2)["p_match"] == pytest.approx(0.7)  # int keys too


@pytest.mark.parametrize(
    ("expected", "verdict"),
    [(2, "match"), (3, "review"), (4, "review"), (1, "mismatch"), (5, "mismatch")],
)
def test_verdicts_at_explicit_thresholds(expected: int, verdict: str) -> None:
    result = verification.verify(PROBS, expected, match_threshold=0.5, mismatch_threshold=0.08)
    assert result["verdict"] == verdict
    assert result["expected_count"] == expected
    assert str(result["p_match"])[:4] in result["reason"] or f"{result['p_match']:.3f}" in result["reason"]


def test_thresholds_are_inclusive() -> None:
    assert verification.verify({"1": 0.5, "2": 0.5}, 1, match_threshold=0.5, mismatch_threshold=0.1)["verdict"] == "match"
    assert verification.verify({"1": 0.1, "2": 0.9}, 1, match_threshold=0.5, mismatch_threshold=0.1)["verdict"] == "mismatch"


def test_defaults_are_used_and_ordered() -> None:
    assert 0 <= verification.DEFAULT_MISMATCH_THRESHOLD < verification.DEFAULT_MATCH_THRESHOLD <= 1
    just_above = {"1": verification.DEFAULT_MATCH_THRESHOLD, "2": 1 - verification.DEFAULT_MATCH_THRESHOLD}
    assert verification.verify(just_above, 1)["verdict"] == "match"
    low = {"1": verification.DEFAULT_MISMATCH_THRESHOLD / 2, "2": 1 - verification.DEFAULT_MISMATCH_THRESHOLD / 2}
    assert verification.verify(low, 1)["verdict"] == "mismatch"


@pytest.mark.parametrize("expected", [0, 6, 40])
def test_count_outside_the_classes_is_review_with_a_reason_never_a_guess(expected: int) -> None:
    result = verification.verify(PROBS, expected)
    assert result["verdict"] == "review"
    assert result["p_match"] is None
    assert "cannot see" in result["reason"] and str(expected) in result["reason"] and "1 to 5" in result["reason"]


@pytest.mark.parametrize(
    "value", [-1, 2.5, "2.5", "abc", "", " ", True, False, None, "1e3", math.nan, math.inf, [], {}, "+-3", "٣", 10**7, "9" * 40]
)
def test_bad_expected_counts_raise_a_typed_error_naming_the_field(value: object) -> None:
    with pytest.raises(verification.VerificationError) as caught:
        verification.verify(PROBS, value, field="images[2].expected_count")
    assert caught.value.field == "images[2].expected_count"
    assert "images[2].expected_count" in str(caught.value)
    assert caught.value.code == "invalid_expected_count"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("value", "parsed"), [(3, 3), (3.0, 3), ("3", 3), (" 4 ", 4), ("+2", 2), (0, 0), ("007", 7)])
def test_whole_numbers_in_any_form_are_accepted(value: object, parsed: int) -> None:
    assert verification.parse_expected_count(value) == parsed


@pytest.mark.parametrize(
    ("match", "mismatch", "field"), [(0.5, 0.5, "mismatch_threshold"), (1.2, 0.1, "match_threshold"), (0.5, -0.1, "mismatch_threshold")]
)
def test_bad_thresholds_name_the_threshold(match: float, mismatch: float, field: str) -> None:
    with pytest.raises(verification.VerificationError) as caught:
        verification.verify(PROBS, 2, match_threshold=match, mismatch_threshold=mismatch)
    assert caught.value.field == field


def test_module_is_standard_library_only_so_the_lambda_asset_can_copy_it() -> None:
    tree = ast.parse(Path(verification.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported, "found no imports: the check parsed the wrong file"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported - set(sys.stdlib_module_names)
