"""Gumbel-softmax gates over the searchable heads (DESIGN §5)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Gates(nn.Module):
    """Two logits (on, off) per searchable head; α is the "on" component of a Gumbel-softmax sample."""

    def __init__(self, heads: tuple[str, ...]):
        super().__init__()
        self.heads = tuple(heads)
        self.logits = nn.Parameter(torch.zeros(len(heads), 2))  # equal odds: no head favoured at the start

    def sample(self, tau: float, hard: bool = False) -> dict[str, torch.Tensor]:
        """α per head, in (0, 1) (soft) or {0, 1} with straight-through gradients (hard)."""
        alphas = F.gumbel_softmax(self.logits, tau=tau, hard=hard, dim=-1)[:, 0]
        return dict(zip(self.heads, alphas))

    def probabilities(self) -> dict[str, float]:
        """On-probability of every head, softmax of its logits (what derivation thresholds)."""
        probs = torch.softmax(self.logits.detach(), dim=-1)[:, 0]
        return dict(zip(self.heads, probs.tolist()))

    def on_logits(self) -> dict[str, float]:
        """Logit of "on" relative to "off" (the log-odds of keeping the head)."""
        diff = self.logits.detach()[:, 0] - self.logits.detach()[:, 1]
        return dict(zip(self.heads, diff.tolist()))


def sparsity_penalty(alphas: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """L_0(α): Σ log α as in the dissertation, or Σ α (l1). Minimising either drives gates off."""
    stacked = torch.stack(list(alphas.values()))
    if kind == "log":
        return torch.log(stacked.clamp_min(1e-6)).sum()
    return stacked.sum()
