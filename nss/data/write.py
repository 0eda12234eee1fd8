"""`nss data synth`: synthetic clips written in the folder format."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..io import staged_directory
from .synthetic import SPLITS, SyntheticSpec, render_clip


def _png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)


def write_synthetic(out: str | Path, spec: SyntheticSpec = SyntheticSpec(), force: bool = False,
                    progress: bool = True) -> Path:
    """Write every split of the synthetic data to `out` (folder format); returns the folder."""
    splits = {split: [f"{split}_{i:03d}" for i in range(spec.clips_in(split))] for split in SPLITS}
    with staged_directory(out, force, "data folder") as staging:
        jobs = [(split, i, clip) for split, clips in splits.items() for i, clip in enumerate(clips)]
        for split, i, clip in tqdm(jobs, desc="synth", unit="clip", disable=not progress):
            c = render_clip(spec, split, i)
            folder = staging / "clips" / clip
            for sub in ("input", "target", "mask", "flow", "homography"):
                (folder / sub).mkdir(parents=True)
            for t in range(spec.frames):
                name = f"{t:06d}"
                _png(folder / "input" / f"{name}.png", c["degraded"][t])
                _png(folder / "target" / f"{name}.png", c["clean"][t])
                _png(folder / "mask" / f"{name}.png", c["mask"][t].astype(np.float32))
                if t:  # motion labels relate frame t to t-1: none for the first frame
                    np.save(folder / "flow" / f"{name}.npy", c["flow"][t])
                    np.savetxt(folder / "homography" / f"{name}.txt", c["homography"][t])
        meta = {"tasks": ["restoration", "segmentation", "flow", "homography"],
                "frame_size": [spec.height, spec.width], "splits": splits,
                "source": {"generator": "nss synthetic", "seed": spec.seed, "clips": spec.clips,
                           "frames": spec.frames}}
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    return Path(out)
