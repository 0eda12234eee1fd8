"""How a search picks its heads once the supernet is trained (`--select`), and the score per head it picks them by,
recorded beside the gates (architecture.json `scores`; `nss rank` correlates them with the heads' measured value):

- gates: the heads whose on-probability is at least the threshold; score: the on-probability;
- knockout (DARTS-PT's idea, without its fine-tune): each head's refinement taken out of the composite of the
  supernet with every head on, on the validation split; score: the Δ_MTL points lost without it; kept: a head
  whose loss is above `min_gain`. In a co-adapted supernet this measures what the others have come to depend on;
- oneshot (SPOS): the supernet trained with each head on or off at random (`Gates.bernoulli`), then every
  sub-network's composite measured on the validation split with the inherited weights; kept: of those within
  `min_gain` points of the best (and within the latency target of a cost table, when given), the one of fewest
  heads (of lowest predicted latency, with a cost table); score: a head's marginal value over the sub-networks
  (mean Δ_MTL of those with it minus those without), as a ground truth's.

With `--contiguous-selection` (the default; implied by `--contiguous`) a finer head is kept only with the next
coarser one of its task, and `oneshot` measures only the sub-networks that are so.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from search_spaces import Architecture, SearchSpace
from supernet import MostNet

from ..config import MAX_ENUMERATED_HEADS
from ..evaluation.composites import composite_scores
from ..evaluation.marginals import marginal_values
from ..scale_search.derive import contiguous_heads, derive_architecture, with_fixed_heads
from ..scale_search.gates import Gates
from ..scale_search.latency import CostTable
from .session import Session

SCORE_MEANING = {"gates": "on-probability", "knockout": "validation Δ_MTL points lost without the head",
                 "oneshot": "marginal validation Δ_MTL points over the sub-networks"}


@dataclass(frozen=True)
class Selection:
    architecture: Architecture
    scores: dict[str, float]  # per searchable head: what the selection ranks it by (SCORE_MEANING)
    subnetworks: pd.DataFrame | None = None  # oneshot: every sub-network measured (heads, delta_mtl_val[, latency])


def subnetworks(space: SearchSpace, contiguous: bool = False) -> list[tuple[str, ...]]:
    """Every choice of searchable heads once, fewest heads first (`contiguous`: only those whose every finer head
    has its coarser one)."""
    heads = space.searchable
    if len(heads) > MAX_ENUMERATED_HEADS:
        raise ValueError(f"{len(heads)} searchable heads: more than the {MAX_ENUMERATED_HEADS} enumerated")
    every = [chosen for k in range(len(heads) + 1) for chosen in combinations(heads, k)]
    return [c for c in every if not contiguous or contiguous_heads(space, c) == c]


def select_heads(session: Session, network: MostNet, gates: Gates, table: CostTable | None = None,
                 latency_target: float | None = None) -> Selection:
    """The search's pick under its configuration's `select`, from its trained `network` and `gates`."""
    c, space = session.config, session.space
    if c.select == "gates":
        probabilities = gates.probabilities()
        return Selection(derive_architecture(space, probabilities, c.threshold, c.keeps_contiguous), probabilities)
    measure = lambda choices: composite_scores(network, space, session.validation, session.device,  # noqa: E731
                                               choices, contiguous=c.contiguous, batch_size=c.batch_size,
                                               world=session.world)
    heads = space.searchable
    if c.select == "knockout":
        everything = dict.fromkeys(heads, 1.0)
        whole, *without = measure([everything] + [dict(everything, **{h: 0.0}) for h in heads])
        scores = {h: whole - value for h, value in zip(heads, without)}
        kept = [h for h in heads if scores[h] > c.min_gain]
        return Selection(with_fixed_heads(space, contiguous_heads(space, kept) if c.keeps_contiguous else kept), scores)
    chosen = subnetworks(space, c.keeps_contiguous)
    values = measure([{h: float(h in heads_of) for h in heads} for heads_of in chosen])
    frame = pd.DataFrame({"heads": [",".join(s) for s in chosen], "kept": [len(s) for s in chosen],
                          "delta_mtl_val": values})
    allowed = np.ones(len(chosen), bool)
    if table is not None:
        frame["predicted_latency_ms"] = [table.predicted(with_fixed_heads(space, s)) for s in chosen]
        if latency_target is not None:
            allowed = frame["predicted_latency_ms"].to_numpy() <= latency_target
            allowed[0] |= not allowed.any()  # nothing fits: the smallest network
    best = fewest_heads_within(values, frame["predicted_latency_ms"] if table is not None else frame["kept"],
                               c.min_gain, allowed)
    return Selection(with_fixed_heads(space, chosen[best]), marginal_values(chosen, values, heads), frame)


def fewest_heads_within(values: Sequence[float], cost: Sequence[float], min_gain: float,
                        allowed: Sequence[bool] | None = None) -> int:
    """Which choice oneshot keeps: of the `allowed` ones within `min_gain` of the best allowed value, the one of
    least `cost` (heads kept, or predicted latency), the better on a tie; its index."""
    values, cost = np.asarray(values, dtype=float), np.asarray(cost, dtype=float)
    allowed = np.ones(len(values), bool) if allowed is None else np.asarray(allowed, bool)
    values_allowed = np.where(allowed, values, -np.inf)
    near = np.flatnonzero(values_allowed >= values_allowed.max() - min_gain)
    return int(min(near, key=lambda i: (cost[i], -values[i])))
