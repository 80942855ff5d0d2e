"""The one verification rule: does a bin hold the N items its inventory record says?

    verify({"1": 0.1, "2": 0.6, ...}, expected_count=2) ->
        {"expected_count": 2, "p_match": 0.6, "verdict": "match", "reason": "..."}

p_match is P(count == expected) read from the model's calibrated per-class probabilities (inference.py's
reply, temperature-scaled). The verdict compares it with two thresholds:

    p_match >= match_threshold     -> "match"
    p_match <= mismatch_threshold  -> "mismatch"
    otherwise                      -> "review"  (a person looks)

An expected count the model has no class for (0 or 6 for a model of counts 1..5) gets "review" with a
reason and p_match None: the model cannot see that count, so it must not guess. An expected count that is
not a whole number >= 0 raises VerificationError naming the field.

Used by the Lambda (the asset copies this file, like preprocessing_spec.py: standard library only), by
the bulk report (verify_report.py) and by the benchmark (bench/verification_quality.py). The default
thresholds come from that benchmark (docs/verification.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

MATCH = "match"
MISMATCH = "mismatch"
REVIEW = "review"
VERDICTS = (MATCH, MISMATCH, REVIEW)

# Defaults (docs/verification.md, "Thresholds"), from bench/verification_quality.py's sweep on prep's test
# split of shared/abid with half the records wrong by 1 or 2: "mismatch" at p_match <= 0.15 is right about
# 70 % of the time (recall ~35 %); "match" at p_match >= 0.45 holds ~24 % wrong records (vs 50 % overall).
DEFAULT_MATCH_THRESHOLD = 0.45
DEFAULT_MISMATCH_THRESHOLD = 0.15
# What a model with test-time flips serves (inference.py reads VIEWS_ENV in model_fn): "served" = as trained
# (model_meta.json "tta"), "one" = the photo alone at its own temperature (single_view_temperature), 4x less compute.
VIEWS_ENV = "INVMON_VIEWS"
VIEWS = ("served", "one")
# Bulk verification (Verify bins' Batch Transform Environment, local_mode.verify) serves one view: on the default
# model 60 photos/s here instead of 10, AUROC 0.685 instead of 0.698 (docs/verification.md, "One view in bulk").
DEFAULT_BULK_VIEWS = "one"
# A record of more items than this is not a bin count (and int('9' * 5000) is slow): refused.
MAX_EXPECTED_COUNT = 1_000_000


class VerificationError(ValueError):
    """A bad input the caller can fix; `field` names it, `code` is machine-readable."""

    def __init__(self, field: str, message: str, code: str = "invalid_expected_count") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.code = code
        self.message = message


def parse_expected_count(value: Any, field: str = "expected_count") -> int:
    """A whole number >= 0 from an int, an integral float (3.0) or a decimal string ("3"); else VerificationError."""
    hint = f"send the record's item count as a whole number from 0 to {MAX_EXPECTED_COUNT:,}"
    if isinstance(value, bool) or value is None:
        raise VerificationError(field, f"{value!r} is not a whole number: {hint}")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?[0-9]{1,12}", text):
            raise VerificationError(field, f"{value[:40]!r} is not a whole number: {hint}")
        number = int(text)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise VerificationError(field, f"{value!r} is not a whole number: {hint}")
        number = int(value)
    else:
        raise VerificationError(field, f"a {type(value).__name__} is not a whole number: {hint}")
    if number < 0:
        raise VerificationError(field, f"{number} is negative: {hint}")
    if number > MAX_EXPECTED_COUNT:
        raise VerificationError(field, f"{number} is too large: {hint}")
    return number


def check_thresholds(match_threshold: float, mismatch_threshold: float) -> None:
    """0 <= mismatch < match <= 1, else VerificationError naming the threshold."""
    for name, value in (("match_threshold", match_threshold), ("mismatch_threshold", mismatch_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise VerificationError(name, f"{value!r} is not a probability from 0 to 1", code="invalid_threshold")
    if not mismatch_threshold < match_threshold:
        raise VerificationError(
            "mismatch_threshold",
            f"{mismatch_threshold} must be below match_threshold {match_threshold} (the band between them is review)",
            code="invalid_threshold",
        )


def _probabilities(probabilities: Mapping[Any, Any]) -> dict[int, float]:
    if not isinstance(probabilities, Mapping) or not probabilities:
        raise ValueError("probabilities must be a non-empty mapping {count: probability} (inference.py's reply)")
    table: dict[int, float] = {}
    for count, p in probabilities.items():
        try:
            table[int(count)] = float(p)
        except (TypeError, ValueError):
            raise ValueError(f"probabilities has an entry {count!r}: {p!r}; expected {{count: probability}}") from None
    return table


def verify(
    probabilities: Mapping[Any, Any],
    expected_count: Any,
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
    mismatch_threshold: float = DEFAULT_MISMATCH_THRESHOLD,
    field: str = "expected_count",
) -> dict[str, Any]:
    """-> {expected_count, p_match, verdict, reason}; VerificationError (naming `field`) for a bad expected count."""
    expected = parse_expected_count(expected_count, field)
    check_thresholds(match_threshold, mismatch_threshold)
    table = _probabilities(probabilities)
    if expected not in table:
        classes = sorted(table)
        return {
            "expected_count": expected,
            "p_match": None,
            "verdict": REVIEW,
            "reason": f"the model counts {classes[0]} to {classes[-1]} items ({', '.join(map(str, classes))}): it cannot see "
            f"whether the bin holds {expected}, so a person must check",
        }
    p_match = min(1.0, max(0.0, table[expected]))
    if p_match >= match_threshold:
        verdict, reason = MATCH, f"p_match {p_match:.3f} >= match threshold {match_threshold}"
    elif p_match <= mismatch_threshold:
        verdict, reason = MISMATCH, f"p_match {p_match:.3f} <= mismatch threshold {mismatch_threshold}"
    else:
        verdict, reason = (
            REVIEW,
            f"p_match {p_match:.3f} is between the mismatch ({mismatch_threshold}) and match ({match_threshold}) thresholds",
        )
    return {"expected_count": expected, "p_match": round(p_match, 6), "verdict": verdict, "reason": reason}
