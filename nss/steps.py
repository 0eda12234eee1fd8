"""One training step's loss: the plain MOST loss (pretraining) and the NSS objective (search)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from search_spaces import SearchSpace, parse_head
from supernet import MostNet

from .balancing import Balancer
from .gates import Gates, sparsity_penalty
from .latency import CostTable, latency_penalty
from .objective import composites, head_losses, refinements, task_loss, to_full_resolution


@dataclass
class StepResult:
    loss: torch.Tensor  # what is minimised
    task_losses: dict[str, torch.Tensor]  # v_i per task (search: on the gated composite)
    weights: dict[str, torch.Tensor]  # λ_i of this step
    full: dict[str, torch.Tensor]  # every output at full resolution
    deltas: dict[str, torch.Tensor]  # Δ per non-coarsest head
    extra: torch.Tensor | None = None  # the part of `loss` that belongs to no task (sparsity, UW regulariser)
    head_losses: dict[str, torch.Tensor] | None = None  # per head, where the loss is made of them
    alphas: dict[str, torch.Tensor] | None = None
    sparsity: torch.Tensor | None = None
    expected_latency: torch.Tensor | None = None  # E[lat](α) in ms, with a latency table


def supervised_loss(space: SearchSpace, network: MostNet, batch: dict, balancer: Balancer) -> StepResult:
    """Σ_i λ_i Σ_s L_i(O_i^1, u_i(Ô_i^s)) over the heads the network has (deep supervision, MOST eq. 2).

    Pretraining is this on the supernet with fixed λ (LS); retraining on a derived network with any balancer.
    """
    full = to_full_resolution(space, network(batch["previous"], batch["current"]))
    per_head = head_losses(space, full, batch)
    per_task = {t.name: sum(v for h, v in per_head.items() if parse_head(h)[0] == t.name) for t in space.tasks}
    weights = balancer.weights(per_task)
    regularizer = balancer.regularizer()
    loss = sum(weights[name] * value for name, value in per_task.items()) + regularizer
    extra = regularizer if torch.is_tensor(regularizer) else None
    return StepResult(loss, per_task, weights, full, refinements(space, full), extra=extra, head_losses=per_head)


def search_loss(space: SearchSpace, network: MostNet, gates: Gates, batch: dict, *, tau: float, hard: bool,
                sparsity: float, sparsity_kind: str, latency: CostTable | None = None, latency_weight: float = 0.0,
                latency_target: float | None = None, latency_target_weight: float = 1.0) -> StepResult:
    """L_NSS = Σ_i λ_i L_i(O_i^1, Õ_i) + μ L_0(α) [+ latency terms] with α from the gates' relaxation (DESIGN §5).

    The cost terms are taken on what the relaxation gives them (`GateSample.costs` for the sparsity,
    `GateSample.draw` for the latency); with a discrete sample (concrete) they are credited to the
    logits through its log-probability, and the sparsity is the sample's L0 count."""
    full = to_full_resolution(space, network(batch["previous"], batch["current"]))
    deltas = refinements(space, full)
    sample = gates.sample(tau, hard)
    composite = composites(space, full, deltas, sample.alphas)
    losses = {task.name: task_loss(task, composite[task.name], batch) for task in space.tasks}
    penalty = sparsity_penalty(sample.costs, "l1" if sample.log_prob is not None else sparsity_kind)
    costs = sparsity * penalty
    expected = None
    if latency is not None:
        expected = latency.expected(sample.draw)
        costs = costs + latency_penalty(expected, latency, latency_weight, latency_target, latency_target_weight)
    if sample.log_prob is not None:  # score function: the costs' value, their gradient through log p(z)
        costs = gates.credit(costs, sample.log_prob)
    weights = {t.name: torch.tensor(t.weight) for t in space.tasks}
    loss = sum(weights[name] * value for name, value in losses.items()) + costs
    return StepResult(loss, losses, weights, full, deltas, extra=costs, alphas=sample.alphas, sparsity=penalty,
                      expected_latency=expected)


def batch_to(batch: dict, device: torch.device) -> dict:
    return {k: batch_to(v, device) if isinstance(v, dict) else v.to(device) for k, v in batch.items()}
