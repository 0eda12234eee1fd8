"""Evaluation metrics on batched tensors, the multi-task score Δ_MTL, and Pareto fronts."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from search_spaces import TaskSpec

from ..model.losses import euclidean, pixel_mean

PSNR_CAP = 100.0  # dB: identical images (MSE 0) score this instead of infinity, so means and Δ_MTL stay finite


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over images of 10·log10(1 / MSE), each capped at PSNR_CAP; images (B, C, H, W) in [0, 1] (data
    range 1)."""
    mse = ((pred - target) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse)).clamp_max(PSNR_CAP).mean()


def _gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)  # as scipy's gaussian_filter: an 11-tap window for σ = 1.5
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM over images and channels, Gaussian window σ = 1.5 (Wang et al. 2004), data range 1.

    Local statistics are taken only where the whole window fits in the image, which is what scikit-image's
    `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`
    averages over (it crops the filter's border).
    """
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    b, c, h, w = pred.shape
    window = _gaussian_window().to(pred.device, torch.float64)
    x, y = pred.double().reshape(b * c, 1, h, w), target.double().reshape(b * c, 1, h, w)

    def blur(z: torch.Tensor) -> torch.Tensor:  # separable, 'valid' region only
        z = F.conv2d(z, window.view(1, 1, -1, 1))
        return F.conv2d(z, window.view(1, 1, 1, -1))

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return ssim_map.reshape(b, c, -1).mean(-1).mean().to(pred.dtype)


def iou_counts(pred: torch.Tensor, target: torch.Tensor,
               weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(intersection, union) pixel counts of binary masks; `pred` holds probabilities (foreground ≥ 0.5); pixels
    of weight 0 (ignored) are left out."""
    p, t = pred >= 0.5, target >= 0.5
    if weight is not None:
        labelled = weight > 0
        p, t = p & labelled, t & labelled
    return (p & t).sum(), (p | t).sum()


def iou(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Intersection over union accumulated over every (labelled) pixel of the batch (1 when both are empty)."""
    inter, union = iou_counts(pred, target, weight)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones((), device=pred.device))


def epe(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error of flows (B, 2, H, W): over each frame's (labelled) pixels, then over frames."""
    return pixel_mean(euclidean(pred - target, 1), weight).mean()


def mace(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean corner error of 4-point homography offsets (B, 4, 2)."""
    return torch.linalg.vector_norm(pred - target, dim=-1).mean()


# The smallest reference a relative change is taken against: a reference of exactly 0 (the zero-flow EPE of a
# static scene, the IoU of an empty prediction) would make every change infinite. One hundredth of the metric's
# unit (pixels for EPE and MACE, the [0, 1] range for IoU and SSIM, dB for PSNR) is below any difference worth
# reporting, so the floor only decides those degenerate cases.
REFERENCE_FLOOR = 0.01


def delta_mtl(values: Mapping[str, Mapping[str, float]], reference: Mapping[str, Mapping[str, float]],
              tasks: Sequence[TaskSpec]) -> float:
    """Multi-task score in %: mean over tasks of the mean signed relative change of their metrics against a
    reference run, positive when better (Maninis et al. 2019). Changes are relative to max(|reference|,
    REFERENCE_FLOOR)."""
    per_task = []
    for task in tasks:
        if task.name not in values or task.name not in reference:
            continue  # a task without labels in the split compared: the score is over the others
        changes = []
        for metric in task.metrics:
            ref = reference[task.name][metric.name]
            sign = 1.0 if metric.direction == "higher" else -1.0
            changes.append(sign * (values[task.name][metric.name] - ref) / max(abs(ref), REFERENCE_FLOOR))
        per_task.append(sum(changes) / len(changes))
    return 100.0 * sum(per_task) / len(per_task) if per_task else float("nan")


def pareto_mask(cost: Sequence[float], value: Sequence[float]) -> np.ndarray:
    """Which points no other point beats on both (lower or equal cost, higher or equal value, one strictly)."""
    cost, value = np.asarray(cost, float), np.asarray(value, float)
    dominated = [((cost <= c) & (value >= v) & ((cost < c) | (value > v))).any() for c, v in zip(cost, value)]
    return ~np.asarray(dominated, bool)
