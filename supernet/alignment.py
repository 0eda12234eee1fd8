"""Alignment of the previous frame's features to the current frame: fused by channel attention for the decoder,
and compared pixel by pixel (a cost volume) for the flow heads."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import ChannelAttention

COST_RADIUS = 2  # displacements of up to ±2 pixels of the head's scale, beyond the coarser flow's warp
COST_CHANNELS = (2 * COST_RADIUS + 1) ** 2


class Alignment(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.attention = ChannelAttention(2 * channels)
        self.fuse = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, current: torch.Tensor, aligned: torch.Tensor) -> torch.Tensor:
        """current, aligned: (B, c, h, w), the previous frame's features warped onto the current ones."""
        return self.fuse(self.attention(torch.cat((current, aligned), dim=1)))


def cost_volume(current: torch.Tensor, aligned: torch.Tensor, radius: int = COST_RADIUS) -> torch.Tensor:
    """PWC-Net's local correlation: channel mean of current(q)·aligned(q + d) for every displacement d in
    [−radius, radius]², zero outside the frame. (B, c, h, w) × 2 → (B, (2·radius + 1)², h, w).

    Products of the two frames are what motion is read from; a stack of convolutions over their concatenation
    has to learn such products first, and on a short schedule it leaves the zero-motion plateau late and at a random
    step (measured in runs/reference-groundtruth/README.md)."""
    h, w = current.shape[-2:]
    padded = F.pad(aligned, (radius, radius, radius, radius))
    side = 2 * radius + 1
    return torch.cat([(current * padded[:, :, dy:dy + h, dx:dx + w]).mean(1, keepdim=True)
                      for dy in range(side) for dx in range(side)], dim=1)
