"""What each scale adds, visibly: a run's network on a few validation frames, every head's output (at full
resolution) next to the ground truth."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.data import default_collate

from nss.data import open_split
from nss.data.visualize import flow_to_colour
from nss.evaluation.evaluate import as_prediction
from nss.model.outputs import to_full_resolution
from nss.runs.trained import TrainedModel
from search_spaces import parse_head
from supernet import motion_to_flow

from .tables import run_label


def _as_flow(kind: str, value: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A motion output or label as a dense flow (2, H, W): a flow as it is, corner offsets as the homography's."""
    return value if kind == "flow" else motion_to_flow(kind, value[None].double(), 1, height, width)[0].float()


def _picture(kind: str, value: torch.Tensor, height: int, width: int, radius: float | None) -> np.ndarray:
    """One output or label (C, H, W) / (4, 2) as an image: frames as they are, masks in grey, flows (and the flow
    a homography implies) in the colour wheel at a shared radius."""
    if kind == "image":
        return value.clamp(0, 1).permute(1, 2, 0).numpy()
    if kind == "mask":
        return np.repeat(value[0].numpy()[..., None], 3, axis=-1)
    return flow_to_colour(_as_flow(kind, value, height, width).permute(1, 2, 0).numpy(), radius) / 255.0


def plot_outputs(run: str | Path, frames: int = 3) -> Figure:
    """Rows: (frame, task); columns: the input frame, the ground truth, then the task's heads coarse to fine."""
    model = TrainedModel.load(run, device="cpu")
    network, space, checkpoint = model.network, model.space, model.checkpoint
    data = open_split(model.config, "val")
    picked = np.linspace(0, len(data) - 1, min(frames, len(data))).round().astype(int)
    batch = default_collate([data[int(i)] for i in picked])
    with torch.no_grad():
        full = to_full_resolution(space, network(batch["previous"], batch["current"]))
    columns = 2 + max(len([h for h in full if parse_head(h)[0] == t.name]) for t in space.tasks)
    rows = [(i, task) for i in range(len(picked)) for task in space.tasks]
    height, width = batch["current"].shape[-2:]
    fig = Figure(figsize=(1.9 * columns, 1.9 * len(rows) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), columns))
    for (i, task), row in zip(rows, axes):
        heads = sorted((h for h in full if parse_head(h)[0] == task.name), key=lambda h: -parse_head(h)[1])
        truth = batch[task.kind][i]
        motion = task.kind in ("flow", "homography")
        flows = [_as_flow(task.kind, v, height, width) for v in [truth] + [full[h][i] for h in heads]] if motion else []
        radius = max(float(torch.linalg.vector_norm(f, dim=0).max()) for f in flows) if flows else None
        panels = [("input", batch["current"][i].permute(1, 2, 0).numpy()),
                  ("truth" if bool(batch["valid"][task.kind][i]) else "no label",
                   _picture(task.kind, truth, height, width, radius))]
        panels += [(h, _picture(task.kind, as_prediction(task.kind, full[h][i:i + 1])[0], height, width, radius))
                   for h in heads]
        for ax, (title, image) in zip(row, panels + [(None, None)] * (columns - len(panels))):
            ax.set_axis_off()
            if image is not None:
                ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
                ax.set_title(title, fontsize=8)
        row[0].text(-0.1, 0.5, f"frame {picked[i]}\n{task.name}", transform=row[0].transAxes, ha="right",
                    va="center", fontsize=8)
    fig.suptitle(f"{run_label(run)} ({checkpoint}) on validation frames: every head at full resolution")
    return fig
