"""Procedural video clips with exact ground truth for restoration, segmentation, flow and homography.

A clip is a textured plane seen by a camera moving with a homography H_t per frame, with a few large textured
ellipses sliding over the plane. Frame t at pixel centre q shows the plane point p = P_t⁻¹q, so everything
is known in closed form: the backward flow is P_(t-1)p − q on the plane and P_(t-1)(p − v_k) − q on object k,
and the homography of the dominant plane from frame t-1 to t is H_t = P_t P_(t-1)⁻¹.

Two scenes (`SCENES`) ask for different scales, so that which heads a network needs is not always the same:
- "textured" (the default): restoration needs the finest scale (fine texture, noise, blur), segmentation a middle
  one (large smooth shapes), motion is smooth and global (the coarsest suffices);
- "thin-fast": smooth textures (half resolution restores them), thin bars 2–5 px wide for segmentation, each
  moving fast (2–5 px a frame) against a nearly still camera: a ¼-resolution flow cannot represent a bar's motion.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class Scene:
    """What a scene's clips hold: fine-texture amplitude, the objects' shape and speed, the camera's motion."""

    detail: float  # amplitude of the fine (3–5 px) texture, times SyntheticSpec.detail
    objects: tuple[int, int]  # how many (low, high exclusive)
    major: tuple[float, float]  # semi-axis, as a share of the frame's smaller side
    minor: tuple[float, float] | None  # semi-axis in pixels (thin objects); None: as `major`
    speed: tuple[float, float]  # pixels a frame, in a uniform direction
    camera: float  # scale of the camera's rotation, zoom and shift


SCENES = {"textured": Scene(1.0, (1, 4), (0.15, 0.3), None, (0.0, 0.5), 1.0),
          "thin-fast": Scene(0.0, (2, 5), (0.25, 0.45), (1.0, 2.5), (2.0, 5.0), 0.3)}


@dataclass(frozen=True)
class SyntheticSpec:
    clips: int = 24
    frames: int = 8
    height: int = 64
    width: int = 64
    seed: int = 0
    detail: float = 1.0  # amplitude of the fine (3–5 px) texture; 0 gives band-limited frames
    eval_clips: int | None = None  # validation and test clips each; None: a quarter of `clips`, at least 2
    scene: str = "textured"  # one of SCENES

    def __post_init__(self) -> None:
        if self.scene not in SCENES:
            raise ValueError(f"unknown scene {self.scene!r}: choose one of {', '.join(SCENES)}")

    def clips_in(self, split: str) -> int:
        # a clip's content depends on (seed, split, index) alone: more eval clips extend the split, never redraw it
        return self.clips if split == "train" else self.eval_clips or max(2, self.clips // 4)


@dataclass(frozen=True)
class _Texture:
    """Sum of oriented sinusoids per colour channel around a base colour."""

    base: np.ndarray  # (3,)
    freqs: np.ndarray  # (K, 2) cycles per pixel
    phases: np.ndarray  # (K,)
    amps: np.ndarray  # (K, 3)

    @staticmethod
    def random(rng: np.random.Generator, base: np.ndarray, fine: float) -> "_Texture":
        # Half the components are coarse shading (periods 16–48 px), half fine detail with periods of 3–5 px,
        # which half resolution cannot represent (its Nyquist period is 4 px): only scale 1 can restore it.
        k = 12
        periods = np.concatenate((rng.uniform(16, 48, k // 2), rng.uniform(3, 5, k // 2)))
        angles = rng.uniform(0, np.pi, k)
        freqs = np.stack((np.cos(angles), np.sin(angles)), axis=1) / periods[:, None]
        amps = np.concatenate((rng.uniform(0.02, 0.06, (k // 2, 3)), rng.uniform(0.5, 1.0, (k // 2, 3)) * fine))
        return _Texture(base, freqs, rng.uniform(0, 2 * np.pi, k), amps)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Colour (…, 3) at plane points (x, y)."""
        arg = 2 * np.pi * (x[..., None] * self.freqs[:, 0] + y[..., None] * self.freqs[:, 1]) + self.phases
        return np.clip(self.base + np.sin(arg) @ self.amps, 0.0, 1.0)


def _camera_step(rng: np.random.Generator, h: int, w: int, scale: float = 1.0) -> np.ndarray:
    """A small homography (rotation, zoom, shift, slight perspective) about the image centre; `scale` shrinks it."""
    angle = np.deg2rad(rng.uniform(-2.0, 2.0) * scale)
    zoom = rng.uniform(1 - 0.02 * scale, 1 + 0.02 * scale)
    shift = rng.uniform(-2.5, 2.5, 2) * scale
    persp = rng.uniform(-3e-4, 3e-4, 2) * scale
    c, s = np.cos(angle) * zoom, np.sin(angle) * zoom
    centre = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]])
    move = np.array([[c, -s, shift[0]], [s, c, shift[1]], [persp[0] / w * 64, persp[1] / h * 64, 1]])
    return centre @ move @ np.linalg.inv(centre)


def _apply(hom: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = hom[2, 0] * x + hom[2, 1] * y + hom[2, 2]
    return (hom[0, 0] * x + hom[0, 1] * y + hom[0, 2]) / d, (hom[1, 0] * x + hom[1, 1] * y + hom[1, 2]) / d


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(np.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(img, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(kernel[i] * padded[i:i + img.shape[0]] for i in range(len(kernel)))
    return sum(kernel[i] * rows[:, i:i + img.shape[1]] for i in range(len(kernel)))


def render_clip(spec: SyntheticSpec, split: str, clip: int) -> dict[str, np.ndarray]:
    """One clip with ground truth.

    Returns clean (T, H, W, 3), degraded (T, H, W, 3) in [0, 1]; mask (T, H, W) bool; layer (T, H, W) int
    (0 = background plane, k = object k); flow (T, H, W, 2) backward flow from frame t to t-1 (zero at t=0);
    homography (T, 3, 3) mapping frame t-1 to t (identity at t=0).
    """
    rng = np.random.default_rng([spec.seed, SPLITS[split], clip])
    h, w, frames = spec.height, spec.width, spec.frames
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")

    scene = SCENES[spec.scene]
    detail = scene.detail * spec.detail
    background = _Texture.random(rng, rng.uniform(0.25, 0.5, 3), fine=0.06 * detail)
    n_objects = int(rng.integers(*scene.objects))
    objects = []
    for _ in range(n_objects):
        texture = _Texture.random(rng, rng.uniform(0.6, 0.85, 3), fine=0.04 * detail)
        centre = rng.uniform(0.2, 0.8, 2) * (w, h)
        if scene.minor is None:
            axes = rng.uniform(*scene.major, 2) * min(h, w)
        else:
            axes = np.array([rng.uniform(*scene.major) * min(h, w), rng.uniform(*scene.minor)])
        angle = rng.uniform(0, np.pi)
        if scene.speed[0] == 0:  # the textured scene's objects drift by up to half a pixel along each axis
            velocity = rng.uniform(-scene.speed[1], scene.speed[1], 2)
        else:
            heading = rng.uniform(0, 2 * np.pi)
            velocity = rng.uniform(*scene.speed) * np.array([np.cos(heading), np.sin(heading)])
        objects.append({"texture": texture, "centre": centre, "axes": axes, "angle": angle, "velocity": velocity})
    steps = [np.eye(3)] + [_camera_step(rng, h, w, scene.camera) for _ in range(frames - 1)]

    clean = np.empty((frames, h, w, 3), np.float32)
    layer = np.zeros((frames, h, w), np.int64)
    flow = np.zeros((frames, h, w, 2), np.float32)
    image_to_plane = [np.eye(3)]  # P_t⁻¹; the plane's coordinates are those of frame 0
    for t in range(1, frames):
        image_to_plane.append(image_to_plane[-1] @ np.linalg.inv(steps[t]))
    for t in range(frames):
        px, py = _apply(image_to_plane[t], xs, ys)  # the plane point every pixel of frame t shows
        clean[t] = background(px, py)
        source = (px, py)  # where that point is on the plane at t-1 (objects move on it by v_k per frame)
        for k, obj in enumerate(objects, start=1):
            cx, cy = obj["centre"] + obj["velocity"] * t
            dx, dy = px - cx, py - cy
            ca, sa = np.cos(obj["angle"]), np.sin(obj["angle"])
            u, v = ca * dx + sa * dy, -sa * dx + ca * dy
            inside = (u / obj["axes"][0]) ** 2 + (v / obj["axes"][1]) ** 2 <= 1.0
            clean[t][inside] = obj["texture"](dx, dy)[inside]
            layer[t][inside] = k
            source = (np.where(inside, px - obj["velocity"][0], source[0]),
                      np.where(inside, py - obj["velocity"][1], source[1]))
        if t:
            sx, sy = _apply(np.linalg.inv(image_to_plane[t - 1]), *source)  # P_(t-1): plane → frame t-1
            flow[t] = np.stack((sx - xs, sy - ys), axis=-1)
    return {"clean": clean, "degraded": _degrade(rng, clean), "mask": layer > 0, "layer": layer,
            "flow": flow, "homography": np.stack(steps).astype(np.float64)}


def _degrade(rng: np.random.Generator, clean: np.ndarray) -> np.ndarray:
    """Colour/illumination shift with flicker, blur, then signal-dependent (Poisson-Gaussian) noise."""
    frames, h, w, _ = clean.shape
    gain = rng.uniform(0.55, 0.95, 3)
    offset = rng.uniform(-0.05, 0.05, 3)
    ys, xs = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    centre = rng.uniform(-0.5, 0.5, 2)
    vignette = 1.0 - rng.uniform(0.1, 0.35) * ((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / 2
    sigma = rng.uniform(0.6, 1.4)
    shot, read = rng.uniform(0.003, 0.015), rng.uniform(1e-4, 8e-4)
    degraded = np.empty_like(clean)
    for t in range(frames):
        flicker = rng.uniform(0.95, 1.05)
        shifted = np.clip(clean[t] * gain * flicker * vignette[..., None] + offset, 0, 1)
        blurred = _gaussian_blur(shifted, sigma)
        noisy = blurred + np.sqrt(shot * blurred + read) * rng.standard_normal(blurred.shape)
        degraded[t] = np.clip(noisy, 0, 1)
    return degraded


@lru_cache(maxsize=256)
def cached_clip(spec: SyntheticSpec, split: str, clip: int) -> dict[str, np.ndarray]:
    return render_clip(spec, split, clip)
