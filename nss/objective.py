"""The MOST loss (every head supervised) and the NSS objective (gated composite of innerscale refinements)."""
from __future__ import annotations

import torch

from search_spaces import SearchSpace, TaskSpec, head_name, parse_head
from supernet import rescale_output

from .losses import masked_loss


def to_full_resolution(space: SearchSpace, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """u_i(Ô_i^s) for every head: each output brought to scale 1."""
    kinds = {t.name: t.kind for t in space.tasks}
    full = {}
    for head, out in outputs.items():
        task, scale = parse_head(head)
        full[head] = rescale_output(kinds[task], out, 2 ** (scale - 1))
    return full


def task_loss(task: TaskSpec, pred: torch.Tensor, batch: dict) -> torch.Tensor:
    """A task's loss against its full-resolution label; the batch holds labels by task kind."""
    return masked_loss(task.loss, pred, batch[task.kind], batch["valid"][task.kind],
                       batch.get("weight", {}).get(task.kind))


def head_losses(space: SearchSpace, full: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
    """L_i(O_i^1, u_i(Ô_i^s)) for every head present."""
    return {head: task_loss(space.task(parse_head(head)[0]), pred, batch) for head, pred in full.items()}


def present_scales(space: SearchSpace, task: str, full: dict[str, torch.Tensor]) -> list[int]:
    """Scales of `task` that have an output here (all candidates in the supernet, the kept ones in a derived net)."""
    return [s for s in space.scales_of(task) if head_name(task, s) in full]


def refinements(space: SearchSpace, full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Δ_i^s = u_i(Ô_i^s) − u_i(Ô_i^(s')) for every non-coarsest head, s' the next coarser scale present."""
    deltas = {}
    for task in space.tasks:
        scales = present_scales(space, task.name, full)
        for finer, coarser in zip(scales, scales[1:]):
            deltas[head_name(task.name, finer)] = full[head_name(task.name, finer)] - full[head_name(task.name, coarser)]
    return deltas


def composites(space: SearchSpace, full: dict[str, torch.Tensor], deltas: dict[str, torch.Tensor],
               alphas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Õ_i = u_i(Ô_i^S) + Σ_(s<S) α_i^s Δ_i^s; heads without a gate (fixed) count with α = 1."""
    out = {}
    for task in space.tasks:
        scales = present_scales(space, task.name, full)
        composite = full[head_name(task.name, scales[-1])]
        for scale in scales[:-1]:
            head = head_name(task.name, scale)
            composite = composite + (alphas[head] * deltas[head] if head in alphas else deltas[head])
        out[task.name] = composite
    return out
