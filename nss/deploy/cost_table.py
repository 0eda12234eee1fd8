"""Measuring a space's per-head cost table (`nss profile SPACE --per-head`), the cost model a latency-aware search
uses (nss.scale_search.latency), and an architecture's latency on the backend a table was measured on."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from search_spaces import Architecture, SearchSpace, SpaceError, parse_head

from ..device import OtherLoad
from ..errors import NSSError
from ..model.costs import count_flops, count_parameters, reference_network
from ..scale_search.latency import CostTable, optional_stages
from .profile import (described, interleaved_times, machine, profile_network, resolve_backend, tensorrt_available,
                      timing_target)


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
    torch_device, half = timing_target(backend, device, fp16)
    stages = optional_stages(space)
    rng = np.random.default_rng(seed)
    sample = [_keeping(space, [h for h in space.searchable if rng.random() < 0.5]) for _ in range(checks)]
    # "stage s": the supernet without every searchable head at scale s or finer, so without stages s, s−1, …
    architectures = {"full": Architecture.full(space), "base": _keeping(space, ()),
                     **{h: _keeping(space, [k for k in space.searchable if k != h]) for h in space.searchable},
                     **{f"stage {s}": _keeping(space, [h for h in space.searchable if h not in needs])
                        for s, needs in stages.items()},
                     **{f"check {i}": a for i, a in enumerate(sample)}}
    networks, counts = {}, {}
    for name, architecture in architectures.items():
        networks[name] = reference_network(architecture, size)
        counts[name] = {"params": count_parameters(networks[name]), "flops": count_flops(networks[name], height, width)}
    load = OtherLoad()
    with load.measuring():
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
             "backend": backend, **described(torch_device, half), "input_size": [height, width],
             "iters": iters, **machine(load), "full": entry("full"), "base": entry("base"), "stages": table_stages, "heads": heads}
    predicting = CostTable.from_dict(table, space, "the table")
    table["checks"] = [{"heads": list(a.searchable_kept),
                        "predicted_ms": predicting.predicted(a), "measured_ms": entry(f"check {i}")["latency_ms"]}
                       for i, a in enumerate(sample)]
    for check in table["checks"]:
        check["error_pct"] = 100 * (check["predicted_ms"] / check["measured_ms"] - 1)
    return table


def measured_on_table_backend(architecture: Architecture, table: CostTable) -> dict[str, Any]:
    """An architecture's latency as `table` predicts it and, where the table's backend runs here, as measured on it
    (the table's network size, input size and precision): predicted_latency_ms, and measured_latency_ms or a
    latency_note saying why not."""
    cost: dict[str, Any] = {"predicted_latency_ms": table.predicted(architecture)}
    device = "cuda" if table.device.startswith("cuda") else "cpu"
    why = "no CUDA GPU" if device == "cuda" and not torch.cuda.is_available() else \
        tensorrt_available() if table.backend == "tensorrt" else None
    if why:
        cost["latency_note"] = f"not measured: the table was measured with {table.backend} on {table.device} ({why})"
        return cost
    try:
        report = profile_network(reference_network(architecture, table.network), height=table.input_size[0],
                                 width=table.input_size[1], backend=table.backend, device=device,
                                 fp16=table.precision == "fp16", iters=table.raw.get("iters", 30))
    except (NSSError, SpaceError) as err:  # e.g. a table of a network size this version does not know
        cost["latency_note"] = f"not measured: {err}"
        return cost
    cost["measured_latency_ms"] = report["latency_ms"]["median"]
    return cost
