"""The folder format for real data (DESIGN §8): reading with sparse labels, writing, and checking.

    DATA/meta.json                          {"tasks": [...], "frame_size": [H, W], "splits": {split: [clip, ...]}}
    DATA/clips/<clip>/input/NNNNNN.png      degraded frames
    DATA/clips/<clip>/target/NNNNNN.png     clean frames (restoration)
    DATA/clips/<clip>/mask/NNNNNN.png       masks, may be sparse (segmentation)
    DATA/clips/<clip>/flow/NNNNNN.npy       float32 H×W×2 backward flow: frame N at (x, y) shows what N-1 shows
                                            at (x+dx, y+dy)
    DATA/clips/<clip>/homography/NNNNNN.txt 3×3 matrix mapping frame N-1 to N

Coordinates are continuous pixel coordinates: pixel (row i, column j) has its centre at (j + 0.5, i + 0.5).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from search_spaces import read_json

from ..errors import DataError
from .samples import KIND_OF_TASK, LABEL_DIRS, make_sample

SUFFIX = {"image": ".png", "mask": ".png", "flow": ".npy", "homography": ".txt"}


# -- reading one file (every error names the file) -----------------------------------------------------------
def _check_size(path: Path, shape: tuple[int, ...], size: tuple[int, int]) -> None:
    if tuple(shape[:2]) != tuple(size):
        raise DataError(f"{path}: size {shape[1]}x{shape[0]} does not match the frame size {size[1]}x{size[0]}")


def read_image(path: Path, size: tuple[int, int], mode: str = "RGB") -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] (mode "L": (H, W))."""
    try:
        with Image.open(path) as img:
            img.load()
            bits = 16 if img.mode.startswith("I;16") else 8
            array = np.asarray(img if bits == 16 and mode == "L" else img.convert(mode), np.float32)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: corrupt or unreadable image ({type(err).__name__})") from None
    _check_size(path, array.shape, size)
    return array / (65535.0 if bits == 16 else 255.0)


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    return (read_image(path, size, "L") > 0.5).astype(np.float32)


def read_flow(path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        flow = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: corrupt or unreadable .npy ({err})") from None
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise DataError(f"{path}: flow must be H×W×2, got shape {flow.shape}")
    _check_size(path, flow.shape, size)
    return flow.astype(np.float32)


def read_homography(path: Path) -> np.ndarray:
    try:
        hom = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except ValueError as err:
        raise DataError(f"{path}: not a 3×3 matrix of numbers ({err})") from None
    if hom.shape != (3, 3):
        raise DataError(f"{path}: homography must be 3×3, got shape {hom.shape}")
    if not np.isfinite(hom).all() or abs(np.linalg.det(hom)) < 1e-12:
        raise DataError(f"{path}: homography is not finite or not invertible")
    return hom


def read_label(kind: str, path: Path, size: tuple[int, int]) -> np.ndarray:
    if kind == "image":
        return read_image(path, size)
    if kind == "mask":
        return read_mask(path, size)
    if kind == "flow":
        return read_flow(path, size)
    return read_homography(path)


# -- meta.json -----------------------------------------------------------------------------------------------
def read_meta(root: Path) -> dict:
    path = root / "meta.json"
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    meta = read_json(path, DataError)
    for key in ("tasks", "frame_size", "splits"):
        if key not in meta:
            raise DataError(f"{path}: missing key {key!r}")
    unknown = [t for t in meta["tasks"] if t not in KIND_OF_TASK]
    if unknown:
        raise DataError(f"{path}: unknown tasks {unknown}; allowed: {sorted(KIND_OF_TASK)}")
    size = meta["frame_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise DataError(f"{path}: frame_size must be [H, W] with positive integers, got {size!r}")
    if not isinstance(meta["splits"], dict) or not all(isinstance(v, list) for v in meta["splits"].values()):
        raise DataError(f"{path}: splits must map a split name to a list of clip ids")
    return meta


class FolderDataset(Dataset):
    """Pairs (frame t-1, frame t) of the clips of one split. Missing label files mean 'unlabelled' for that
    frame and task (sparse annotation): `valid[kind]` is False and that frame adds no loss for the task."""

    def __init__(self, root: str | Path, split: str = "train"):
        self.root = Path(root)
        meta = read_meta(self.root)
        if split not in meta["splits"]:
            raise DataError(f"{self.root / 'meta.json'}: no split {split!r} (has {sorted(meta['splits'])})")
        self.split = split
        self.frame_size = tuple(meta["frame_size"])
        self.kinds = tuple(KIND_OF_TASK[t] for t in meta["tasks"])
        self.pairs: list[tuple[Path, str, str]] = []
        for clip in meta["splits"][split]:
            frames = sorted(p.stem for p in (self.root / "clips" / str(clip) / "input").glob("*.png"))
            if len(frames) < 2:
                raise DataError(f"{self.root / 'clips' / str(clip) / 'input'}: needs at least 2 PNG frames, "
                                f"found {len(frames)}")
            self.pairs += [(self.root / "clips" / str(clip), a, b) for a, b in zip(frames, frames[1:])]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        clip, previous, current = self.pairs[index]
        labels = {}
        for kind in self.kinds:
            path = clip / LABEL_DIRS[kind] / (current + SUFFIX[kind])
            labels[kind] = read_label(kind, path, self.frame_size) if path.exists() else None
        return make_sample(read_image(clip / "input" / f"{previous}.png", self.frame_size),
                           read_image(clip / "input" / f"{current}.png", self.frame_size), labels, self.kinds)


def check_folder(root: str | Path) -> list[str]:
    """Every problem of a data folder, one line each naming the file; empty when the folder is usable."""
    root = Path(root)
    try:
        meta = read_meta(root)
    except DataError as err:
        return [str(err)]
    problems, size = [], tuple(meta["frame_size"])
    kinds = [KIND_OF_TASK[t] for t in meta["tasks"]]
    for split, clips in meta["splits"].items():
        if not clips:
            problems.append(f"{root / 'meta.json'}: split {split!r} has no clips")
        for clip in clips:
            clip_dir = root / "clips" / str(clip)
            frames = {p.stem for p in (clip_dir / "input").glob("*.png")}
            if len(frames) < 2:
                problems.append(f"{clip_dir / 'input'}: needs at least 2 PNG frames, found {len(frames)}")
            for name in sorted(frames):
                try:
                    read_image(clip_dir / "input" / f"{name}.png", size)
                except DataError as err:
                    problems.append(str(err))
            for kind in kinds:
                for path in sorted((clip_dir / LABEL_DIRS[kind]).glob("*")):
                    if path.suffix != SUFFIX[kind]:
                        problems.append(f"{path}: unexpected file (labels of this task are *{SUFFIX[kind]})")
                        continue
                    if path.stem not in frames:
                        problems.append(f"{path}: label without an input frame {path.stem}.png")
                    try:
                        label = read_label(kind, path, size)
                    except DataError as err:
                        problems.append(str(err))
                        continue
                    if not np.isfinite(label).all():
                        problems.append(f"{path}: contains NaN or Inf")
    return problems
