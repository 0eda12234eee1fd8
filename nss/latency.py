"""Latency-aware NSS: the measured per-head cost table (`nss profile --per-head`) and the latency terms of the
search objective (DESIGN §5).

A sub-network decodes from the coarsest scale down to its finest kept head, so what it costs is not a sum over
heads: a decoder stage (its alignment, decoder blocks and the encoder's fusion at that scale) finer than every
fixed head is paid once when any head at that scale or finer is kept. The table therefore holds the base (the
fixed heads alone), each optional stage's cost, and each searchable head's own marginal cost, measured with the
profiler's timer, the networks taking turns so that drift cancels; parameters and FLOPs are exact differences. The
search's expected cost over architectures drawn from its gates' on-probabilities p is E[lat](p) = base +
Σ_s P(stage s decoded)·lat_s + Σ_h p_h·lat_h, P(stage s decoded) = 1 − Π_{h needs s}(1 − p_h) (the gates drawn
independently): exactly the table's prediction once p is 0/1, and differentiable in p.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search_spaces import Architecture, SearchSpace, get_size, parse_head
from supernet import build_network

from .costs import count_flops, count_parameters
from .errors import NSSError
from .profile import interleaved_times, resolve_backend


def optional_stages(space: SearchSpace) -> dict[int, tuple[str, ...]]:
    """The decoder stages a sub-network may go without: scale s → the searchable heads that need it (those at
    scale s or finer). Stages as coarse as a fixed head are always decoded, so they belong to the base."""
    finest_fixed = min(parse_head(h)[1] for h in space.fixed)
    needs = {s: tuple(h for h in space.searchable if parse_head(h)[1] <= s) for s in range(1, finest_fixed)}
    return {s: heads for s, heads in needs.items() if heads}  # a stage finer than every head is never decoded


def _keeping(space: SearchSpace, heads: list[str] | tuple[str, ...]) -> Architecture:
    return Architecture(space, space.fixed + tuple(heads))


def measure_cost_table(space: SearchSpace, *, size: str, height: int, width: int, backend: str = "torch",
                       device: str = "cpu", fp16: bool = False, iters: int = 100, warmup: int = 10,
                       checks: int = 4, seed: int = 0) -> dict[str, Any]:
    """The cost table of `space`'s supernet at `size`: the base (fixed heads only) and the full supernet; every
    searchable head's own marginal cost (the supernet minus the supernet without it: ms as the median over `iters`
    rounds, in which every network runs once in turn, of the paired differences); every optional decoder stage's
    cost (the supernet without the heads finer than the stage minus the one without the heads at the stage's scale
    too, less those heads' own costs); and how well the table predicts `checks` random sub-networks."""
    backend, _ = resolve_backend(backend)
    stages = optional_stages(space)
    rng = np.random.default_rng(seed)
    sample = [_keeping(space, [h for h in space.searchable if rng.random() < 0.5]) for _ in range(checks)]
    # "stage s": the supernet without every searchable head at scale s or finer, so without stages s, s−1, …
    architectures = {"full": Architecture.full(space), "base": _keeping(space, ()),
                     **{h: _keeping(space, [k for k in space.searchable if k != h]) for h in space.searchable},
                     **{f"stage {s}": _keeping(space, [h for h in space.searchable if h not in needs])
                        for s, needs in stages.items()},
                     **{f"check {i}": a for i, a in enumerate(sample)}}
    torch_device = torch.device("cuda") if backend == "tensorrt" else torch.device(device)
    networks, counts = {}, {}
    for name, architecture in architectures.items():
        torch.manual_seed(0)
        networks[name] = build_network(architecture, get_size(size))
        counts[name] = {"params": count_parameters(networks[name]), "flops": count_flops(networks[name], height, width)}
    times = {name: np.array(t) * 1e3 for name, t in
             interleaved_times(networks, height, width, backend=backend, device=str(torch_device), fp16=fp16,
                               iters=iters, warmup=warmup).items()}

    def entry(name: str) -> dict[str, float]:
        return {"latency_ms": float(np.median(times[name])), **counts[name]}

    def measured(name: str) -> dict[str, Any]:  # latencies (ms) of every round, counts
        return {"latency_ms": times[name], **counts[name]}

    def minus(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {k: a[k] - b[k] for k in a}

    def cost(difference: dict[str, Any]) -> dict[str, float]:
        # the median of the paired differences of one round: what drifts between rounds cancels; below the timer's
        # resolution a cost can come out negative, which is no cost, not a gain
        return {**difference, "latency_ms": max(float(np.median(difference["latency_ms"])), 0.0)}

    own = {h: minus(measured("full"), measured(h)) for h in space.searchable}
    table_stages, finer = {}, "full"
    for s, needs in stages.items():  # finest first: each stage against the network that still decodes it
        difference = minus(measured(finer), measured(f"stage {s}"))
        for head in (h for h in needs if parse_head(h)[1] == s):  # less the own costs of the stage's heads
            difference = minus(difference, own[head])
        table_stages[str(s)] = {**cost(difference), "needed_by": list(needs)}
        finer = f"stage {s}"
    heads = {h: cost(difference) for h, difference in own.items()}
    table = {"space": space.to_dict(), "space_id": Architecture.full(space).id, "network": size,
             "backend": backend, "device": str(torch_device),
             "device_name": torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else "cpu",
             "precision": "fp16" if fp16 or backend == "tensorrt" else "fp32", "input_size": [height, width],
             "iters": iters, "full": entry("full"), "base": entry("base"), "stages": table_stages, "heads": heads}
    predicting = CostTable.from_dict(table, space, "the table")
    table["checks"] = [{"heads": list(a.searchable_kept),
                        "predicted_ms": predicting.predicted(a), "measured_ms": entry(f"check {i}")["latency_ms"]}
                       for i, a in enumerate(sample)]
    for check in table["checks"]:
        check["error_pct"] = 100 * (check["predicted_ms"] / check["measured_ms"] - 1)
    return table


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


def latency_penalty(expected: torch.Tensor, table: CostTable, weight: float, target: float | None,
                    target_weight: float = 1.0) -> torch.Tensor:
    """weight · E[lat] / lat_full (unit-free), plus, with a target T, TF-NAS's two-sided term, target_weight ·
    (E/T − 1) above the target and target_weight · (T/E − 1) below it: the search is pulled to spend the budget
    and not to go over it."""
    penalty = weight * expected / table.full
    if target is not None:
        two_sided = torch.where(expected > target, expected / target - 1, target / expected.clamp_min(1e-9) - 1)
        penalty = penalty + target_weight * two_sided
    return penalty
