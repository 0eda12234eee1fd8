"""Task balancing: per-step task weights λ_i from the numeric losses only (LS, ATB, DWA, RLW, UW).

One small interface: `make(name, tasks)` returns a module whose `weights(losses)` gives this step's λ per task
(the names are the choices of the `balancing` option, nss.config).
Call `end_epoch()` after every epoch (DWA uses epoch means); add `regularizer()` to the loss (UW learns its
weights); `state_dict()` carries whatever a resumed run needs.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from search_spaces import TaskSpec


class Balancer(nn.Module):
    def __init__(self, tasks: Sequence[TaskSpec]):
        super().__init__()
        self.names = [t.name for t in tasks]

    def weights(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def regularizer(self) -> torch.Tensor | float:
        return 0.0

    def end_epoch(self) -> None:
        """Close an epoch (only DWA looks at epochs)."""


class LinearScalarization(Balancer):
    """LS: the fixed λ_i of the tasks."""

    def __init__(self, tasks: Sequence[TaskSpec]):
        super().__init__(tasks)
        self.register_buffer("fixed", torch.tensor([t.weight for t in tasks]))

    def weights(self, losses):
        return dict(zip(self.names, self.fixed.to(next(iter(losses.values())).device)))


class AdaptiveTaskBalancing(Balancer):
    """ATB (dissertation eq. 6.6): λ_i v_i equal for all tasks and Σ λ_i v_i = Σ v_i, i.e. λ_i = V / (T v_i)."""

    def weights(self, losses):
        v = torch.stack([losses[n].detach() for n in self.names]).clamp_min(1e-12)
        return dict(zip(self.names, v.sum() / (len(v) * v)))


class DynamicWeightAverage(Balancer):
    """DWA (Liu et al. 2019): T · softmax(r / 2), r_i the ratio of task i's last two epoch-mean losses."""

    def __init__(self, tasks: Sequence[TaskSpec], temperature: float = 2.0):
        super().__init__(tasks)
        self.temperature = temperature
        self.register_buffer("running", torch.zeros(len(self.names)))  # sum of this epoch's losses
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("history", torch.zeros(0, len(self.names)))  # epoch means so far

    def weights(self, losses):
        v = torch.stack([losses[n].detach() for n in self.names])
        self.running += v.to(self.running)
        self.count += 1
        if len(self.history) < 2:  # the first two epochs have no ratio yet
            return dict(zip(self.names, torch.ones_like(v)))
        ratio = (self.history[-1] / self.history[-2].clamp_min(1e-12)).to(v)
        return dict(zip(self.names, len(v) * torch.softmax(ratio / self.temperature, dim=0)))

    def end_epoch(self) -> None:
        if self.count > 0:
            self.history = torch.cat((self.history, (self.running / self.count)[None]))[-2:]
        self.running.zero_()
        self.count.zero_()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # its length changes during training; it lives where the running sums live (a checkpoint loads on the CPU)
        self.history = self.running.new_empty(state_dict[prefix + "history"].shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class RandomLossWeighting(Balancer):
    """RLW (Lin et al. 2022): λ = softmax(ε), ε ~ N(0, I), drawn anew every step."""

    def weights(self, losses):
        device = next(iter(losses.values())).device
        return dict(zip(self.names, torch.softmax(torch.randn(len(self.names), device=device), dim=0)))


class UncertaintyWeighting(Balancer):
    """UW (Kendall et al. 2018): learnable s_i = log σ_i²; loss Σ ½ e^(−s_i) L_i + ½ s_i. Its λ are not detached:
    they are what is learned (add `parameters()` to an optimiser and `regularizer()` to the loss)."""

    def __init__(self, tasks: Sequence[TaskSpec]):
        super().__init__(tasks)
        self.log_variance = nn.Parameter(torch.zeros(len(self.names)))

    def weights(self, losses):
        return dict(zip(self.names, 0.5 * torch.exp(-self.log_variance)))

    def regularizer(self):
        return 0.5 * self.log_variance.sum()


BALANCERS = {"ls": LinearScalarization, "atb": AdaptiveTaskBalancing, "dwa": DynamicWeightAverage,
             "rlw": RandomLossWeighting, "uw": UncertaintyWeighting}


def list_balancers() -> list[str]:
    return list(BALANCERS)


def make(name: str, tasks: Sequence[TaskSpec]) -> Balancer:
    if name not in BALANCERS:
        raise ValueError(f"unknown balancing {name!r}: choose one of {', '.join(BALANCERS)}")
    return BALANCERS[name](tasks)
