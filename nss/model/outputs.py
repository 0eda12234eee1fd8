"""What a MOST network's heads output, brought to full resolution, and the refinement each finer head adds."""
from __future__ import annotations

import torch

from search_spaces import SearchSpace, head_name, parse_head
from supernet import rescale_output


def to_full_resolution(space: SearchSpace, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """u_i(Ô_i^s) for every head: each output brought to scale 1."""
    kinds = {t.name: t.kind for t in space.tasks}
    full = {}
    for head, out in outputs.items():
        task, scale = parse_head(head)
        full[head] = rescale_output(kinds[task], out, 2 ** (scale - 1))
    return full


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
