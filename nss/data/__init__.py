"""Data: the synthetic generator, the folder format (reading, importing, checking), and one entry point for both.
Names are imported on first use: the command line reads FLOW_DIRECTIONS without loading torch."""
from __future__ import annotations

import importlib
from typing import Any

FLOW_DIRECTIONS = ("backward", "forward")  # which way an imported clip's flow labels point (nss data import)

_WHERE = {"FolderDataset": "folder", "check_folder": "folder", "inspect_folder": "folder",
          "KIND_OF_TASK": "samples", "LABEL_DIRS": "samples", "corner_offsets": "samples",
          "SyntheticSpec": "synthetic", "render_clip": "synthetic", "SyntheticDataset": "synthetic_dataset",
          "write_synthetic": "write", "open_dataset": "splits", "open_split": "splits",
          "require_usable_folder": "splits", "synthetic_spec": "splits"}
__all__ = sorted(_WHERE) + ["FLOW_DIRECTIONS"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nss.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
