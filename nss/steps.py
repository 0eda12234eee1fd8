"""One training step's loss: the plain MOST loss (pretraining) and the NSS objective (search)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from search_spaces import SearchSpace, parse_head
from supernet import MostNet

from .gates import Gates, sparsity_penalty
from .objective import composites, head_losses, refinements, task_loss, to_full_resolution


@dataclass
class StepResult:
    loss: torch.Tensor  # what is minimised
    task_losses: dict[str, torch.Tensor]  # by task (search: on the composite) or by head (pretraining)
    full: dict[str, torch.Tensor]  # every output at full resolution
    deltas: dict[str, torch.Tensor]  # Δ per non-coarsest head
    alphas: dict[str, torch.Tensor] | None = None
    sparsity: torch.Tensor | None = None


def pretrain_loss(space: SearchSpace, network: MostNet, batch: dict) -> StepResult:
    """Σ_i Σ_s λ_i L_i(O_i^1, u_i(Ô_i^s)): every head supervised (MOST, eq. 2)."""
    full = to_full_resolution(space, network(batch["previous"], batch["current"]))
    losses = head_losses(space, full, batch)
    loss = sum(space.task(parse_head(head)[0]).weight * value for head, value in losses.items())
    return StepResult(loss, losses, full, refinements(space, full))


def search_loss(space: SearchSpace, network: MostNet, gates: Gates, batch: dict, *, tau: float, hard: bool,
                sparsity: float, sparsity_kind: str) -> StepResult:
    """L_NSS = Σ_i λ_i L_i(O_i^1, Õ_i) + μ L_0(α) with Gumbel-softmax α (DESIGN §5)."""
    full = to_full_resolution(space, network(batch["previous"], batch["current"]))
    deltas = refinements(space, full)
    alphas = gates.sample(tau, hard)
    composite = composites(space, full, deltas, alphas)
    losses = {task.name: task_loss(task, composite[task.name], batch) for task in space.tasks}
    penalty = sparsity_penalty(alphas, sparsity_kind)
    loss = sum(space.task(name).weight * value for name, value in losses.items()) + sparsity * penalty
    return StepResult(loss, losses, full, deltas, alphas, penalty)


def batch_to(batch: dict, device: torch.device) -> dict:
    return {k: batch_to(v, device) if isinstance(v, dict) else v.to(device) for k, v in batch.items()}
