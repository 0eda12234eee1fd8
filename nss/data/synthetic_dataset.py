"""Synthetic clips served as training pairs, generated on the fly (nothing is written to disk)."""
from __future__ import annotations

from torch.utils.data import Dataset

from .samples import LABEL_DIRS, make_sample
from .synthetic import SPLITS, SyntheticSpec, cached_clip


class SyntheticDataset(Dataset):
    """Pairs (frame t-1, frame t) of every synthetic clip of a split, with all four kinds of labels."""

    kinds = tuple(LABEL_DIRS)

    def __init__(self, spec: SyntheticSpec, split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}")
        self.spec, self.split = spec, split
        self.pairs_per_clip = spec.frames - 1

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.spec.height, self.spec.width

    def unlabelled_tasks(self) -> dict[str, str]:
        return {}  # every kind of label, on every frame

    def __len__(self) -> int:
        return self.spec.clips_in(self.split) * self.pairs_per_clip

    def __getitem__(self, index: int) -> dict:
        clip, t = divmod(index, self.pairs_per_clip)
        t += 1
        c = cached_clip(self.spec, self.split, clip)
        labels = {"image": c["clean"][t], "mask": c["mask"][t], "flow": c["flow"][t], "homography": c["homography"][t]}
        return make_sample(c["degraded"][t - 1], c["degraded"][t], labels, self.kinds)
