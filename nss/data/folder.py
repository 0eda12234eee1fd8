"""The folder format for real data (ARCHITECTURE.md, "Data"): reading with sparse labels, and checking.

    DATA/meta.json                              {"tasks": [...], "frame_size": [H, W], "splits": {split: [clip, ...]}}
    DATA/clips/<clip>/input/NNNNNN.png|jpg      degraded frames
    DATA/clips/<clip>/target/NNNNNN.png|jpg     clean frames (restoration)
    DATA/clips/<clip>/mask/NNNNNN.png           masks, may be sparse (segmentation; grey, palette or RGB)
    DATA/clips/<clip>/flow/NNNNNN.npy|flo|png   backward flow: frame N at (x, y) shows what N-1 shows at
                                                (x+dx, y+dy) (our .npy, Middlebury .flo, KITTI 16-bit PNG)
    DATA/clips/<clip>/homography/NNNNNN.txt     3×3 matrix mapping frame N-1 to N

Coordinates are continuous pixel coordinates: pixel (row i, column j) has its centre at (j + 0.5, i + 0.5).
Frame numbers must run on: a gap (000001, 000003) ends one run of pairs and starts another, so no pair spans it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from search_spaces import get_space, list_spaces, read_json

from ..errors import DataError
from .formats import SUFFIXES, read_flow, read_image, read_mask
from .samples import KIND_OF_TASK, LABEL_DIRS, make_sample

# Folder names people give label folders, and the one the format expects.
MISNAMED = {"masks": "mask", "labels": "mask", "segmentation": "mask", "flows": "flow", "optical_flow": "flow",
            "targets": "target", "gt": "target", "clean": "target", "homographies": "homography"}


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


def read_label(kind: str, path: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """A label and its per-pixel weight (None: every pixel labelled) in the layout make_sample takes."""
    if kind == "image":
        return read_image(path, size), None
    if kind == "mask":
        return read_mask(path, size)
    if kind == "flow":
        return read_flow(path, size)
    return read_homography(path), None


def find_file(folder: Path, stem: str, kind: str) -> Path | None:
    """The file of frame `stem` in a label (or input) folder, in any accepted encoding."""
    for suffix in SUFFIXES[kind]:
        path = folder / f"{stem}{suffix}"
        if path.exists():
            return path
    return None


def frame_runs(stems: list[str]) -> list[list[str]]:
    """Runs of consecutively numbered frames (a gap starts a new run); stems must be numbers."""
    runs: list[list[str]] = []
    for stem in sorted(stems, key=int):
        if runs and int(stem) == int(runs[-1][-1]) + 1:
            runs[-1].append(stem)
        else:
            runs.append([stem])
    return runs


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


def _input_frames(clip_dir: Path) -> list[str]:
    stems = sorted({p.stem for p in (clip_dir / "input").glob("*") if p.suffix.lower() in SUFFIXES["image"]})
    bad = [s for s in stems if not s.isdigit()]
    if bad:
        raise DataError(f"{clip_dir / 'input'}: frame names must be numbers (000001.png …), got {bad[0]!r}")
    return stems


def _unlabelled(root: Path, clips: list[str], kind: str) -> str | None:
    """Why a declared task has no label in these clips (a missing or misnamed folder), None if it has some."""
    for clip in clips:
        folder = root / "clips" / str(clip) / LABEL_DIRS[kind]
        if any(find_file(folder, p.stem, kind) for p in folder.glob("*")):
            return None
    misnamed = sorted({p.name for clip in clips if (root / "clips" / str(clip)).is_dir()
                       for p in (root / "clips" / str(clip)).iterdir()
                       if p.is_dir() and MISNAMED.get(p.name) == LABEL_DIRS[kind]})
    hint = f"; found {', '.join(m + '/' for m in misnamed)}, a misnamed {LABEL_DIRS[kind]}/ folder?" if misnamed else ""
    return f"no {LABEL_DIRS[kind]}/ labels in any of its clips (DATA/clips/<clip>/{LABEL_DIRS[kind]}/NNNNNN" \
           f"{SUFFIXES[kind][0]}){hint}"


class FolderDataset(Dataset):
    """Pairs (frame t-1, frame t) of consecutive frames of the clips of one split. A missing label file means
    'unlabelled' for that frame and task (sparse annotation): `valid[kind]` is False and that frame adds no loss for
    the task; ignored pixels (palette 255, KITTI's invalid flow) carry weight 0."""

    def __init__(self, root: str | Path, split: str = "train"):
        self.root = Path(root)
        meta = read_meta(self.root)
        if split not in meta["splits"]:
            raise DataError(f"{self.root / 'meta.json'}: no split {split!r} (has {sorted(meta['splits'])})")
        self.split, self.clips = split, [str(c) for c in meta["splits"][split]]
        self.frame_size = tuple(meta["frame_size"])
        self.kinds = tuple(KIND_OF_TASK[t] for t in meta["tasks"])
        self.pairs: list[tuple[Path, str, str]] = []
        for clip in self.clips:
            clip_dir = self.root / "clips" / clip
            runs = frame_runs(_input_frames(clip_dir))
            pairs = [(clip_dir, a, b) for run in runs for a, b in zip(run, run[1:])]
            if not pairs:
                raise DataError(f"{clip_dir / 'input'}: needs at least 2 consecutively numbered frames")
            self.pairs += pairs

    def unlabelled_tasks(self) -> dict[str, str]:
        """Declared tasks without a single label in this split, with why (e.g. a misnamed folder)."""
        reasons = {t: _unlabelled(self.root, self.clips, KIND_OF_TASK[t]) for t in read_meta(self.root)["tasks"]}
        return {t: why for t, why in reasons.items() if why}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        clip, previous, current = self.pairs[index]
        labels, weights = {}, {}
        for kind in self.kinds:
            path = find_file(clip / LABEL_DIRS[kind], current, kind)
            labels[kind], weights[kind] = read_label(kind, path, self.frame_size) if path else (None, None)
        return make_sample(read_image(find_file(clip / "input", previous, "image"), self.frame_size),
                           read_image(find_file(clip / "input", current, "image"), self.frame_size),
                           labels, self.kinds, weights)


def check_folder(root: str | Path) -> list[str]:
    """Every problem of a data folder, one line each naming the file; empty when the folder is usable."""
    return inspect_folder(root)[0]


def inspect_folder(root: str | Path) -> tuple[list[str], list[str]]:
    """(problems, notes) of a data folder, one line each naming the file. Problems make it unusable; notes are
    what it is worth knowing: a gap in a clip's numbering, a split without labels for a task that others have."""
    root = Path(root)
    try:
        meta = read_meta(root)
    except DataError as err:
        return [str(err)], []
    problems, notes, size = [], [], tuple(meta["frame_size"])
    refusing = [name for name in list_spaces() if size[0] % get_space(name).frame_divisor
                or size[1] % get_space(name).frame_divisor]
    if refusing:
        notes.append(f"{root / 'meta.json'}: frames are {size[0]}x{size[1]}, which the network of "
                     f"{', '.join(refusing)} cannot take (sides must be multiples of its frame divisor)")
    kinds = [KIND_OF_TASK[t] for t in meta["tasks"]]
    everywhere = [str(c) for clips in meta["splits"].values() for c in clips]
    for task in meta["tasks"]:
        why = _unlabelled(root, everywhere, KIND_OF_TASK[task])
        if why:  # declared but nowhere labelled: nothing can learn it
            problems.append(f"{root / 'meta.json'}: task {task!r}: {why}")
    for split, clips in meta["splits"].items():
        if not clips:
            problems.append(f"{root / 'meta.json'}: split {split!r} has no clips")
        for task in meta["tasks"]:
            if clips and _unlabelled(root, [str(c) for c in clips], KIND_OF_TASK[task]) \
                    and not _unlabelled(root, everywhere, KIND_OF_TASK[task]):
                notes.append(f"{root / 'meta.json'}: split {split!r} has no {task} labels (training on it leaves "
                             f"{task} unlearnt; validating on it is refused)")
        for clip in clips:
            clip_dir = root / "clips" / str(clip)
            try:
                stems = _input_frames(clip_dir)
            except DataError as err:
                problems.append(str(err))
                continue
            runs = frame_runs(stems)
            if sum(len(r) - 1 for r in runs) < 1:
                problems.append(f"{clip_dir / 'input'}: needs at least 2 consecutively numbered frames, found "
                                f"{len(stems)}")
            for before, after in zip(runs, runs[1:]):
                notes.append(f"{clip_dir / 'input'}: frames jump from {before[-1]} to {after[0]}; the gap splits "
                             "the clip (no training pair spans it)")
            for stem in stems:
                try:
                    read_image(find_file(clip_dir / "input", stem, "image"), size)
                except DataError as err:
                    problems.append(str(err))
            for kind in kinds:
                for path in sorted((clip_dir / LABEL_DIRS[kind]).glob("*")):
                    if path.suffix.lower() not in SUFFIXES[kind]:
                        problems.append(f"{path}: unexpected file (labels of this task are "
                                        f"{', '.join('*' + s for s in SUFFIXES[kind])})")
                        continue
                    if path.stem not in stems:
                        problems.append(f"{path}: label without an input frame {path.stem}")
                    try:
                        label, _ = read_label(kind, path, size)
                    except DataError as err:
                        problems.append(str(err))
                        continue
                    if not np.isfinite(label).all():
                        problems.append(f"{path}: contains NaN or Inf")
    return problems, notes
