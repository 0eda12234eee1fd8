"""One training step's loss and what is logged of it; the MOST loss of pretraining and retraining."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from search_spaces import SearchSpace, parse_head
from supernet import MostNet

from .losses import head_losses
from .outputs import refinements, to_full_resolution


class TaskWeights(Protocol):
    """What weighs the tasks' losses: a balancer (nss.training.balancing)."""

    def weights(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def regularizer(self) -> torch.Tensor | float: ...


@dataclass
class StepResult:
    loss: torch.Tensor  # what is minimised
    task_losses: dict[str, torch.Tensor]  # v_i per task (search: on the gated composite)
    weights: dict[str, torch.Tensor]  # λ_i of this step
    full: dict[str, torch.Tensor]  # every output at full resolution
    deltas: dict[str, torch.Tensor]  # Δ per non-coarsest head
    extra: torch.Tensor | None = None  # the part of `loss` that belongs to no task (sparsity, UW regulariser)
    head_losses: dict[str, torch.Tensor] | None = None  # per head, where the loss is made of them
    sample: Any = None  # search: the gate sample the step was taken with (nss.scale_search.gates.GateSample)
    sparsity: torch.Tensor | None = None  # search: L_0 of what the sparsity term saw
    expected_latency: torch.Tensor | None = None  # search with a cost table: the drawn architecture's cost (ms)


def supervised_loss(space: SearchSpace, network: MostNet, batch: dict, balancer: TaskWeights) -> StepResult:
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


def batch_to(batch: dict, device: torch.device, non_blocking: bool = False,
             dtype: torch.dtype = torch.float32) -> dict:
    """`batch` on `device`, its frames and labels in `dtype` (the network's: float64 with --precision fp64);
    `non_blocking` from pinned memory, so the copy overlaps the GPU's work."""
    def to(v: torch.Tensor) -> torch.Tensor:
        return v.to(device, dtype if v.is_floating_point() else None, non_blocking=non_blocking)
    return {k: batch_to(v, device, non_blocking, dtype) if isinstance(v, dict) else to(v) for k, v in batch.items()}
