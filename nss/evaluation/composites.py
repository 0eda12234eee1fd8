"""The supernet's gated composites measured on a split: the validation Δ_MTL of a choice of heads, read from one
forward pass per batch, however many choices are measured. What the search's `knockout` and `oneshot` selections
rank heads and sub-networks by (nss.training.selection)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import Dataset

from search_spaces import SearchSpace
from supernet import MostNet

from ..model.outputs import refinements
from ..scale_search.objective import composites
from .evaluate import MetricSums, Ranks, as_prediction, labelled_tasks, outputs_on, trivial_prediction
from .metrics import delta_mtl


@torch.no_grad()
def composite_scores(network: MostNet, space: SearchSpace, data: Dataset, device: torch.device,
                     choices: Sequence[dict[str, float]], *, contiguous: bool = False,
                     batch_size: int = 4, world: Ranks | None = None) -> list[float]:
    """Δ_MTL (%, against the trivial predictor) of the composite Õ of every choice (α per searchable head; 0/1 for
    a sub-network) over the labelled samples of `data`, in the order given (`world`: each rank measures its share
    of `data`, the sums are added)."""
    sums = MetricSums()
    for batch, full in outputs_on(network, space, data, device, batch_size, world):
        deltas = refinements(space, full)
        tasks = list(labelled_tasks(space, batch))
        for task, valid, target, weight in tasks:
            for metric in task.metrics:
                sums.add(("baseline", task.name), metric.name, trivial_prediction(task.kind, batch)[valid], target,
                         weight)
        for index, alphas in enumerate(choices):
            outputs = composites(space, full, deltas, alphas, contiguous)
            for task, valid, target, weight in tasks:
                prediction = as_prediction(task.kind, outputs[task.name])[valid]
                for metric in task.metrics:
                    sums.add((index, task.name), metric.name, prediction, target, weight)
    values = sums.values(world)

    def of(key) -> dict[str, dict[str, float]]:
        return {t.name: {m.name: values[(key, t.name, m.name)] for m in t.metrics}
                for t in space.tasks if (key, t.name, t.metrics[0].name) in values}

    baseline = of("baseline")
    return [delta_mtl(of(index), baseline, space.tasks) for index in range(len(choices))]
