"""Latency-aware NSS: the measured per-head cost table (`nss profile --per-head`) and the latency terms of the
search objective (DESIGN §5).

The table holds, for every searchable head, its marginal cost: the supernet's latency minus that of the supernet
without the head (and without the decoder stages only it needs), measured with the profiler's timer, the
networks taking turns so that drift cancels; marginal parameters and FLOPs are exact differences. The base is
the network of the fixed heads alone. The search's expected cost is E[lat](α) = base + Σ_h α_h · lat_h.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search_spaces import Architecture, SearchSpace, get_size
from supernet import build_network

from .costs import count_flops, count_parameters
from .errors import NSSError
from .profile import interleaved_times, resolve_backend


def _without(architecture: Architecture, head: str) -> Architecture:
    return Architecture(architecture.space, tuple(h for h in architecture.heads if h != head))


def measure_cost_table(space: SearchSpace, *, size: str, height: int, width: int, backend: str = "torch",
                       device: str = "cpu", fp16: bool = False, iters: int = 100, warmup: int = 10,
                       checks: int = 4, seed: int = 0) -> dict[str, Any]:
    """The per-head cost table of `space`'s supernet at `size`: marginal latency (ms: the median over `iters`
    rounds, in which every network runs once in turn, of the supernet's time minus the time without the head),
    parameters and FLOPs of every searchable head, the base (fixed heads only) and the full supernet, and how well
    base + Σ marginals predicts `checks` random sub-networks."""
    backend, _ = resolve_backend(backend)
    full = Architecture.full(space)
    rng = np.random.default_rng(seed)
    sample = [Architecture(space, space.fixed + tuple(h for h in space.searchable if rng.random() < 0.5))
              for _ in range(checks)]
    architectures = {"full": full, "base": Architecture(space, space.fixed),
                     **{h: _without(full, h) for h in space.searchable},
                     **{f"check {i}": a for i, a in enumerate(sample)}}
    torch_device = torch.device("cuda") if backend == "tensorrt" else torch.device(device)
    networks, counts = {}, {}
    for name, architecture in architectures.items():
        torch.manual_seed(0)
        networks[name] = build_network(architecture, get_size(size))
        counts[name] = (count_parameters(networks[name]), count_flops(networks[name], height, width))
    times = interleaved_times(networks, height, width, backend=backend, device=str(torch_device), fp16=fp16,
                              iters=iters, warmup=warmup)
    latency = {name: 1e3 * statistics.median(t) for name, t in times.items()}

    def entry(name: str) -> dict[str, float]:
        return {"latency_ms": latency[name], "params": counts[name][0], "flops": counts[name][1]}

    heads = {}
    for head in space.searchable:
        marginal = {k: entry("full")[k] - entry(head)[k] for k in ("params", "flops")}
        # the median of the paired differences of runs timed one after the other: what drifts between iterations
        # cancels; below the timer's resolution a marginal can come out negative, which is no cost, not a gain
        paired = [1e3 * (a - b) for a, b in zip(times["full"], times[head])]
        marginal["latency_ms"] = max(statistics.median(paired), 0.0)
        heads[head] = marginal
    table = {"space": space.to_dict(), "space_id": Architecture.full(space).id, "network": size,
             "backend": backend, "device": str(torch_device),
             "device_name": torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else "cpu",
             "precision": "fp16" if fp16 or backend == "tensorrt" else "fp32", "input_size": [height, width],
             "iters": iters, "full": entry("full"), "base": entry("base"), "heads": heads}
    predicting = CostTable.from_dict(table, space, "the table")
    table["checks"] = [{"heads": [h for h in a.heads if h not in space.fixed],
                        "predicted_ms": predicting.predicted(a), "measured_ms": latency[f"check {i}"]}
                       for i, a in enumerate(sample)]
    for check in table["checks"]:
        check["error_pct"] = 100 * (check["predicted_ms"] / check["measured_ms"] - 1)
    return table


@dataclass(frozen=True)
class CostTable:
    """A cost table checked against the space it is used with."""

    base_ms: float
    full_ms: float
    heads: dict[str, float]  # head → marginal latency (ms)
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
    def from_dict(cls, data: dict[str, Any], space: SearchSpace, path: str | Path) -> "CostTable":
        """A table checked against the space searched; errors name `path`."""
        try:
            table_space = SearchSpace.from_dict(data["space"])
            heads = {h: float(v["latency_ms"]) for h, v in data["heads"].items()}
            base, full = float(data["base"]["latency_ms"]), float(data["full"]["latency_ms"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise NSSError(f"{path}: not a latency table (missing or wrong field {err})") from None
        if table_space != space:
            raise NSSError(f"{path}: measured for space {table_space.name!r} ({len(table_space.heads)} heads), "
                           f"not for {space.name!r} being searched")
        missing = [h for h in space.searchable if h not in heads]
        if missing:
            raise NSSError(f"{path}: no cost for head(s) {', '.join(missing)}")
        for name, value in [("base", base), ("full", full)] + list(heads.items()):
            if not (math.isfinite(value) and value >= 0):
                raise NSSError(f"{path}: the latency of {name} is {value}; costs must be finite and >= 0")
        if full <= 0:
            raise NSSError(f"{path}: the full supernet's latency is {full} ms; it must be > 0")
        return cls(base, full, heads, data.get("backend", "?"), data.get("device", "?"), data.get("precision", "?"),
                   tuple(data.get("input_size", (0, 0))), data.get("network", "?"), data)

    def expected(self, alphas: dict[str, torch.Tensor | float]) -> torch.Tensor | float:
        """E[lat](α) = base + Σ_h α_h · lat_h in ms, differentiable in α."""
        return self.base_ms + sum(alphas[h] * self.heads[h] for h in alphas)

    def predicted(self, architecture: Architecture) -> float:
        """An architecture's latency as the table predicts it: base + the marginals of its searchable heads."""
        return self.expected({h: 1.0 for h in architecture.heads if h in self.heads})


def latency_penalty(expected: torch.Tensor, table: CostTable, weight: float, target: float | None,
                    target_weight: float = 1.0) -> torch.Tensor:
    """weight · E[lat] / lat_full (unit-free), plus, with a target T, TF-NAS's two-sided term, target_weight ·
    (E/T − 1) above the target and target_weight · (T/E − 1) below it: the search is pulled to spend the budget
    and not to go over it."""
    penalty = weight * expected / table.full_ms
    if target is not None:
        two_sided = torch.where(expected > target, expected / target - 1, target / expected.clamp_min(1e-9) - 1)
        penalty = penalty + target_weight * two_sided
    return penalty
