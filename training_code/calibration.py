"""Calibrated confidence: temperature scaling (Guo et al., 2017) and the numbers that check it.

train.py fits one temperature T on the validation split's logits (minimising the negative log-likelihood
of softmax(logits / T)); the model divides its logits by T (models.CountingModel.temperature, stored in
model_meta.json), so every caller's probabilities, `confidence` and `needs_review` are calibrated and the
arg-max count does not change. The report adds the expected calibration error (ECE), a reliability
diagram and the accuracy on the most-confident share of photos.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

TEMPERATURE_RANGE = (0.05, 20.0)
ECE_BINS = 15
COVERAGES = (0.5, 0.75)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The T > 0 minimising the negative log-likelihood of the served probabilities; 1.0 when there is nothing to fit.

    `logits` [N, classes] are one view's logits at T = 1; [views, N, classes] (models.CountingModel.view_logits
    with test-time flips) are fitted on exactly what serving computes: mean over views of softmax(z_v / T).
    """
    if len(targets) == 0:
        return 1.0
    logits, targets = logits.detach().float().cpu(), targets.detach().long().cpu()
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)
    if logits.dim() != 3 or logits.shape[1] != len(targets):
        raise ValueError(f"logits {list(logits.shape)} do not match {len(targets)} targets: expected [N, C] or [views, N, C]")
    log_views = math.log(logits.shape[0])
    log_t = torch.zeros(1, requires_grad=True)  # optimise log T: T stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        log_probabilities = torch.logsumexp((logits / log_t.exp()).log_softmax(dim=-1), dim=0) - log_views
        loss = F.nll_loss(log_probabilities, targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.clip(log_t.exp().item(), *TEMPERATURE_RANGE))


def fit_temperatures(view_logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """model_meta.json's two temperatures from per-view logits at T = 1 ([views, N, classes], view 0 = the photo as
    it is): `temperature` for the path the model serves (all views averaged), `single_view_temperature` for serving
    the photo alone (inference.py's "one" view, e.g. bulk verification). The same number when there is one view."""
    if view_logits.dim() == 2:
        view_logits = view_logits.unsqueeze(0)
    served = fit_temperature(view_logits, targets)
    return {"temperature": served, "single_view_temperature": fit_temperature(view_logits[0], targets) if len(view_logits) > 1 else served}


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| x share of photos in the bin."""
    confidence, correct = _confidence_and_correct(probabilities, targets)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def reliability_bins(probabilities: np.ndarray, targets: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per confidence bin: its range, photo count, mean confidence and accuracy (the reliability diagram's data)."""
    confidence, correct = _confidence_and_correct(probabilities, targets)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n": int(inside.sum()),
                "confidence": float(confidence[inside].mean()) if inside.any() else None,
                "accuracy": float(correct[inside].mean()) if inside.any() else None,
            }
        )
    return rows


def accuracy_at_coverage(probabilities: np.ndarray, targets: np.ndarray, coverage: float) -> float:
    """Accuracy on the `coverage` share of photos the model is most confident about."""
    confidence, correct = _confidence_and_correct(probabilities, targets)
    keep = max(1, int(round(coverage * len(confidence))))
    order = np.argsort(-confidence, kind="stable")[:keep]
    return float(correct[order].mean())


def summary(probabilities: np.ndarray, targets: np.ndarray, temperature: float) -> dict[str, Any]:
    """The calibration block of evaluation.json."""
    return {
        "temperature": temperature,
        "ece": expected_calibration_error(probabilities, targets),
        "ece_bins": ECE_BINS,
        **{f"accuracy_most_confident_{round(c * 100)}": accuracy_at_coverage(probabilities, targets, c) for c in COVERAGES},
        "reliability": reliability_bins(probabilities, targets),
    }


def plot_reliability(calibration: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in calibration["reliability"] if r["n"]]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.bar([(r["low"] + r["high"]) / 2 for r in rows], [r["accuracy"] for r in rows], width=0.09, alpha=0.7, label="accuracy")
    ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o", color="C1", label="per bin")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    ax.set_title(f"ECE {calibration['ece']:.3f}, T = {calibration['temperature']:.2f}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _confidence_and_correct(probabilities: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) != len(targets) or len(targets) == 0:
        raise ValueError(f"probabilities {probabilities.shape} and {len(targets)} targets do not match (or are empty)")
    return probabilities.max(axis=1), (probabilities.argmax(axis=1) == np.asarray(targets)).astype(np.float64)
