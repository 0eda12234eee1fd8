"""Gates over the searchable heads and the relaxations that make them differentiable.

Every gate has two logits (on, off). A relaxation turns them into α per head:
- gumbel (NSS, the default): the "on" component of a Gumbel-softmax sample at temperature τ; with `hard`, the
  straight-through one-hot sample (forward 0/1, gradient of the soft sample);
- softmax (DARTS): softmax(logits / τ), no noise;
- gdas (GDAS): always the straight-through hard sample;
- concrete (SNAS): the soft Gumbel-softmax sample for the task loss, as gumbel; the cost terms (sparsity,
  latency) are taken on the discrete sample z and credited to the logits through its log-probability, with a
  moving-average baseline to cut the variance (score function: (cost(z) − b) · ∇ log p(z)), as SNAS does for its
  resource constraint;
- dirichlet (DrNAS): a reparameterised sample of a Dirichlet (here a Beta, two components) whose concentration
  elu(logits) + 1 is learned, for the task loss; the sparsity term sees the Dirichlet's mean (a sample can
  underflow to 0, where log α has no gradient); τ is not used.

What the sparsity term sees (`GateSample.costs`) is always soft where the forward is hard: a gate sampled off
still feels the sparsity pressure, and log α stays finite. The latency term (`GateSample.draw`) is taken
on a straight-through hard draw: its value is the exact cost of one architecture (for gumbel and gdas the
Gumbel-max draw, which keeps each head with its on-probability, what derivation thresholds; for softmax the
noise-free argmax, the derived architecture itself; for dirichlet its sample rounded), its gradient the relaxed
sample's; concrete uses the discrete sample z, credited through log p(z). The soft sample's cost barely moves with
the logits at a high τ, and a cost taken on the on-probabilities moves every gate alike once a target binds: a
draw's cost tells the heads apart.

A head's on-probability (`Gates.probabilities`) is what derivation thresholds; it depends on the relaxation
(softmax of the logits, or the Dirichlet's mean), so it is only ever read through the `Gates` of the run's own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import OPTIONS

RELAXATIONS = OPTIONS["relaxation"].choices  # declared with the option; each one is sampled in Gates.sample
BASELINE_DECAY = 0.9  # concrete: the cost baseline follows the last ~10 steps


@dataclass
class GateSample:
    alphas: dict[str, torch.Tensor]  # what gates each refinement in the composite
    costs: dict[str, torch.Tensor]  # what the sparsity term sees
    draw: dict[str, torch.Tensor]  # what the latency term sees: one architecture (0/1 per head), straight-through
    log_prob: torch.Tensor | None = None  # concrete: log p(z) of the discrete sample the costs were taken on


class Gates(nn.Module):
    """Two logits (on, off) per searchable head and the relaxation that samples α from them."""

    def __init__(self, heads: tuple[str, ...], relaxation: str = "gumbel"):
        super().__init__()
        if relaxation not in RELAXATIONS:
            raise ValueError(f"unknown relaxation {relaxation!r}: choose one of {', '.join(RELAXATIONS)}")
        self.heads, self.relaxation = tuple(heads), relaxation
        self.logits = nn.Parameter(torch.zeros(len(heads), 2))  # equal odds: no head favoured at the start
        if relaxation == "concrete":
            self.register_buffer("baseline", torch.zeros(()))  # moving average of the sampled costs

    def sample(self, tau: float, hard: bool = False) -> GateSample:
        """α per head in [0, 1] ({0, 1} for hard samples), with gradients to the logits."""
        if self.relaxation == "softmax":
            on = torch.softmax(self.logits / tau, dim=-1)[:, 0]
            return self._sample(on, on, straight_through(on))
        if self.relaxation == "dirichlet":
            on = torch.distributions.Dirichlet(F.elu(self.logits) + 1).rsample()[:, 0]
            return self._sample(on, self.on_probabilities(), straight_through(on))
        soft = F.gumbel_softmax(self.logits, tau=tau, hard=False, dim=-1)[:, 0]
        drawn = straight_through(soft)  # the Gumbel-max draw: each head on with its on-probability
        if self.relaxation == "concrete":
            z = drawn.detach()
            log_prob = torch.where(z > 0, *torch.log_softmax(self.logits, dim=-1).unbind(-1)).sum()
            return self._sample(soft, z, z, log_prob)
        if self.relaxation == "gdas" or hard:
            return self._sample(drawn, soft, drawn)
        return self._sample(soft, soft, drawn)

    def bernoulli(self) -> GateSample:
        """Each head on or off with probability ½, independently, without a gradient to the logits: the sub-network
        a one-shot supernet trains at a step."""
        drawn = (torch.rand(len(self.heads), device=self.logits.device) < 0.5).to(self.logits.dtype)
        return self._sample(drawn, drawn, drawn)

    def _sample(self, alphas: torch.Tensor, costs: torch.Tensor, draw: torch.Tensor,
                log_prob: torch.Tensor | None = None) -> GateSample:
        return GateSample(*(dict(zip(self.heads, v)) for v in (alphas, costs, draw)), log_prob)

    def credit(self, cost: torch.Tensor, log_prob: torch.Tensor) -> torch.Tensor:
        """concrete: the cost's value, with the score-function gradient (cost − baseline) · ∇ log p(z); the
        baseline then follows the cost."""
        value = cost.detach()
        term = (value - self.baseline) * log_prob
        self.baseline.mul_(BASELINE_DECAY).add_((1 - BASELINE_DECAY) * value)
        return value + term - term.detach()

    def on_probabilities(self) -> torch.Tensor:
        """(heads,) on-probability of every head, differentiable: softmax of the logits, or the mean of the
        Dirichlet."""
        if self.relaxation == "dirichlet":
            concentration = F.elu(self.logits) + 1
            return concentration[:, 0] / concentration.sum(-1)
        return torch.softmax(self.logits, dim=-1)[:, 0]

    def probabilities(self) -> dict[str, float]:
        """On-probability of every head: what derivation thresholds."""
        return dict(zip(self.heads, self.on_probabilities().detach().tolist()))

    def on_logits(self) -> dict[str, float]:
        """The log-odds of keeping each head, log(p / (1 − p)) of its on-probability."""
        return {h: math.log(p / (1 - p)) if 0 < p < 1 else math.copysign(math.inf, p - 0.5)
                for h, p in self.probabilities().items()}


def straight_through(on: torch.Tensor) -> torch.Tensor:
    """(heads,) 1 where the on-component wins (ties on, as argmax), 0 elsewhere, with the gradient of `on`."""
    return (on >= 0.5).to(on) - on.detach() + on


def sparsity_penalty(alphas: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """L_0(α), minimised to drive gates off. With α = σ(ℓ) of a gate's logit ℓ, the pull −∂L_0/∂ℓ of each kind:
    log (Σ log α, the dissertation's): 1 − α, which does not fade as the gate closes, where the task loss's pull
    (∝ α(1 − α)) does; l1 (Σ α): α(1 − α), as the loss's; skip-ce (−Σ log(1 − α), a cross-entropy towards "off",
    as AdaShare's): α, fading as the gate closes."""
    stacked = torch.stack(list(alphas.values()))
    if kind == "log":
        return torch.log(stacked.clamp_min(1e-6)).sum()
    if kind == "skip-ce":
        return -torch.log((1 - stacked).clamp_min(1e-6)).sum()
    return stacked.sum()
