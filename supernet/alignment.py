"""Alignment of the previous frame's features to the current frame, fused by channel attention."""
from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import ChannelAttention
from .geometry import warp


class Alignment(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.attention = ChannelAttention(2 * channels)
        self.fuse = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, current: torch.Tensor, previous: torch.Tensor, flow: torch.Tensor | None) -> torch.Tensor:
        """current, previous: (B, c, h, w); flow (B, 2, h, w) warping previous onto current, None = identity."""
        aligned = previous if flow is None else warp(previous, flow)
        return self.fuse(self.attention(torch.cat((current, aligned), dim=1)))
