"""Latency-aware NSS: the per-head cost table (measured by `nss profile --per-head`, nss.deploy.cost_table) as a
differentiable cost model, and the latency terms of the search objective.

A sub-network decodes from the coarsest scale down to its finest kept head, so what it costs is not a sum over
heads: a decoder stage (its alignment, decoder blocks and the encoder's fusion at that scale) finer than every
fixed head is paid once when any head at that scale or finer is kept. The table therefore holds the base (the
fixed heads alone), each optional stage's cost, and each searchable head's own marginal cost, measured with the
profiler's timer; parameters and FLOPs are exact differences. The search's expected cost over architectures drawn from its gates' on-probabilities p is E[lat](p) = base +
Σ_s P(stage s decoded)·lat_s + Σ_h p_h·lat_h, P(stage s decoded) = 1 − Π_{h needs s}(1 − p_h) (the gates drawn
independently): exactly the table's prediction once p is 0/1, and differentiable in p.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search_spaces import Architecture, SearchSpace, parse_head

from ..errors import NSSError


def optional_stages(space: SearchSpace) -> dict[int, tuple[str, ...]]:
    """The decoder stages a sub-network may go without: scale s → the searchable heads that need it (those at
    scale s or finer). Stages as coarse as a fixed head are always decoded, so they belong to the base."""
    finest_fixed = min(parse_head(h)[1] for h in space.fixed)
    needs = {s: tuple(h for h in space.searchable if parse_head(h)[1] <= s) for s in range(1, finest_fixed)}
    return {s: heads for s, heads in needs.items() if heads}  # a stage finer than every head is never decoded


@dataclass(frozen=True)
class CostTable:
    """A cost table checked against the space it is used with, read for one quantity (latency in ms by default;
    `params` or `flops` give the same model on the exact counts)."""

    base: float
    full: float
    heads: dict[str, float]  # head → its own marginal cost
    stages: dict[int, float]  # optional decoder stage → its cost, paid once if any head needing it is kept
    needs: dict[int, tuple[str, ...]]  # optional decoder stage → the searchable heads that need it
    backend: str
    device: str
    precision: str
    input_size: tuple[int, int]
    network: str
    raw: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace) -> "CostTable":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise NSSError(f"{path}: latency table not found (write one with `nss profile SPACE --per-head`)") from None
        except json.JSONDecodeError as err:
            raise NSSError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data, space, path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], space: SearchSpace, path: str | Path,
                  quantity: str = "latency_ms") -> "CostTable":
        """A table checked against the space searched; errors name `path`."""
        try:
            table_space = SearchSpace.from_dict(data["space"])
            heads = {h: float(v[quantity]) for h, v in data["heads"].items()}
            stages = {int(s): float(v[quantity]) for s, v in data["stages"].items()}
            base, full = float(data["base"][quantity]), float(data["full"][quantity])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise NSSError(f"{path}: not a latency table (missing or wrong field {err}; measure it again with "
                           "`nss profile SPACE --per-head`)") from None
        if table_space != space:
            raise NSSError(f"{path}: measured for space {table_space.name!r} ({len(table_space.heads)} heads), "
                           f"not for {space.name!r} being searched")
        missing = [h for h in space.searchable if h not in heads]
        if missing:
            raise NSSError(f"{path}: no cost for head(s) {', '.join(missing)}")
        needs = optional_stages(space)
        if set(stages) != set(needs):
            raise NSSError(f"{path}: decoder stages {sorted(stages)} given, the space's optional ones are "
                           f"{sorted(needs)}")
        named = [("base", base), ("full", full)] + [(f"decoder stage {s}", v) for s, v in stages.items()]
        for name, value in named + list(heads.items()):
            if not (math.isfinite(value) and value >= 0):
                raise NSSError(f"{path}: the cost of {name} is {value}; costs must be finite and >= 0")
        if full <= 0:
            raise NSSError(f"{path}: the full supernet's cost is {full}; it must be > 0")
        return cls(base, full, heads, stages, needs, data.get("backend", "?"), data.get("device", "?"),
                   data.get("precision", "?"), tuple(data.get("input_size", (0, 0))), data.get("network", "?"), data)

    def expected(self, alphas: dict[str, torch.Tensor | float]) -> torch.Tensor | float:
        """E[cost](α) = base + Σ_s P(stage s decoded)·cost_s + Σ_h α_h·cost_h, differentiable in α; a head
        missing from `alphas` is off."""
        def decoded(stage: int) -> torch.Tensor | float:  # P(some head that needs the stage is on)
            return 1 - math.prod(1 - alphas[h] for h in self.needs[stage] if h in alphas)

        return (self.base + sum(decoded(s) * cost for s, cost in self.stages.items())
                + sum(alphas[h] * self.heads[h] for h in alphas))

    def predicted(self, architecture: Architecture) -> float:
        """An architecture's cost as the table predicts it: the base, the stages its heads need, their own costs."""
        return self.expected({h: 1.0 for h in architecture.heads if h in self.heads})


@dataclass(frozen=True)
class LatencyTerm:
    """The latency part of the search objective: `weight` · E[lat] / lat_full (unit-free), plus, with a `target` T
    (ms), TF-NAS's two-sided term, `target_weight` · (E/T − 1) above the target and `target_weight` · (T/E − 1)
    below it: the search is pulled to spend the budget and not to go over it."""

    table: CostTable
    weight: float = 0.0
    target: float | None = None
    target_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.target is not None and self.target < self.table.base:
            raise NSSError(f"--latency-target: {self.target:g} ms cannot be met: the fixed heads alone take "
                           f"{self.table.base:.2f} ms on the table's {self.table.backend}")

    def penalty(self, expected: torch.Tensor) -> torch.Tensor:
        penalty = self.weight * expected / self.table.full
        if self.target is not None:
            two_sided = torch.where(expected > self.target, expected / self.target - 1,
                                    self.target / expected.clamp_min(1e-9) - 1)
            penalty = penalty + self.target_weight * two_sided
        return penalty
