"""Coordinates, warping and the per-kind upsampling operator u_i.

Convention (used by the data format too): continuous pixel coordinates, pixel (row i, column j) has its centre
at (x, y) = (j + 0.5, i + 0.5) and the image spans [0, W] × [0, H]. Halving the resolution halves every
coordinate exactly, so flows and corner offsets scale by exactly 2 per scale.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_centres(h: int, w: int, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(2, h, w) grid of (x, y) pixel-centre coordinates."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype) + 0.5,
                            torch.arange(w, device=device, dtype=dtype) + 0.5, indexing="ij")
    return torch.stack((xs, ys))


def image_corners(h: int, w: int, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(4, 2) corners (x, y) of an h×w image: top-left, top-right, bottom-right, bottom-left."""
    return torch.tensor([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]], device=device, dtype=dtype)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x (B, C, h, w) at q + flow(q) for every pixel centre q; flow (B, 2, h, w) in pixels."""
    h, w = x.shape[-2:]
    pos = pixel_centres(h, w, x.device, flow.dtype) + flow  # (B, 2, h, w)
    size = torch.tensor([w, h], device=x.device, dtype=pos.dtype).view(1, 2, 1, 1)
    grid = (2.0 * pos / size - 1.0).permute(0, 2, 3, 1)  # (B, h, w, 2) in [-1, 1]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def homography_from_offsets(offsets: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 3, 3) homographies mapping each image corner c_k to c_k + offsets[:, k] (DLT, h33 = 1)."""
    # Solve in coordinates normalised by the image size (well conditioned), then undo the normalisation.
    scale = torch.tensor([w, h], device=offsets.device, dtype=offsets.dtype)
    src = (image_corners(h, w, offsets.device, offsets.dtype) / scale).expand(offsets.shape[0], 4, 2)
    dst = src + offsets / scale
    x, y, u, v = src[..., 0], src[..., 1], dst[..., 0], dst[..., 1]  # (B, 4)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack((x, y, one, zero, zero, zero, -u * x, -u * y), dim=-1)  # (B, 4, 8)
    rows_v = torch.stack((zero, zero, zero, x, y, one, -v * x, -v * y), dim=-1)
    a = torch.cat((rows_u, rows_v), dim=1)  # (B, 8, 8)
    b = torch.cat((u, v), dim=1).unsqueeze(-1)  # (B, 8, 1)
    params = torch.linalg.solve(a, b).squeeze(-1)  # (B, 8)
    normalised = torch.cat((params, torch.ones_like(params[:, :1])), dim=1).view(-1, 3, 3)
    s = torch.diag(torch.cat((scale, scale.new_ones(1))))
    return s @ normalised @ torch.linalg.inv(s)


def flow_from_homography(hom: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Dense backward flow (B, 2, h, w) of a homography mapping frame t-1 to t: flow(q) = H⁻¹q − q."""
    q = pixel_centres(h, w, hom.device, hom.dtype).reshape(2, -1)  # (2, h·w)
    q_h = torch.cat((q, torch.ones_like(q[:1])))  # (3, h·w)
    p = torch.linalg.solve(hom, q_h.expand(hom.shape[0], 3, h * w))  # (B, 3, h·w)
    p = p[:, :2] / p[:, 2:]
    return (p - q).view(-1, 2, h, w)


def rescale_output(kind: str, x: torch.Tensor, factor: int) -> torch.Tensor:
    """The upsampling operator u_i: bring an output of one kind `factor` times up in resolution.

    Images and logits are resized bilinearly; flow is resized and its magnitude multiplied; corner offsets are
    only multiplied.
    """
    if factor == 1:
        return x
    if kind == "homography":
        return x * factor
    up = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    return up * factor if kind == "flow" else up


def motion_to_flow(kind: str, motion: torch.Tensor, factor: int, h: int, w: int) -> torch.Tensor:
    """A coarser motion estimate (flow or corner offsets) as a dense flow at an h×w scale `factor` times finer."""
    if kind == "flow":
        return rescale_output("flow", motion, factor)
    return flow_from_homography(homography_from_offsets(motion * factor, h, w), h, w)
