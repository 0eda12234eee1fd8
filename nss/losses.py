"""Per-task losses, each returning one value per sample so that unlabelled samples can be left out."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps ** 2).flatten(1).mean(1)


def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)


def epe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean end-point error of flows (B, 2, H, W)."""
    return torch.linalg.vector_norm(pred - target, dim=1).flatten(1).mean(1)


def corner_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean corner error of 4-point offsets (B, 4, 2)."""
    return torch.linalg.vector_norm(pred - target, dim=-1).mean(-1)


LOSSES = {"charbonnier": charbonnier, "bce": bce, "epe": epe, "corner": corner_error}


def masked_loss(name: str, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of the per-sample loss over labelled samples; exactly 0 (still in the graph) when none is."""
    per_sample = LOSSES[name](pred, target)
    weights = valid.to(per_sample.dtype)
    return (per_sample * weights).sum() / weights.sum().clamp_min(1.0)
