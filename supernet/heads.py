"""Task heads: one small module per `task@scale`, refining the task's upsampled coarser output (bottom-up).

Every head adds a residual to a base: the coarser output brought to this scale where one exists, otherwise the
input frame (image tasks) or zero (masks, flows, corner offsets).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import conv3x3

OUT_CHANNELS = {"image": 3, "mask": 1, "flow": 2}


def _small_init(layer: nn.Module, gain: float = 0.1) -> nn.Module:
    # Motion residuals start near zero so that early warps are close to the identity.
    with torch.no_grad():
        layer.weight.mul_(gain)
        layer.bias.zero_()
    return layer


class DenseHead(nn.Module):
    """Image or mask output at the backbone's resolution: three 3×3 convs with ReLUs."""

    def __init__(self, kind: str, channels: int, refines: bool):
        super().__init__()
        out = OUT_CHANNELS[kind]
        self.kind = kind
        c_in = channels + (out if refines else 0) + (3 if kind == "image" else 0)
        self.body = nn.Sequential(conv3x3(c_in, channels), nn.ReLU(inplace=True), conv3x3(channels, channels),
                                  nn.ReLU(inplace=True), conv3x3(channels, out))

    def forward(self, g: torch.Tensor, coarser: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor:
        inputs = [g] + ([coarser] if coarser is not None else []) + ([image] if self.kind == "image" else [])
        if coarser is not None:
            base = coarser
        else:
            base = image if self.kind == "image" else torch.zeros_like(g[:, :1])
        return base + self.body(torch.cat(inputs, dim=1))


class FlowHead(nn.Module):
    """Residual flow estimated at ¼ of the scale's resolution, then bilinearly upsampled ×4 (in this scale's
    pixels, so the magnitude is unchanged). Output (B, 2, h, w)."""

    def __init__(self, channels: int, refines: bool):
        super().__init__()
        c_in = channels + (2 if refines else 0)
        self.body = nn.Sequential(conv3x3(c_in, channels, 2), nn.ReLU(inplace=True), conv3x3(channels, channels, 2),
                                  nn.ReLU(inplace=True), conv3x3(channels, channels), nn.ReLU(inplace=True),
                                  _small_init(conv3x3(channels, 2)))

    def forward(self, g: torch.Tensor, coarser: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor:
        x = g if coarser is None else torch.cat((g, coarser), dim=1)
        residual = F.interpolate(self.body(x), size=g.shape[-2:], mode="bilinear", align_corners=False)
        return residual if coarser is None else coarser + residual


class HomographyHead(nn.Module):
    """Regresses 4 corner offsets (B, 4, 2) in this scale's pixels; cascaded on the coarser estimate."""

    def __init__(self, channels: int, refines: bool):
        super().__init__()
        self.features = nn.Sequential(conv3x3(channels, channels), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(2), conv3x3(channels, 2 * channels), nn.BatchNorm2d(2 * channels),
                                      nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.regress = nn.Sequential(nn.Dropout(0.2), _small_init(nn.Linear(2 * channels, 8)))

    def forward(self, g: torch.Tensor, coarser: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor:
        residual = self.regress(self.features(g)).view(-1, 4, 2)
        return residual if coarser is None else coarser + residual


def make_head(kind: str, channels: int, refines: bool) -> nn.Module:
    if kind == "flow":
        return FlowHead(channels, refines)
    if kind == "homography":
        return HomographyHead(channels, refines)
    return DenseHead(kind, channels, refines)
