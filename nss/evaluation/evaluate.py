"""Evaluation: every metric of every head on a split, at full resolution, next to the trivial predictor."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from search_spaces import SearchSpace, TaskSpec, parse_head
from supernet import MostNet

from ..model.outputs import to_full_resolution
from ..model.step import batch_to
from . import metrics

METRICS: dict[str, Callable[..., torch.Tensor]] = {
    "psnr": metrics.psnr, "ssim": metrics.ssim, "epe": metrics.epe, "mace": metrics.mace}


def as_prediction(kind: str, output: torch.Tensor) -> torch.Tensor:
    """What the metrics compare: images clipped to [0, 1], mask probabilities, flows and offsets as they are."""
    if kind == "image":
        return output.clamp(0, 1)
    if kind == "mask":
        return torch.sigmoid(output)
    return output


def trivial_prediction(kind: str, batch: dict) -> torch.Tensor:
    """The BASELINE rows of the papers: the input frame, an all-foreground mask, zero flow, the identity."""
    if kind == "image":
        return batch["current"]
    return torch.ones_like(batch["mask"]) if kind == "mask" else torch.zeros_like(batch[kind])


class Ranks(Protocol):
    """The ranks of a data-parallel run (nss.training.distributed.World): each evaluates its share of a split."""

    rank: int
    size: int

    def gather(self, value: Any) -> list[Any]: ...


def _accumulate(sums: dict[tuple, list[float]], key: tuple, num: float, den: float) -> None:
    acc = sums.setdefault(key, [0.0, 0.0])
    acc[0] += num
    acc[1] += den


class MetricSums:
    """Numerator and denominator per key; IoU adds pixel counts, the others per-sample means (mean over frames)."""

    def __init__(self):
        self.sums: dict[tuple, list[float]] = {}

    def add(self, key: tuple, metric: str, pred: torch.Tensor, target: torch.Tensor,
            weight: torch.Tensor | None) -> None:
        if metric == "iou":
            num, den = (v.item() for v in metrics.iou_counts(pred, target, weight))
        else:  # per-pixel weights exist for masks and flows only, whose metrics take them
            extra = {} if weight is None else {"weight": weight}
            num, den = METRICS[metric](pred, target, **extra).item() * len(pred), len(pred)
        _accumulate(self.sums, key + (metric,), num, den)

    def values(self, world: Ranks | None = None) -> dict[tuple, float]:
        """Numerator ÷ denominator per key; with `world`, of the sums added over its ranks."""
        sums = self.sums
        if world is not None and world.size > 1:
            sums = {}
            for part in world.gather(self.sums):
                for key, (num, den) in part.items():
                    _accumulate(sums, key, num, den)
        return {key: (num / den if den else float("nan")) for key, (num, den) in sums.items()}


def labelled_tasks(space: SearchSpace, batch: dict) -> Iterator[tuple[TaskSpec, torch.Tensor, torch.Tensor,
                                                                         torch.Tensor | None]]:
    """Each task with labelled samples in `batch`: (task, which samples (B,) bool, their targets, their per-pixel
    weights or None)."""
    for task in space.tasks:
        valid = batch["valid"][task.kind]
        if valid.any():
            weight = batch["weight"][task.kind][valid] if task.kind in batch.get("weight", {}) else None
            yield task, valid, batch[task.kind][valid], weight


def outputs_on(network: MostNet, space: SearchSpace, data: Dataset, device: torch.device,
               batch_size: int, world: Ranks | None = None) -> Iterator[tuple[dict, dict[str, torch.Tensor]]]:
    """Each batch of `data` (with `world`: of this rank's share, every `size`-th sample) on the device with the
    network's outputs at full resolution, the network in eval mode meanwhile (call under torch.no_grad)."""
    if world is not None and world.size > 1:
        data = Subset(data, range(world.rank, len(data), world.size))
    was_training = network.training
    network.eval()
    try:
        for batch in DataLoader(data, batch_size=batch_size):
            batch = batch_to(batch, device, dtype=next(network.parameters()).dtype)
            yield batch, to_full_resolution(space, network(batch["previous"], batch["current"]))
    finally:
        network.train(was_training)


@torch.no_grad()
def evaluate(network: MostNet, space: SearchSpace, data: Dataset, device: torch.device,
             batch_size: int = 4, world: Ranks | None = None) -> pd.DataFrame:
    """Long-form metrics (model, head, task, scale, metric, value) of every head of `network` and of the
    trivial predictor (model "baseline"), over the labelled samples of `data` (`world`: shared by its ranks)."""
    sums = MetricSums()
    for batch, full in outputs_on(network, space, data, device, batch_size, world):
        for task, valid, target, weight in labelled_tasks(space, batch):
            for metric in task.metrics:
                baseline = trivial_prediction(task.kind, batch)[valid]
                sums.add(("baseline", "baseline", task.name, 1), metric.name, baseline, target, weight)
                for head in (h for h in full if parse_head(h)[0] == task.name):
                    sums.add(("network", head, task.name, parse_head(head)[1]), metric.name,
                             as_prediction(task.kind, full[head])[valid], target, weight)
    columns = ["model", "head", "task", "scale", "metric", "value"]
    return pd.DataFrame([key + (value,) for key, value in sums.values(world).items()], columns=columns)


def finest_per_task(table: pd.DataFrame, model: str = "network") -> dict[str, dict[str, float]]:
    """{task: {metric: value}} of each task's finest head: what the network delivers for that task."""
    rows = table[table["model"] == model]
    finest = rows[rows["scale"] == rows.groupby("task")["scale"].transform("min")]
    return {task: dict(zip(group["metric"], group["value"])) for task, group in finest.groupby("task")}
