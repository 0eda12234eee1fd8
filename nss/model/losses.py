"""Per-task losses, each returning one value per sample so that unlabelled samples can be left out; the dense
ones take an optional per-pixel weight (B, 1, H, W) so that unlabelled pixels (ignored mask regions, invalid
sparse flow) can be left out too. `task_loss` and `head_losses` apply them to a batch's labels."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from search_spaces import SearchSpace, TaskSpec, parse_head


def pixel_mean(per_pixel: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, C, H, W) values over each sample's pixels, weighted by (B, 1, H, W) when given."""
    if weight is None:
        return per_pixel.flatten(1).mean(1)
    weight = weight.to(per_pixel).expand_as(per_pixel)
    return (per_pixel * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1e-12)


def euclidean(v: torch.Tensor, dim: int) -> torch.Tensor:
    """‖v‖₂ along `dim` (kept), the gradient 0 where v is 0 as `torch.linalg.vector_norm` has it. Written out
    because vector_norm's CPU kernel over a short dim of a (B, 2, H, W) flow is ~20× slower than these three
    element-wise ops."""
    squared = v.square().sum(dim, keepdim=True)
    nonzero = squared > 0
    return torch.where(nonzero, torch.where(nonzero, squared, 1.0).sqrt(), 0.0)  # no 1/√0 in the backward


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    return pixel_mean(torch.sqrt((pred - target) ** 2 + eps ** 2), weight)


def bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    return pixel_mean(F.binary_cross_entropy_with_logits(logits, target, reduction="none"), weight)


def epe(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error of flows (B, 2, H, W)."""
    return pixel_mean(euclidean(pred - target, 1), weight)


def corner_error(pred: torch.Tensor, target: torch.Tensor, weight: None = None) -> torch.Tensor:
    """Mean corner error of 4-point offsets (B, 4, 2)."""
    return torch.linalg.vector_norm(pred - target, dim=-1).mean(-1)


LOSSES = {"charbonnier": charbonnier, "bce": bce, "epe": epe, "corner": corner_error}


def masked_loss(name: str, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of the per-sample loss over labelled samples; exactly 0 (still in the graph) when none is."""
    per_sample = LOSSES[name](pred, target, weight=weight)
    weights = valid.to(per_sample.dtype)
    return (per_sample * weights).sum() / weights.sum().clamp_min(1.0)


def task_loss(task: TaskSpec, pred: torch.Tensor, batch: dict) -> torch.Tensor:
    """A task's loss against its full-resolution label; the batch holds labels by task kind."""
    return masked_loss(task.loss, pred, batch[task.kind], batch["valid"][task.kind],
                       batch.get("weight", {}).get(task.kind))


def head_losses(space: SearchSpace, full: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
    """L_i(O_i^1, u_i(Ô_i^s)) for every head present."""
    return {head: task_loss(space.task(parse_head(head)[0]), pred, batch) for head, pred in full.items()}
