"""A head's marginal value over a set of measured architectures: the mean value of those that keep it minus that
of those that do not. The ground truth's measure of what a head is worth (`nss rank` correlates a search's per-head
scores with it), and a one-shot search's score of a head over its sub-networks."""
from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd


def marginal_values(choices: Sequence[Collection[str]], values: Sequence[float],
                    heads: Sequence[str]) -> dict[str, float]:
    """Per head of `heads`: mean of `values` where the choice keeps it minus mean where it does not (nan values
    left out; nan when every choice keeps it, or none)."""
    values = pd.Series(np.asarray(values, dtype=float))
    marginal = {}
    for head in heads:
        has = np.array([head in choice for choice in choices], dtype=bool)
        marginal[head] = float(values[has].mean() - values[~has].mean()) if has.any() and (~has).any() \
            else float("nan")
    return marginal
