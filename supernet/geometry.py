"""Coordinates, warping and the per-kind upsampling operator u_i.

Convention (used by the data format too): continuous pixel coordinates, pixel (row i, column j) has its centre
at (x, y) = (j + 0.5, i + 0.5) and the image spans [0, W] × [0, H]. Halving the resolution halves every
coordinate exactly, so flows and corner offsets scale by exactly 2 per scale.
"""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch
import torch.nn.functional as F

F_ = TypeVar("F_", bound=Callable)


def in_fp32(geometry: F_) -> F_:
    """Run `geometry` in fp32 when called under autocast (mixed-precision training): sampling positions and the
    homography's determinant need fp32's precision and range. Outside autocast (fp32 training, export) it runs as
    written, so an exported graph is unchanged."""
    @functools.wraps(geometry)
    def outside_autocast(*args):
        device = next(a.device.type for a in args if torch.is_tensor(a))
        if not torch.is_autocast_enabled(device):
            return geometry(*args)
        with torch.autocast(device, enabled=False):
            return geometry(*(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args))
    return outside_autocast  # type: ignore[return-value]


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


@in_fp32
def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x (B, C, h, w) at q + flow(q) for every pixel centre q; flow (B, 2, h, w) in pixels."""
    h, w = x.shape[-2:]
    pos = pixel_centres(h, w, x.device, flow.dtype) + flow  # (B, 2, h, w)
    size = torch.tensor([w, h], device=x.device, dtype=pos.dtype).view(1, 2, 1, 1)
    grid = (2.0 * pos / size - 1.0).permute(0, 2, 3, 1)  # (B, h, w, 2) in [-1, 1]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def homography_from_offsets(offsets: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 3, 3) homographies mapping each image corner c_k to c_k + offsets[:, k] (h33 = 1).

    Closed form (Heckbert's square-to-quadrilateral mapping composed with the image-to-unit-square scaling):
    no linear solve, so it exports to ONNX and TensorRT.
    """
    quad = image_corners(h, w, offsets.device, offsets.dtype) + offsets  # (B, 4, 2): TL, TR, BR, BL
    x0, x1, x2, x3 = quad[..., 0].unbind(-1)
    y0, y1, y2, y3 = quad[..., 1].unbind(-1)
    dx1, dx2, dx3 = x1 - x2, x3 - x2, x0 - x1 + x2 - x3
    dy1, dy2, dy3 = y1 - y2, y3 - y2, y0 - y1 + y2 - y3
    det = dx1 * dy2 - dx2 * dy1
    g = (dx3 * dy2 - dx2 * dy3) / det
    k = (dx1 * dy3 - dx3 * dy1) / det
    square_to_quad = torch.stack((x1 - x0 + g * x1, x3 - x0 + k * x3, x0,
                                  y1 - y0 + g * y1, y3 - y0 + k * y3, y0,
                                  g, k, torch.ones_like(g)), dim=-1).view(-1, 3, 3)
    image_to_square = torch.diag(torch.tensor([1.0 / w, 1.0 / h, 1.0], device=offsets.device, dtype=offsets.dtype))
    return square_to_quad @ image_to_square


def adjugate3(m: torch.Tensor) -> torch.Tensor:
    """Adjugate of (…, 3, 3) matrices: the inverse up to scale, which is all a homography needs."""
    a, b, c, d, e, f, g, h, i = m.flatten(-2).unbind(-1)
    return torch.stack((e * i - f * h, c * h - b * i, b * f - c * e,
                        f * g - d * i, a * i - c * g, c * d - a * f,
                        d * h - e * g, b * g - a * h, a * e - b * d), dim=-1).view(m.shape)


def flow_from_homography(hom: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Dense backward flow (B, 2, h, w) of a homography mapping frame t-1 to t: flow(q) = H⁻¹q − q."""
    q = pixel_centres(h, w, hom.device, hom.dtype).reshape(2, -1)  # (2, h·w)
    q_h = torch.cat((q, torch.ones_like(q[:1])))  # (3, h·w)
    p = adjugate3(hom) @ q_h  # (B, 3, h·w), H⁻¹q up to scale
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


@in_fp32
def motion_to_flow(kind: str, motion: torch.Tensor, factor: int, h: int, w: int) -> torch.Tensor:
    """A coarser motion estimate (flow or corner offsets) as a dense flow at an h×w scale `factor` times finer.

    The homography geometry runs in fp32 whatever the network's precision: the square-to-quad determinant is
    about −w·h, which overflows fp16 above ~256×256 (the perspective terms would silently become 0)."""
    if kind == "flow":
        return rescale_output("flow", motion, factor)
    offsets = (motion * factor).float()
    return flow_from_homography(homography_from_offsets(offsets, h, w), h, w).to(motion.dtype)
