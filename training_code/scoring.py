"""The one definition of the evaluation metrics and report (evaluation.json, PNGs), for train.py and evaluate.py.

Metrics come from a confusion matrix (rows = true class, columns = predicted) so that distributed
evaluation can sum matrices across ranks and get exactly the single-process numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def confusion_matrix(true_idx: Sequence[int] | np.ndarray, pred_idx: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true_idx, dtype=np.int64), np.asarray(pred_idx, dtype=np.int64)), 1)
    return matrix


def report(
    matrix: np.ndarray,
    classes: Sequence[int],
    *,
    expected_sq_error: float | None = None,
    model_version: str = "",
    majority_baseline: float | None = None,
) -> dict[str, Any]:
    """evaluation.json's content (docs/contracts.md). `expected_sq_error` is the summed squared error of the
    probability-weighted count (sum_k p_k * count_k), reported as `rmse_expected` when given.
    `majority_baseline` defaults to the share of the most common class in this evaluation set."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = int(matrix.sum())
    counts = np.asarray(classes, dtype=np.float64)
    if n == 0:
        raise ValueError("cannot score an empty evaluation set: the test channel has no images")
    correct = int(np.trace(matrix))
    diff = counts[None, :] - counts[:, None]  # predicted count - true count for every cell
    sq = float((matrix * diff**2).sum())
    within_one = int(matrix[np.abs(diff) <= 1].sum())
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    per_class = {
        str(c): {
            "recall": float(matrix[i, i] / support[i]) if support[i] else 0.0,
            "precision": float(matrix[i, i] / predicted[i]) if predicted[i] else 0.0,
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }
    result: dict[str, Any] = {
        "accuracy": correct / n,
        "rmse": math.sqrt(sq / n),
        "off_by_one": within_one / n,
        "majority_baseline": float(support.max() / n) if majority_baseline is None else majority_baseline,
        "n": n,
        "classes": [int(c) for c in classes],
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "model_version": model_version,
    }
    if expected_sq_error is not None:
        result["rmse_expected"] = math.sqrt(expected_sq_error / n)
    return result


def write_report(report_dict: dict[str, Any], output_dir: str | Path, history: list[dict[str, float]] | None = None) -> Path:
    """Write evaluation.json, confusion_matrix.png and (with a per-epoch history) curves.png."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "evaluation.json"
    path.write_text(json.dumps(report_dict, indent=2) + "\n")
    plot_confusion(report_dict, out / "confusion_matrix.png")
    if history:
        plot_curves(history, out / "curves.png")
    if report_dict.get("calibration"):
        import calibration

        calibration.plot_reliability(report_dict["calibration"], out / "reliability.png")
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: containers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(report_dict: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    matrix = np.asarray(report_dict["confusion_matrix"])
    labels = [str(c) for c in report_dict["classes"]]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black", fontsize=8)
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted count",
        ylabel="true count",
    )
    ax.set_title(f"accuracy {report_dict['accuracy']:.3f}, n={report_dict['n']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name in ("train:loss", "validation:loss"):
        left.plot(epochs, [h.get(name, float("nan")) for h in history], marker="o", label=name)
    for name in ("train:accuracy", "validation:accuracy"):
        right.plot(epochs, [h.get(name, float("nan")) for h in history], marker="o", label=name)
    left.set(xlabel="epoch", title="loss")
    right.set(xlabel="epoch", title="accuracy")
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
