"""The training sample both data sources produce, keyed by task kind so any task name can use it."""
from __future__ import annotations

import numpy as np
import torch

# Task kind → sub-folder of a clip in the folder format, and the built-in task name that reads it.
LABEL_DIRS = {"image": "target", "mask": "mask", "flow": "flow", "homography": "homography"}
KIND_OF_TASK = {"restoration": "image", "segmentation": "mask", "flow": "flow", "homography": "homography"}


def corner_offsets(hom: np.ndarray, h: int, w: int) -> np.ndarray:
    """(4, 2) displacement of the image corners under a 3×3 homography (continuous pixel coordinates)."""
    corners = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    mapped = np.c_[corners, np.ones(4)] @ hom.T
    return (mapped[:, :2] / mapped[:, 2:] - corners).astype(np.float32)


# Kinds whose labels may leave pixels out (a palette mask's ignore index, KITTI flow's valid bit).
PIXEL_WEIGHTED = ("mask", "flow")


def make_sample(previous: np.ndarray, current: np.ndarray, labels: dict[str, np.ndarray | None],
                kinds: tuple[str, ...], weights: dict[str, np.ndarray | None] | None = None) -> dict:
    """previous/current (H, W, 3) float in [0, 1]; labels by kind in their file layout, None where unlabelled;
    per-pixel weights of mask and flow labels (H, W), None where every pixel is labelled.

    Returns tensors: previous/current (3, H, W); image (3, H, W); mask (1, H, W); flow (2, H, W);
    homography (4, 2) corner offsets; valid {kind: bool}; weight {mask, flow: (1, H, W)}.
    """
    h, w = current.shape[:2]
    empty = {"image": np.zeros((h, w, 3), np.float32), "mask": np.zeros((h, w), np.float32),
             "flow": np.zeros((h, w, 2), np.float32), "homography": np.eye(3)}
    sample = {"previous": _chw(previous), "current": _chw(current), "valid": {}, "weight": {}}
    for kind in kinds:
        value = labels.get(kind)
        sample["valid"][kind] = value is not None
        if kind in PIXEL_WEIGHTED:
            weight = (weights or {}).get(kind)
            weight = np.ones((h, w), np.float32) if weight is None else np.asarray(weight, np.float32)
            sample["weight"][kind] = torch.from_numpy(weight * (value is not None))[None]
        value = empty[kind] if value is None else value
        if kind == "homography":
            sample[kind] = torch.from_numpy(corner_offsets(value, h, w))
        elif kind == "mask":
            sample[kind] = torch.from_numpy(np.asarray(value, np.float32))[None]
        else:
            sample[kind] = _chw(value)
    return sample


def _chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array, np.float32).transpose(2, 0, 1)))
