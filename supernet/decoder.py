"""Per-scale shared decoder backbones g^s, coarse to fine."""
from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import conv3x3, res_blocks


class DecoderStage(nn.Module):
    """Coarsest scale: residual blocks on the aligned features. Finer scales: aligned features ‖ transposed-conv
    upsampled coarser backbone → 3×3 conv halving the channels → residual blocks."""

    def __init__(self, channels: int, coarser_channels: int | None, blocks: int):
        super().__init__()
        self.up = None
        if coarser_channels is not None:
            self.up = nn.ConvTranspose2d(coarser_channels, channels, 4, stride=2, padding=1)
            self.reduce = nn.Sequential(conv3x3(2 * channels, channels), nn.ReLU(inplace=True))
        self.blocks = res_blocks(channels, blocks)

    def forward(self, aligned: torch.Tensor, coarser: torch.Tensor | None) -> torch.Tensor:
        x = aligned
        if self.up is not None:
            x = self.reduce(torch.cat((aligned, self.up(coarser)), dim=1))
        return self.blocks(x)
