"""Gradient conflicts measured during training (Yu et al. 2020): per-task gradients of the shared parameters,
compared pairwise by cosine similarity, overall and per module group. A cosine < 0 is a conflict.

On a measured step the per-task gradients are also what the update uses: their sum (plus the gradient of any
term that belongs to no task, such as the sparsity penalty) is written into `.grad`, so measuring costs T
backward passes instead of one, and the update needs no extra pass.
"""
from __future__ import annotations

import itertools

import pandas as pd
import torch
import torch.nn as nn

Gradients = dict[str, torch.Tensor]  # parameter name → gradient


def cosine_matrix(grads: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Task × task cosine similarity of flattened gradients (0 where a gradient is all zero)."""
    names = list(grads)
    flat = torch.stack([g.detach().flatten().double().cpu() for g in grads.values()])
    norms = flat.norm(dim=1)
    cos = (flat @ flat.T) / (norms[:, None] * norms[None, :]).clamp_min(1e-300)
    return pd.DataFrame(cos.numpy(), index=names, columns=names)


def module_group(name: str) -> str:
    """The module group of a MOST-network parameter: encoder@s, alignment@s, decoder@s, or "head task@s" (a
    motion head is shared: its estimate aligns the finer scales that every task reads)."""
    parts = name.split(".")
    if parts[0] == "encoder":  # encoder.scales.<0-based index> or encoder.fusion.<scale>
        return f"encoder@{int(parts[2]) + 1 if parts[1] == 'scales' else int(parts[2])}"
    if parts[0] in ("alignment", "decoder"):
        return f"{parts[0]}@{parts[1]}"
    return f"head {parts[1]}"


def backward_per_task(terms: dict[str, torch.Tensor], rest: torch.Tensor | None,
                      named: list[tuple[str, nn.Parameter]]) -> dict[str, Gradients]:
    """Set `.grad` of the parameters to the gradient of Σ terms + rest, taking one task term at a time, and
    return each task's gradients by parameter name (only the parameters that task reaches)."""
    names, params = zip(*[(n, p) for n, p in named if p.requires_grad])
    per_task = {}
    for task, term in terms.items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        per_task[task] = {n: g for n, g in zip(names, grads) if g is not None}
    extra = {}
    if rest is not None and rest.requires_grad:
        extra = {n: g for n, g in zip(names, torch.autograd.grad(rest, params, allow_unused=True)) if g is not None}
    for name, param in zip(names, params):
        parts = [g[name] for g in (*per_task.values(), extra) if name in g]
        param.grad = sum(parts) if parts else None
    return per_task


def shared_parameters(per_task: dict[str, Gradients]) -> list[str]:
    """Parameters that receive a non-zero gradient from at least two tasks."""
    reach: dict[str, int] = {}
    for grads in per_task.values():
        for name, g in grads.items():
            if g.abs().sum() > 0:
                reach[name] = reach.get(name, 0) + 1
    return [name for name, count in reach.items() if count >= 2]


def conflict_rows(per_task: dict[str, Gradients], candidates: set[str]) -> list[dict]:
    """Cosine of every task pair over the shared network parameters ("all") and over each module group.
    `candidates` are the network's parameter names (gate logits or balancer weights are never "shared")."""
    per_task = {t: {n: g for n, g in grads.items() if n in candidates} for t, grads in per_task.items()}
    shared = shared_parameters(per_task)
    reference = {n: next(g[n] for g in per_task.values() if n in g) for n in shared}
    groups = {"all": shared}
    for name in shared:
        groups.setdefault(module_group(name), []).append(name)
    rows = []
    for group, names in groups.items():
        vectors = {task: torch.cat([grads.get(n, torch.zeros_like(reference[n])).flatten() for n in names])
                   for task, grads in per_task.items()}
        matrix = cosine_matrix(vectors)
        rows += [{"group": group, "task_a": a, "task_b": b, "cosine": float(matrix.loc[a, b])}
                 for a, b in itertools.combinations(per_task, 2)]
    return rows
