"""Bringing frames and their labels to a size the network takes: scale to cover the size, keeping the aspect, then
crop the centre. Coordinates map exactly, x' = sx·x − cx (continuous pixel coordinates), so flows scale with the
frame and homographies are conjugated by the same map."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Fit:
    height: int  # source
    width: int
    out_height: int  # target
    out_width: int

    @property
    def scaled(self) -> tuple[int, int]:
        """(h, w) after scaling, before the crop: the smallest that covers the target, aspect kept."""
        scale = max(self.out_height / self.height, self.out_width / self.width)
        return max(self.out_height, round(self.height * scale)), max(self.out_width, round(self.width * scale))

    @property
    def crop(self) -> tuple[int, int]:
        """(top, left) of the centre crop."""
        h, w = self.scaled
        return (h - self.out_height) // 2, (w - self.out_width) // 2

    @property
    def is_identity(self) -> bool:
        return (self.height, self.width) == (self.out_height, self.out_width)

    def matrix(self) -> np.ndarray:
        """3×3 map of source to target pixel coordinates."""
        (h, w), (top, left) = self.scaled, self.crop
        return np.array([[w / self.width, 0, -left], [0, h / self.height, -top], [0, 0, 1.0]])

    def _resample(self, array: np.ndarray, resample: int) -> np.ndarray:
        """(H, W) or (H, W, C) float32, each channel resized and cropped."""
        if self.is_identity:
            return array.astype(np.float32)
        (h, w), (top, left) = self.scaled, self.crop
        channels = array[..., None] if array.ndim == 2 else array
        out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., c], np.float32), "F")
                                   .resize((w, h), resample), np.float32)
                        for c in range(channels.shape[-1])], axis=-1)
        out = out[top:top + self.out_height, left:left + self.out_width]
        return out[..., 0] if array.ndim == 2 else out

    def image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) in [0, 1]: area-averaged when shrinking, bilinear when growing."""
        shrinking = self.scaled[0] < self.height
        return np.clip(self._resample(image, Image.BOX if shrinking else Image.BILINEAR), 0, 1)

    def mask(self, foreground: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels stay labels (nearest neighbour), ignored pixels stay ignored."""
        return self._resample(foreground, Image.NEAREST), self._resample(weight, Image.NEAREST)

    def flow(self, flow: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest neighbour (a sparse flow's valid and invalid pixels are not mixed), vectors scaled per axis."""
        (h, w) = self.scaled
        scale = np.array([w / self.width, h / self.height], np.float32)
        return self._resample(flow, Image.NEAREST) * scale, self._resample(weight, Image.NEAREST)

    def homography(self, hom: np.ndarray) -> np.ndarray:
        """A homography between two source frames as one between the fitted frames: A H A⁻¹."""
        a = self.matrix()
        return a @ hom @ np.linalg.inv(a)


def fitting_size(height: int, width: int, divisor: int) -> tuple[int, int]:
    """The largest size of multiples of `divisor` a frame can be cropped to without scaling."""
    return max(divisor, height // divisor * divisor), max(divisor, width // divisor * divisor)
