"""Training-time augmentation of a collated batch: flips that keep every label consistent, colour jitter.

Flips act on frames, masks and flows alike, and a flipped flow changes the sign of the flipped component. Corner
offsets (top-left, top-right, bottom-right, bottom-left) swap corners and change sign along the flipped axis.
Colour jitter touches the degraded inputs only: the network has to undo it, the clean targets do not change.
"""
from __future__ import annotations

import torch

SPATIAL = ("previous", "current", "image", "mask", "flow")
# Corner order after a flip: which original corner lands on each position.
CORNERS_AFTER_FLIP = {-1: [1, 0, 3, 2], -2: [3, 2, 1, 0]}  # dim -1 (x, horizontal), dim -2 (y, vertical)


def flip(batch: dict, which: torch.Tensor, dim: int) -> dict:
    """Flip the samples selected by `which` (B,) bool along `dim` (-1: left-right, -2: up-down)."""
    out = dict(batch)
    axis = 0 if dim == -1 else 1  # the (x, y) component that changes sign
    for key in SPATIAL:
        if key not in batch:
            continue
        flipped = batch[key].flip(dim)
        if key == "flow":
            flipped = flipped.clone()
            flipped[:, axis] = -flipped[:, axis]
        out[key] = torch.where(which.view(-1, 1, 1, 1), flipped, batch[key])
    if "homography" in batch:
        offsets = batch["homography"][:, CORNERS_AFTER_FLIP[dim]].clone()
        offsets[..., axis] = -offsets[..., axis]
        out["homography"] = torch.where(which.view(-1, 1, 1), offsets, batch["homography"])
    return out


def colour_jitter(batch: dict, generator: torch.Generator, strength: float = 0.1, rows: slice | None = None,
                  total: int | None = None) -> dict:
    """Per-sample brightness, contrast and per-channel gain on both input frames (the same for both); drawn for
    `total` samples of which `batch` is `rows` (default: all of them)."""
    b = batch["current"].shape[0]
    device = batch["current"].device
    rows, total = rows or slice(0, b), total or b

    def uniform(*shape):
        return (torch.rand(total, *shape, generator=generator)[rows] * 2 - 1).to(device) * strength

    brightness, contrast, gain = uniform(1, 1, 1), 1 + uniform(1, 1, 1), 1 + uniform(3, 1, 1)
    out = dict(batch)
    for key in ("previous", "current"):
        x = batch[key]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out[key] = ((x - mean) * contrast + mean + brightness).mul(gain).clamp(0, 1)
    return out


def augment(batch: dict, seed: int, step: int, rows: slice | None = None, global_batch: int | None = None) -> dict:
    """Random flips (p = 0.5 each) and colour jitter, a pure function of (seed, step) so resumed runs agree.
    `batch` may be `rows` of a global batch of `global_batch` samples (one rank's share): the draws are the global
    batch's, these rows kept, so that a sample is augmented alike on any number of ranks."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    b, device = batch["current"].shape[0], batch["current"].device
    rows, total = rows or slice(0, b), global_batch or b
    for dim in (-1, -2):
        batch = flip(batch, (torch.rand(total, generator=generator)[rows] < 0.5).to(device), dim)
    return colour_jitter(batch, generator, rows=rows, total=total)
