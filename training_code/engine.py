"""Evaluation loop shared by train.py (distributed) and evaluate.py (one process).

Each rank scores a disjoint, unpadded slice of the split (positions rank, rank + world, ...), and the
sums (confusion matrix, loss, squared error of the expected count) are all-reduced: every image is
counted exactly once, unlike a DistributedSampler, which pads the last batch with repeats.
"""

from __future__ import annotations

from typing import Any

import dataset
import numpy as np
import scoring
import torch
import torch.distributed as dist
import torch.nn.functional as F


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    split: dataset.Split,
    batch_size: int,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
    amp_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, float, float]:
    """-> (confusion matrix summed over ranks, mean cross-entropy, summed squared error of the expected count)."""
    model.eval()
    num_classes = len(split.classes)
    counts = torch.tensor(split.classes, dtype=torch.float32, device=device)
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, expected-count squared error, n
    positions = list(range(rank, len(split), world))
    for start in range(0, len(positions), batch_size):
        order = np.asarray(positions[start : start + batch_size], dtype=np.int64)
        images = torch.from_numpy(np.ascontiguousarray(split.images[order])).to(device, non_blocking=True)
        targets = torch.from_numpy(split.targets[order]).to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
        logits = logits.float()
        probs = logits.softmax(dim=1)
        expected = probs @ counts
        sums[0] += F.cross_entropy(logits, targets, reduction="sum").double()
        sums[1] += ((expected - counts[targets]) ** 2).sum().double()
        sums[2] += len(order)
        matrix.index_put_((targets, logits.argmax(dim=1)), torch.ones(len(order), dtype=torch.float64, device=device), accumulate=True)
    if world > 1:
        dist.all_reduce(matrix)
        dist.all_reduce(sums)
    n = max(1.0, sums[2].item())
    return matrix.round().long().cpu().numpy(), sums[0].item() / n, sums[1].item()


def summarise(matrix: np.ndarray, classes: list[int], loss: float, sq_error: float, prefix: str = "validation") -> dict[str, Any]:
    """The per-epoch metrics (metrics_format names) from an evaluation."""
    result = scoring.report(matrix, classes, expected_sq_error=sq_error)
    return {
        f"{prefix}:loss": loss,
        f"{prefix}:accuracy": result["accuracy"],
        f"{prefix}:rmse": result["rmse"],
        f"{prefix}:off_by_one": result["off_by_one"],
    }


@torch.no_grad()
def predict_logits(
    model: Any,
    split: dataset.Split,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    views: bool = False,
) -> torch.Tensor:
    """float32 outputs on the CPU for the whole split, in order (one process): the model's logits [N, classes],
    or with `views` (a models.CountingModel) its per-view logits [views, N, classes] (test-time flips)."""
    if hasattr(model, "eval"):  # a served ONNX Runtime session has no train/eval modes
        model.eval()
    forward = model.view_logits if views else model
    chunks = []
    for start in range(0, len(split), batch_size):
        images = torch.from_numpy(np.array(split.images[start : start + batch_size])).to(device, non_blocking=True)  # a writable copy
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            chunks.append(forward(images).float().cpu())
    if not chunks:
        return torch.zeros(0, len(split.classes))
    return torch.cat(chunks, dim=1 if views else 0)


def score_logits(logits: torch.Tensor, targets: np.ndarray, classes: list[int]) -> tuple[np.ndarray, float, float]:
    """`evaluate`'s (confusion matrix, mean cross-entropy, summed squared error of the expected count) from logits."""
    logits = logits.double()
    targets_t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    counts = torch.tensor(classes, dtype=torch.float64)
    expected = logits.softmax(dim=1) @ counts
    matrix = scoring.confusion_matrix(targets_t.numpy(), logits.argmax(dim=1).numpy(), len(classes))
    loss = F.cross_entropy(logits, targets_t, reduction="mean").item() if len(targets_t) else 0.0
    return matrix, loss, float(((expected - counts[targets_t]) ** 2).sum())
