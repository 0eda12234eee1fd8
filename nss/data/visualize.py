"""Pictures of outputs: flow in the Middlebury colour coding (Baker et al., "A Database and Evaluation Methodology
for Optical Flow"), masks laid over frames, and frames side by side."""
from __future__ import annotations

import numpy as np

# The colour wheel's segments between its six primary and secondary hues, and how many steps each takes:
# red → yellow → green → cyan → blue → magenta → red (the published 55-colour wheel).
WHEEL_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def colour_wheel() -> np.ndarray:
    """(55, 3) float colours in [0, 255]: each segment ramps one channel while the others hold."""
    ramps = {"RY": lambda t: (255, 255 * t, 0), "YG": lambda t: (255 - 255 * t, 255, 0),
             "GC": lambda t: (0, 255, 255 * t), "CB": lambda t: (0, 255 - 255 * t, 255),
             "BM": lambda t: (255 * t, 0, 255), "MR": lambda t: (255, 0, 255 - 255 * t)}
    return np.array([ramps[name](np.floor(255 * i / n) / 255) for name, n in WHEEL_SEGMENTS for i in range(n)],
                    np.float64)


def flow_to_colour(flow: np.ndarray, max_radius: float | None = None) -> np.ndarray:
    """(H, W, 2) flow → (H, W, 3) uint8 RGB: the hue is the direction (flow to the right, +x, is red), the
    saturation the length relative to `max_radius` (default: the largest in the field); zero flow is white."""
    wheel = colour_wheel()
    u, v = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    radius = np.sqrt(u ** 2 + v ** 2)
    scale = max_radius if max_radius is not None else max(float(radius.max(initial=0.0)), 1e-9)
    u, v, radius = u / scale, v / scale, radius / scale
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    position = (angle + 1) / 2 * (len(wheel) - 1)
    low = np.floor(position).astype(int)
    high = (low + 1) % len(wheel)
    weight = (position - low)[..., None]
    colour = ((1 - weight) * wheel[low] + weight * wheel[high]) / 255
    # short vectors fade to white; vectors longer than max_radius are darkened instead
    colour = np.where(radius[..., None] <= 1, 1 - radius[..., None] * (1 - colour), 0.75 * colour)
    return np.round(255 * colour).astype(np.uint8)


def overlay_mask(frame: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (255, 64, 32),
                 opacity: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 frame with the foreground of a (H, W) probability mask tinted."""
    tint = np.asarray(colour, np.float32)
    alpha = opacity * (mask >= 0.5)[..., None]
    return np.round(frame * (1 - alpha) + tint * alpha).astype(np.uint8)


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 panels in a row, cropped to even sides (what H.264 in yuv420p needs)."""
    row = np.concatenate(panels, axis=1)
    return row[: row.shape[0] // 2 * 2, : row.shape[1] // 2 * 2]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] → uint8."""
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
