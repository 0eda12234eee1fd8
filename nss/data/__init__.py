"""Data: the synthetic generator, the folder format, and one entry point for both."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ..errors import DataError
from .folder import FolderDataset, check_folder
from .samples import KIND_OF_TASK, LABEL_DIRS, corner_offsets
from .synthetic import SyntheticSpec, render_clip
from .synthetic_dataset import SyntheticDataset
from .write import write_synthetic


def open_dataset(data: str | Path, split: str, spec: SyntheticSpec = SyntheticSpec()) -> Dataset:
    """`"synthetic"` (generated on the fly from `spec`) or the path of a data folder."""
    if str(data) == "synthetic":
        return SyntheticDataset(spec, split)
    return FolderDataset(Path(data), split)


__all__ = ["DataError", "FolderDataset", "KIND_OF_TASK", "LABEL_DIRS", "SyntheticDataset", "SyntheticSpec",
           "check_folder", "corner_offsets", "open_dataset", "render_clip", "write_synthetic"]
