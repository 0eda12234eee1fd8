"""The NSS objective (dissertation §6.2.2): a task's output as the gated composite of its inner-scale refinements,
and the search strategy that makes one step's loss of it: gates and their relaxation, the sparsity penalty, the
latency terms, and whether gate and weight steps alternate (bi-level)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from search_spaces import SearchSpace, head_name
from supernet import MostNet

from ..config import RunConfig
from ..model.losses import task_loss
from ..model.outputs import present_scales, refinements, to_full_resolution
from ..model.step import StepResult
from .gates import Gates, sparsity_penalty
from .latency import CostTable, LatencyTerm


def composites(space: SearchSpace, full: dict[str, torch.Tensor], deltas: dict[str, torch.Tensor],
               alphas: dict[str, Any], contiguous: bool = False) -> dict[str, torch.Tensor]:
    """Õ_i = u_i(Ô_i^S) + Σ_(s<S) α_i^s Δ_i^s; heads without a gate (fixed) count with α = 1. `contiguous`: a
    refinement is gated by its own α times that of every coarser one, so a finer head counts only as much as the
    next coarser one does, and a 0/1 choice always scores an output its derived network computes."""
    out = {}
    for task in space.tasks:
        scales = present_scales(space, task.name, full)
        gate: dict[int, Any] = {}
        coarser: Any = 1.0
        for scale in reversed(scales[:-1]):
            own = alphas.get(head_name(task.name, scale), 1.0)
            gate[scale] = coarser = own * coarser if contiguous else own
        composite = full[head_name(task.name, scales[-1])]
        for scale in scales[:-1]:
            head = head_name(task.name, scale)
            composite = composite + gate[scale] * deltas[head]
        out[task.name] = composite
    return out


@dataclass
class SearchObjective:
    """L_NSS = Σ_i λ_i L_i(O_i^1, Õ_i) + μ L_0(α) [+ latency terms], α drawn from the gates' relaxation.

    The cost terms are taken on what the relaxation gives them (`GateSample.costs` for the sparsity,
    `GateSample.draw` for the latency); with a discrete sample (concrete) they are credited to the logits through
    its log-probability, and the sparsity is the sample's L0 count. `bilevel`: the gate logits step on validation
    batches and the weights on training batches (first-order DARTS), instead of both on each batch."""

    space: SearchSpace
    gates: Gates
    tau: float
    hard: bool = False
    sparsity: float = 0.0  # μ
    sparsity_kind: str = "log"
    latency: LatencyTerm | None = None
    bilevel: bool = False
    contiguous: bool = False
    random_heads: bool = False  # one-shot: each head kept or dropped at random (Bernoulli ½), the gates unused

    @classmethod
    def from_config(cls, config: RunConfig, space: SearchSpace) -> "SearchObjective":
        """The objective a configuration searches with (its cost table loaded and checked against the space)."""
        latency = None
        if config.latency_table:
            latency = LatencyTerm(CostTable.load(config.latency_table, space), config.latency_weight,
                                  config.latency_target, config.latency_target_weight)
        return cls(space, Gates(space.searchable, config.relaxation), config.tau, config.hard, config.sparsity,
                   config.sparsity_kind, latency, config.bilevel, config.contiguous, config.select == "oneshot")

    def loss(self, network: MostNet, batch: dict) -> StepResult:
        """One step's objective on a batch, with a fresh gate sample."""
        full = to_full_resolution(self.space, network(batch["previous"], batch["current"]))
        deltas = refinements(self.space, full)
        sample = self.gates.bernoulli() if self.random_heads else self.gates.sample(self.tau, self.hard)
        composite = composites(self.space, full, deltas, sample.alphas, self.contiguous)
        losses = {task.name: task_loss(task, composite[task.name], batch) for task in self.space.tasks}
        penalty = sparsity_penalty(sample.costs, "l1" if sample.log_prob is not None else self.sparsity_kind)
        costs = self.sparsity * penalty
        expected = None
        if self.latency is not None:
            expected = self.latency.table.expected(sample.draw)
            costs = costs + self.latency.penalty(expected)
        if sample.log_prob is not None:  # score function: the costs' value, their gradient through log p(z)
            costs = self.gates.credit(costs, sample.log_prob)
        weights = {t.name: torch.tensor(t.weight) for t in self.space.tasks}
        loss = sum(weights[name] * value for name, value in losses.items()) + costs
        return StepResult(loss, losses, weights, full, deltas, extra=costs, sample=sample, sparsity=penalty,
                          expected_latency=expected)
