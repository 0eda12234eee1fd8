"""A run folder, the contract between the tools: every file a run writes is named here, and written atomically.

    RUN/config.yaml         the command and its resolved configuration (paths absolute)
    RUN/space.json          the search space
    RUN/architecture.json   a search's derived architecture; a retraining's network
    RUN/latency.json        a latency-aware search's copy of its cost table
    RUN/subnetworks.csv     a one-shot search's measure of every sub-network on the validation split
    RUN/metrics.csv gates.csv deltas.csv validation.csv conflicts.csv   long-form logs, one row per logged step
    RUN/checkpoints/        last.pt (resume), best.pt (retraining's best validation), pretrained.pt (a pretraining)
    RUN/eval.csv            `nss evaluate`'s metrics
    RUN/profile.json        `nss profile`'s report (latency_table.json: its per-head cost table)
    RUN/tensorboard/        event files, with --tensorboard
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from ..config import RunConfig, config_from_dict
from ..errors import NSSError
from ..scale_search.derive import save_architecture
from ..io import atomic_write, atomic_write_text, refuse_existing

log = logging.getLogger("nss")


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
                csv.DictWriter(file, fieldnames=self.columns, restval="", lineterminator="\n").writerows(self.pending)
                self.bytes_written += file.tell() - start
            self.rows_written += len(self.pending)
        self.pending = []

    def cut_back(self, rows: int) -> None:
        """Keep the first `rows` rows: what the checkpoint a run resumes from had flushed."""
        self.pending = []
        if self.path.exists():
            self._rewrite(pd.read_csv(self.path, nrows=rows) if rows else pd.DataFrame())

    def _rewrite(self, frame: pd.DataFrame) -> None:
        if not len(frame):  # nothing kept: no file, as before the first flush
            self.path.unlink(missing_ok=True)
            self.columns, self.rows_written = None, 0
            return
        atomic_write(self.path, lambda tmp: frame.to_csv(tmp, index=False))
        self.columns, self.rows_written = list(frame.columns), len(frame)
        self.bytes_written += self.path.stat().st_size


class RunFolder:
    CONFIG, SPACE, ARCHITECTURE, COST_TABLE = "config.yaml", "space.json", "architecture.json", "latency.json"
    SUBNETWORKS = "subnetworks.csv"
    EVAL, PROFILE, COST_TABLE_MEASURED = "eval.csv", "profile.json", "latency_table.json"
    METRICS, GATES, DELTAS, VALIDATION, CONFLICTS = "metrics.csv", "gates.csv", "deltas.csv", "validation.csv", \
        "conflicts.csv"
    TABLES = {"metrics": METRICS, "gates": GATES, "deltas": DELTAS, "validation": VALIDATION, "conflicts": CONFLICTS}
    LAST, BEST, PRETRAINED = "last.pt", "best.pt", "pretrained.pt"
    TENSORBOARD = "tensorboard"
    # Options whose file a run keeps its own copy of: a run reads its copy, not the file it was made from.
    COPIES = {"space": SPACE, "architecture": ARCHITECTURE, "latency_table": COST_TABLE}

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.tables = {name: Table(self.path / file) for name, file in self.TABLES.items()}

    def __truediv__(self, name: str) -> Path:
        """A file of the run: `run / RunFolder.EVAL`."""
        return self.path / name

    @classmethod
    def is_run(cls, path: str | Path) -> bool:
        return (Path(path) / cls.CONFIG).is_file()

    # -- life cycle ----------------------------------------------------------------------------------------
    def create(self, force: bool) -> "RunFolder":
        """A new run folder; an existing one is replaced only with `force`, or when its run never got past its
        start (killed before a step was logged: out of memory, say), which leaves nothing to keep."""
        if not force and self.never_started():
            log.warning("note: %s held a run killed before its first logged step; it is made anew", self.path)
            force = True
        refuse_existing(self.path, force, "run folder", ", or --resume to continue it")
        if self.path.exists():
            shutil.rmtree(self.path)
        self.checkpoints.mkdir(parents=True)
        return self

    def never_started(self) -> bool:
        if not self.is_run(self.path) or (self / self.METRICS).exists():
            return False
        try:
            return torch.load(self.checkpoints / self.LAST, map_location="cpu", weights_only=True)["step"] == 0
        except FileNotFoundError:
            return True  # killed between writing its configuration and its first checkpoint
        except Exception:  # noqa: BLE001 - a damaged checkpoint is kept for the user to look at
            return False

    def require_existing(self) -> "RunFolder":
        if not self.is_run(self.path):
            raise NSSError(f"{self.path}: not a run folder (no {self.CONFIG})")
        return self

    # -- configuration -------------------------------------------------------------------------------------
    def write_config(self, command: str, config: RunConfig) -> None:
        self.write_yaml(self.CONFIG, dict(command=command, **config.with_absolute_paths().to_dict()))

    def config(self) -> tuple[str, RunConfig]:
        """The command and configuration the run was made with, pointing at the run's own copies of its space,
        architecture and cost table, so that nothing outside the folder is needed to go on with it."""
        saved = self.read_yaml(self.CONFIG)
        if not isinstance(saved, dict):
            raise NSSError(f"{self / self.CONFIG}: not a run's configuration")
        config = config_from_dict(saved)
        copies = {option: str(self / name) for option, name in self.COPIES.items()
                  if getattr(config, option) and (self / name).is_file()}
        return saved.get("command"), RunConfig(**{**config.to_dict(), **copies}).validate()

    # -- small files ---------------------------------------------------------------------------------------
    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self / name, json.dumps(data, indent=2) + "\n")

    def write_csv(self, name: str, frame: pd.DataFrame) -> None:
        atomic_write(self / name, lambda tmp: frame.to_csv(tmp, index=False))

    def write_yaml(self, name: str, data: Any) -> None:
        atomic_write_text(self / name, yaml.safe_dump(data, sort_keys=False))

    def save_architecture(self, architecture: Any, **provenance: Any) -> None:
        """architecture.json: the architecture a search derived or a retraining trains, and where it came from."""
        save_architecture(self / self.ARCHITECTURE, architecture, **provenance)

    def read_yaml(self, name: str) -> Any:
        try:
            return yaml.safe_load((self / name).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise NSSError(f"{self / name}: cannot be read ({err})") from None

    def flush(self) -> None:
        for table in self.tables.values():
            table.flush()

    # -- checkpoints ---------------------------------------------------------------------------------------
    def save_checkpoint(self, name: str, state: dict[str, Any]) -> None:
        atomic_write(self.checkpoints / name, lambda tmp: torch.save(state, tmp))

    def load_checkpoint(self, name: str = LAST) -> dict[str, Any]:
        path = self.checkpoints / name
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise NSSError(f"{path}: no checkpoint to start from") from None
        except Exception as err:  # torch raises many kinds for a damaged file
            raise NSSError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from None

    def load_weights(self, name: str, network: torch.nn.Module, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Load checkpoint `name`'s weights (or those of `state`, read from it before) into `network`, the network
        they were trained for (a checkpoint made for another architecture is refused); returns the checkpoint."""
        state = self.load_checkpoint(name) if state is None else state
        made_for, this = state.get("architecture_id"), network.architecture.id
        if made_for != this:
            raise NSSError(f"{self.checkpoints / name}: checkpoint was made for another network (architecture "
                           f"{made_for}, this one is {this})")
        network.load_state_dict(state["network"])
        return state

    def trained_checkpoint(self) -> str:
        """The checkpoint whose weights stand for the run: best.pt where validation chose one, else last.pt."""
        return self.BEST if (self.checkpoints / self.BEST).exists() else self.LAST


class ReplicaFolder(RunFolder):
    """The run folder as a rank other than 0 of a data-parallel run sees it: read (a resumed run's configuration and
    checkpoint), never written; rank 0 writes for the run."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self.tables = {name: UnwrittenTable(self.path / file) for name, file in self.TABLES.items()}

    def create(self, force: bool) -> "RunFolder":
        return self

    def write_json(self, name: str, data: Any) -> None:
        pass

    def write_csv(self, name: str, frame: pd.DataFrame) -> None:
        pass

    def write_yaml(self, name: str, data: Any) -> None:
        pass

    def save_architecture(self, architecture: Any, **provenance: Any) -> None:
        pass

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> None:
        pass


class UnwrittenTable(Table):
    """A log whose rows are dropped: rank 0 logs the global batch's values."""

    def flush(self) -> None:
        self.pending = []

    def cut_back(self, rows: int) -> None:
        self.pending = []
