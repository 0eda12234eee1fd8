"""Task heads: one module per `task@scale`, refining the task's upsampled coarser output (bottom-up).

Every head adds a residual to a base: the coarser output brought to this scale where one exists, otherwise the
input frame (image tasks) or zero (masks, flows, corner offsets). Widths are the paper network's (`paper`),
divided by the size preset.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .alignment import COST_CHANNELS
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

    def __init__(self, kind: str, channels: int, hidden: int, refines: bool):
        super().__init__()
        out = OUT_CHANNELS[kind]
        self.kind = kind
        c_in = channels + (out if refines else 0) + (3 if kind == "image" else 0)
        self.body = nn.Sequential(conv3x3(c_in, hidden), nn.ReLU(inplace=True), conv3x3(hidden, hidden),
                                  nn.ReLU(inplace=True), conv3x3(hidden, out))

    def forward(self, g: torch.Tensor, coarser: torch.Tensor | None, image: torch.Tensor,
                peers: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = [g] + ([coarser] if coarser is not None else []) + ([image] if self.kind == "image" else [])
        if coarser is not None:
            base = coarser
        else:
            base = image if self.kind == "image" else torch.zeros_like(g[:, :1])
        return base + self.body(torch.cat(inputs, dim=1))


class FlowHead(nn.Module):
    """MOST-NET+'s flow estimator: seven 3×3 convs, the first two with stride 2, predict a residual flow at ¼ of
    the scale's resolution, bilinearly upsampled ×4 (in this scale's pixels, so the magnitude is unchanged).
    Besides the backbone features (and the coarser flow) it reads the scale's cost volume of the current and
    warped previous features (`alignment.cost_volume`). Output (B, 2, h, w)."""

    def __init__(self, channels: int, widths: tuple[int, ...], refines: bool):
        super().__init__()
        layers, c_in = [], channels + COST_CHANNELS + (2 if refines else 0)
        for i, width in enumerate(widths):
            layers += [conv3x3(c_in, width, stride=2 if i < 2 else 1), nn.LeakyReLU(0.1, inplace=True)]
            c_in = width
        self.body = nn.Sequential(*layers, _small_init(conv3x3(c_in, 2)))

    def forward(self, g: torch.Tensor, coarser: torch.Tensor | None, image: torch.Tensor,
                peers: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([g, peers["cost"]] + ([] if coarser is None else [coarser]), dim=1)
        residual = F.interpolate(self.body(x), size=g.shape[-2:], mode="bilinear", align_corners=False)
        return residual if coarser is None else coarser + residual


class HomographyHead(nn.Module):
    """MOST-NET++'s homography estimator: 4 corner offsets (B, 4, 2) in this scale's pixels, cascaded on the
    coarser estimate.

    Motion-gated attention multiplies the backbone features by the segmentation at this scale (what moves with
    the homography); a 3×3 conv halves them and a second one extracts features of the restored output; the two
    streams, concatenated, go through conv-BN-ReLU-max-pool blocks, global average pooling, dropout and the
    linear regression of the 8 offsets. Without a mask or restoration task in the space, that input is left out.
    """

    def __init__(self, channels: int, blocks: tuple[int, ...], refines: bool, gated: bool, restored: bool,
                 dropout: float):
        super().__init__()
        self.gated = gated
        self.halve = conv3x3(channels, max(channels // 2, 1))
        self.restored = conv3x3(3, max(channels // 2, 1)) if restored else None
        c_in = self.halve.out_channels + (self.restored.out_channels if restored else 0)
        layers = []
        for width in blocks:
            layers += [conv3x3(c_in, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
            c_in = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.regress = nn.Sequential(nn.Dropout(dropout), _small_init(nn.Linear(c_in, 8)))

    def forward(self, g: torch.Tensor, coarser: torch.Tensor | None, image: torch.Tensor,
                peers: dict[str, torch.Tensor]) -> torch.Tensor:
        attended = g * torch.sigmoid(peers["mask"]) if self.gated else g  # mask logits (B, 1, h, w)
        streams = [self.halve(attended)] + ([self.restored(peers["image"])] if self.restored is not None else [])
        residual = self.regress(self.features(torch.cat(streams, dim=1))).view(-1, 4, 2)
        return residual if coarser is None else coarser + residual
