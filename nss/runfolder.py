"""A run folder (DESIGN §7): configuration, long-form CSV logs and checkpoints, all written atomically."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from .errors import NSSError
from .io import atomic_write, atomic_write_text, refuse_existing

PHASES = ("pretrain", "search", "retrain")


class Table:
    """Rows of one CSV file kept in memory and rewritten atomically on `flush`."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def extend(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)

    def load_until(self, phase: str, step: int) -> None:
        """Reload rows logged up to (phase, step): what a resumed run keeps of the interrupted one."""
        if not self.path.exists():
            return
        frame = pd.read_csv(self.path)
        order = frame["phase"].map(PHASES.index)
        keep = (order < PHASES.index(phase)) | ((order == PHASES.index(phase)) & (frame["step"] <= step))
        self.rows = frame[keep].to_dict("records")

    def flush(self) -> None:
        if self.rows:
            atomic_write(self.path, lambda tmp: pd.DataFrame(self.rows).to_csv(tmp, index=False))


class RunFolder:
    TABLES = ("metrics", "gates", "deltas", "validation", "conflicts")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.tables = {name: Table(self.path / f"{name}.csv") for name in self.TABLES}

    # -- life cycle ----------------------------------------------------------------------------------------
    def create(self, force: bool) -> "RunFolder":
        refuse_existing(self.path, force, "run folder", ", or --resume to continue it")
        if self.path.exists():
            shutil.rmtree(self.path)
        self.checkpoints.mkdir(parents=True)
        return self

    def require_existing(self) -> "RunFolder":
        if not (self.path / "config.yaml").is_file():
            raise NSSError(f"{self.path}: not a run folder (no config.yaml)")
        return self

    # -- small files ---------------------------------------------------------------------------------------
    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(data, indent=2) + "\n")

    def write_yaml(self, name: str, data: Any) -> None:
        atomic_write_text(self.path / name, yaml.safe_dump(data, sort_keys=False))

    def read_yaml(self, name: str) -> Any:
        try:
            return yaml.safe_load((self.path / name).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise NSSError(f"{self.path / name}: cannot be read ({err})") from None

    def flush(self) -> None:
        for table in self.tables.values():
            table.flush()

    # -- checkpoints ---------------------------------------------------------------------------------------
    def save_checkpoint(self, name: str, state: dict[str, Any]) -> None:
        atomic_write(self.checkpoints / name, lambda tmp: torch.save(state, tmp))

    def load_checkpoint(self, name: str = "last.pt") -> dict[str, Any]:
        path = self.checkpoints / name
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise NSSError(f"{path}: no checkpoint to start from") from None
        except Exception as err:  # torch raises many kinds for a damaged file
            raise NSSError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from None
