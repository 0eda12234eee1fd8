"""Feature extraction (MIMO-UNet style): deep + image-level features per scale, then cross-scale fusion."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import conv3x3, res_blocks


class ImageFeatures(nn.Module):
    """Shallow features of the input image downsampled to one scale."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv3x3(3, channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image)


class EncoderScale(nn.Module):
    """3×3 conv (stride 1 at scale 1, 2 below) ‖ image-level features → 1×1 merge → residual blocks."""

    def __init__(self, c_in: int, channels: int, stride: int, blocks: int):
        super().__init__()
        self.deep = nn.Sequential(conv3x3(c_in, channels, stride), nn.ReLU(inplace=True))
        self.image = ImageFeatures(channels)
        self.merge = nn.Conv2d(2 * channels, channels, 1)
        self.blocks = res_blocks(channels, blocks)

    def forward(self, previous: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.merge(torch.cat((self.deep(previous), self.image(image)), dim=1)))


class AsymmetricFeatureFusion(nn.Module):
    """Mix the features of every scale, resized to this one, into this scale's features."""

    def __init__(self, total_channels: int, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(total_channels, channels, 1), nn.ReLU(inplace=True),
                                  conv3x3(channels, channels))

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        resized = [f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
                   for f in features]
        return self.body(torch.cat(resized, dim=1))


class Encoder(nn.Module):
    """Frames (B, 3, H, W) → features per scale, [(B, c·2^(s-1), H/2^(s-1), W/2^(s-1)) for s = 1..S].

    Cross-scale fusion is built only for the scales in `fused_scales` (those a decoder stage reads).
    """

    def __init__(self, channels: list[int], blocks: int, fused_scales: list[int]):
        super().__init__()
        c_ins = [3] + channels[:-1]
        self.scales = nn.ModuleList(EncoderScale(c_in, c, 1 if s == 0 else 2, blocks)
                                    for s, (c_in, c) in enumerate(zip(c_ins, channels)))
        self.fusion = nn.ModuleDict({str(s): AsymmetricFeatureFusion(sum(channels), channels[s - 1])
                                     for s in fused_scales})

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        features, x, image = [], frames, frames
        for s, scale in enumerate(self.scales):
            if s > 0:
                image = F.avg_pool2d(image, 2)
            x = scale(x, image)
            features.append(x)
        fused = list(features)
        for key, fusion in self.fusion.items():
            s = int(key)
            fused[s - 1] = fusion(features, features[s - 1].shape[-2:])
        return fused
