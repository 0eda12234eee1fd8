"""A run folder (DESIGN §7): configuration, long-form CSV logs and checkpoints, all written atomically."""
from __future__ import annotations

import csv
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
    """Rows of one CSV file. `flush` appends the rows logged since the last flush, so writing costs the same per
    row however long the run; the whole file is rewritten (atomically) only when rows bring a column it does not
    have yet, which happens once per phase. A resumed run cuts the file back to the rows its checkpoint had."""

    def __init__(self, path: Path):
        self.path = path
        self.pending: list[dict[str, Any]] = []
        self.columns: list[str] | None = None  # the file's header, once it has one
        self.rows_written = 0
        self.bytes_written = 0  # by this process: what the log costs (benchmarks/log_growth.py)

    def extend(self, rows: list[dict[str, Any]]) -> None:
        self.pending.extend(rows)

    def flush(self) -> None:
        if not self.pending:
            return
        new = list(dict.fromkeys(k for row in self.pending for k in row if k not in (self.columns or ())))
        if self.columns is None or new:
            existing = pd.read_csv(self.path) if self.rows_written else pd.DataFrame()
            self._rewrite(pd.concat([existing, pd.DataFrame(self.pending)], ignore_index=True))
        else:
            with open(self.path, "a", newline="") as file:
                start = file.tell()
                csv.DictWriter(file, fieldnames=self.columns, restval="").writerows(self.pending)
                self.bytes_written += file.tell() - start
            self.rows_written += len(self.pending)
        self.pending = []

    def cut_back(self, rows: int | None, phase: str, step: int) -> None:
        """Keep the first `rows` rows (what the checkpoint had flushed); a checkpoint that does not say keeps the
        rows logged up to (phase, step)."""
        self.pending = []
        if not self.path.exists():
            return
        if rows is not None:
            frame = pd.read_csv(self.path, nrows=rows) if rows else pd.DataFrame()
        else:
            frame = pd.read_csv(self.path)
            order = frame["phase"].map(PHASES.index)
            frame = frame[(order < PHASES.index(phase)) | ((order == PHASES.index(phase)) & (frame["step"] <= step))]
        self._rewrite(frame)

    def _rewrite(self, frame: pd.DataFrame) -> None:
        if not len(frame):  # nothing kept: no file, as before the first flush
            self.path.unlink(missing_ok=True)
            self.columns, self.rows_written = None, 0
            return
        atomic_write(self.path, lambda tmp: frame.to_csv(tmp, index=False))
        self.columns, self.rows_written = list(frame.columns), len(frame)
        self.bytes_written += self.path.stat().st_size


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
