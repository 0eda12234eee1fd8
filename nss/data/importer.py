"""`nss data import`: videos or image folders, with optional label folders in the accepted encodings, into the
folder format: frames fitted to a size the network takes, clips split into train/val/test, meta.json written.

A source is a video file (one clip, named after the file), a folder of frames (one clip, named after the folder)
or a folder of such folders (one clip each). A label folder mirrors its source: label files named like the frame
they belong to (000012.png ↔ 000012.flo), in per-clip sub-folders for a folder of clips.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from search_spaces import DEFAULT_SPACE, SearchSpace, get_space

from ..config import check_frame_size
from ..errors import DataError
from ..io import staged_directory
from . import FLOW_DIRECTIONS
from .fit import Fit, fitting_size
from .folder import find_file, read_homography
from .formats import SUFFIXES, read_flow, read_image, read_mask, write_kitti_flow
from .samples import LABEL_DIRS
from .video import is_video, read_video, video_info
from .visualize import to_uint8

TASK_OF_KIND = {"image": "restoration", "mask": "segmentation", "flow": "flow", "homography": "homography"}


def frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES["image"])
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem)])


def clips_of(source: Path) -> list[tuple[str, Path]]:
    """(clip id, where its frames are) of a source: a video, a folder of frames, or a folder of such folders."""
    if is_video(source):
        return [(source.stem, source)]
    if not source.is_dir():
        raise DataError(f"{source}: neither a video ({', '.join(s for s in ('.mp4', '.avi', '.mov', '.mkv'))}, …) "
                        "nor a folder of frames")
    if frame_files(source):
        return [(source.name, source)]
    clips = [(p.name, p) for p in sorted(source.iterdir()) if p.is_dir() and frame_files(p)]
    videos = [(p.stem, p) for p in sorted(source.iterdir()) if is_video(p)]
    if not clips + videos:
        raise DataError(f"{source}: no frames (.png, .jpg) and no videos in it or its sub-folders")
    return clips + videos


def _frames(where: Path, reverse: bool) -> Iterator[tuple[str, str, np.ndarray]]:
    """(the frame's own name, its number in the folder format, (H, W, 3) float in [0, 1]) of a clip. A video's
    frames are numbered from 0; image files keep the number their names end with (a gap stays a gap), or are
    numbered in order when their names end with none. `reverse` numbers the clip backwards in time (a forward
    flow of frame t, towards t+1, is then the backward flow the folder format wants)."""
    if is_video(where):
        numbers = list(range(video_info(where)["frames"] or sum(1 for _ in read_video(where))))
        sources = ((f"{i:06d}", frame.astype(np.float32) / 255.0) for i, frame in enumerate(read_video(where)))
    else:
        files = frame_files(where)
        found = [re.search(r"(\d+)$", p.stem) for p in files]
        numbered = all(found) and len({int(m.group(1)) for m in found}) == len(files)
        numbers = [int(m.group(1)) for m in found] if numbered else list(range(len(files)))
        sources = ((p.stem, read_image(p)) for p in files)
    last = max(numbers)
    for number, (name, frame) in zip(numbers, sources):
        yield name, f"{last - number if reverse else number:06d}", frame


def split_clips(clips: list[str], fractions: tuple[float, ...], seed: int) -> dict[str, list[str]]:
    """Clips shuffled and cut into train/val/test by the fractions; every split given a fraction gets a clip while
    there are clips to give, and a split left empty is not listed."""
    names, n = ("train", "val", "test"), len(clips)
    order = [clips[i] for i in np.random.default_rng(seed).permutation(n)]
    counts = [int(f * n) for f in fractions]
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    for i in wanted:  # a split that asked for clips gets one while there are enough to go round
        if counts[i] == 0 and n >= len(wanted):
            counts[i] = 1
    while sum(counts) > n:
        counts[int(np.argmax(counts))] -= 1
    counts[0] += n - sum(counts)
    splits, start = {}, 0
    for name, count in zip(names, counts):
        if count > 0:
            splits[name] = order[start:start + count]
            start += count
    return splits




def import_data(sources: list[str | Path], out: str | Path, *, labels: dict[str, str | Path] | None = None,
                size: tuple[int, int] | None = None, space: SearchSpace | None = None,
                split: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0, flow_direction: str = "backward",
                force: bool = False, progress: bool = True) -> Path:
    """Write the folder format to `out`. `labels` maps a kind (mask, flow, image for clean targets, homography)
    to a label folder; `size` (H, W) is what frames are fitted to (default: the first frame cropped to multiples
    of the frame divisor of `space`, default most_net_plus's), and must itself be such multiples.

    The folder format's flow of frame N is backward (N's grid, towards N−1). Sintel, FlyingChairs and KITTI give
    forward flow (frame t's grid, towards t+1): with `flow_direction="forward"` each clip is imported backwards in
    time, which makes that flow exactly the backward flow of the reversed clip (no flow is inverted)."""
    labels = {k: Path(v) for k, v in (labels or {}).items()}
    if flow_direction not in FLOW_DIRECTIONS:
        raise DataError(f"--flow-direction: backward or forward, got {flow_direction!r}")
    if flow_direction == "forward" and "homography" in labels:
        raise DataError("--flow-direction forward imports clips backwards in time, and homography labels cannot "
                        "follow (each would need the next frame's inverted): import them without --homography")
    if len(split) != 3 or any(f < 0 for f in split) or not abs(sum(split) - 1) < 1e-6:
        raise DataError(f"--split: three fractions (train, val, test) >= 0 that sum to 1, got {list(split)}")
    for kind, folder in labels.items():
        if not folder.is_dir():
            raise DataError(f"{folder}: {LABEL_DIRS[kind]} label folder not found")
    space = space or get_space(DEFAULT_SPACE)
    if size is not None:
        check_frame_size(space, *size, "--size")
    clips = [c for source in sources for c in clips_of(Path(source))]
    ids = [clip for clip, _ in clips]
    if len(set(ids)) < len(ids):
        raise DataError(f"two clips have the same name ({', '.join(sorted({i for i in ids if ids.count(i) > 1}))})")
    total = sum((video_info(where)["frames"] or 0) if is_video(where) else len(frame_files(where))
                for _, where in clips)
    with staged_directory(out, force, "data folder") as staging, \
            tqdm(total=total or None, desc="import", unit="frame", disable=not progress) as bar:
        for clip, where in clips:
            for name, stem, frame in _frames(where, reverse=flow_direction == "forward"):
                if size is None:
                    size = fitting_size(*frame.shape[:2], space.frame_divisor)
                fit = Fit(*frame.shape[:2], *size)
                _write_frame(staging / "clips" / clip, name, stem, fit, frame, labels, clip, len(clips) > 1)
                bar.update()
        meta = {"tasks": [TASK_OF_KIND[k] for k in ("image", "mask", "flow", "homography") if k in labels],
                "frame_size": list(size), "splits": split_clips(ids, split, seed),
                "source": {"imported_from": [str(s) for s in sources], "flow_direction": flow_direction,
                           "labels": {k: str(v) for k, v in labels.items()}}}
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    return Path(out)


def _label_file(folder: Path, clip: str, name: str, kind: str, per_clip: bool) -> Path | None:
    return find_file(folder / clip if per_clip else folder, name, kind)


def _write_frame(clip_dir: Path, name: str, stem: str, fit: Fit, frame: np.ndarray, labels: dict[str, Path],
                 clip: str, per_clip: bool) -> None:
    """One frame (source name `name`, written as `stem`) and the labels it has, fitted, in the folder format (masks
    with ignored pixels stay palette PNGs, sparse flows stay KITTI PNGs)."""
    _png(clip_dir / "input" / f"{stem}.png", fit.image(frame))
    size = frame.shape[:2]  # a label of another size is refused, not stretched
    for kind, folder in labels.items():
        path = _label_file(folder, clip, name, kind, per_clip)
        if path is None:
            continue  # unlabelled frame: sparse annotation
        target = clip_dir / LABEL_DIRS[kind]
        target.mkdir(parents=True, exist_ok=True)
        if kind == "image":
            _png(target / f"{stem}.png", fit.image(read_image(path, size)))
        elif kind == "mask":
            foreground, weight = fit.mask(*read_mask(path, size))
            _mask_png(target / f"{stem}.png", foreground, weight)
        elif kind == "flow":
            flow, weight = fit.flow(*read_flow(path, size))
            if (weight > 0).all():
                np.save(target / f"{stem}.npy", flow.astype(np.float32))
            else:
                write_kitti_flow(target / f"{stem}.png", flow, weight)
        else:
            np.savetxt(target / f"{stem}.txt", fit.homography(read_homography(path)))


def _png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)


def _mask_png(path: Path, foreground: np.ndarray, weight: np.ndarray) -> None:
    """0/255 grey, or a palette PNG (0 background, 1 foreground, 255 ignored) when pixels are ignored."""
    if (weight > 0).all():
        Image.fromarray((foreground > 0.5).astype(np.uint8) * 255, "L").save(path)
        return
    index = np.where(weight > 0, (foreground > 0.5).astype(np.uint8), 255).astype(np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 253 + [128, 128, 128])
    image.save(path)
