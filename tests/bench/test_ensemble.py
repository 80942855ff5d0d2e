"""bench.ensemble's scoring on made-up probabilities (what is real: the verification rule and AUROC it reuses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import verification

from bench import ensemble, verification_quality

CLASSES = [1, 2, 3, 4, 5]


def members(n: int, photos: int = 200) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, len(CLASSES), photos)
    arrays = {f"m{i}": rng.dirichlet(np.ones(len(CLASSES)), photos).astype(np.float32) for i in range(n)}
    return {**arrays, "_targets": targets}, targets


def test_an_ensemble_is_the_mean_of_its_first_k_members() -> None:
    arrays, targets = members(3)
    rows = ensemble.score_groups(arrays, {"g": ["m2", "m0", "m1"]}, CLASSES)
    assert [r["members"] for r in rows if "group" not in r] == [["m0"], ["m1"], ["m2"]]
    k2 = next(r for r in rows if r.get("k") == 2)
    assert k2["members"] == ["m2", "m0"]
    mean = (arrays["m2"] + arrays["m0"]) / 2
    assert k2["accuracy"] == pytest.approx(float(np.mean(mean.argmax(axis=1) == targets)))
    assert [r["k"] for r in rows if "group" in r] == [2, 3]


def test_verification_auroc_is_the_benchmarks_on_the_served_rule() -> None:
    arrays, targets = members(1)
    probabilities = arrays["m0"]
    # The verification benchmark's own path: the rule the API applies, on rounded probability tables.
    records, wrong, _ = verification_quality.corrupt_records([CLASSES[t] for t in targets], CLASSES, verification_quality.RECORDS_SEED)
    p_match = [
        verification.verify({str(c): round(float(p), 6) for c, p in zip(CLASSES, row, strict=True)}, r)["p_match"]
        for row, r in zip(probabilities, records, strict=True)
    ]
    reference = verification_quality.auroc(1.0 - np.array(p_match), wrong)
    assert ensemble.score(probabilities, targets, CLASSES)["verification_auroc"] == pytest.approx(reference, abs=1e-3)


def test_bad_groups_and_missing_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ensemble.common.BenchError, match="unknown member.*m9"):
        ensemble.parse_groups(["g=m0,m9"], {"m0", "m1"})
    with pytest.raises(ensemble.common.BenchError, match="expected NAME=MEMBER"):
        ensemble.parse_groups(["m0,m1"], {"m0", "m1"})
    assert ensemble.main(["score", "--probabilities", str(tmp_path / "none.npz")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_several_dumps_score_as_one_when_they_hold_the_same_photos(tmp_path: Path) -> None:
    arrays, _ = members(2)
    ids = np.array([f"id{i}" for i in range(len(arrays["_targets"]))])
    np.savez(tmp_path / "a.npz", m0=arrays["m0"], _targets=arrays["_targets"], _ids=ids)
    np.savez(tmp_path / "b.npz", **{"refit-m1": arrays["m1"]}, _targets=arrays["_targets"], _ids=ids)
    merged = ensemble.load_dumps([tmp_path / "a.npz", tmp_path / "b.npz"])
    assert sorted(merged) == ["_ids", "_targets", "m0", "refit-m1"]
    np.savez(tmp_path / "c.npz", m0=arrays["m1"], _targets=arrays["_targets"], _ids=ids)
    with pytest.raises(ensemble.common.BenchError, match="member m0 is in another dump too"):
        ensemble.load_dumps([tmp_path / "a.npz", tmp_path / "c.npz"])
    np.savez(tmp_path / "d.npz", m2=arrays["m1"], _targets=arrays["_targets"], _ids=ids[::-1])
    with pytest.raises(ensemble.common.BenchError, match="ids differ"):
        ensemble.load_dumps([tmp_path / "a.npz", tmp_path / "d.npz"])
