"""The data a run trains and is measured on: a split of the synthetic clips or of a data folder."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ..config import RunConfig
from ..errors import DataError
from .folder import FolderDataset, check_folder
from .synthetic import SyntheticSpec
from .synthetic_dataset import SyntheticDataset


def open_dataset(data: str | Path, split: str, spec: SyntheticSpec = SyntheticSpec()) -> Dataset:
    """`"synthetic"` (generated on the fly from `spec`) or the path of a data folder."""
    if str(data) == "synthetic":
        return SyntheticDataset(spec, split)
    return FolderDataset(Path(data), split)


def synthetic_spec(config: RunConfig) -> SyntheticSpec:
    """The synthetic clips a configuration trains and is measured on."""
    height, width = config.frame_height_width
    return SyntheticSpec(config.clips, config.frames, height, width, config.synthetic_seed,
                         eval_clips=config.eval_clips, scene=config.scene)


def open_split(config: RunConfig, split: str) -> Dataset:
    """A split of a configuration's data."""
    return open_dataset(config.data, split, synthetic_spec(config))


def require_usable_folder(root: str | Path) -> None:
    """A data folder a run can use to the end: every problem `nss data check` finds (a label of the wrong shape, NaN
    in a flow, a corrupt frame) is an error now, not hours into training."""
    problems = check_folder(root)
    if problems:
        more = f" (and {len(problems) - 1} more: `nss data check {root}` lists them)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)
