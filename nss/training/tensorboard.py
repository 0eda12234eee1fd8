"""TensorBoard beside the CSV logs (`--tensorboard`): the same rows as scalars, one step axis across a command's
phases. The CSVs stay the contract; this is what users of PyTorch research tools open first."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import NSSError

KEY_COLUMNS = ("phase", "epoch", "step", "wall_time")


def require_tensorboard() -> None:
    """A clear error, before any run folder is made, where the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise NSSError("--tensorboard: the tensorboard package is not installed (pip install tensorboard)") from None


class TensorBoardLog:
    """Scalars of the run's logs: `<phase>/<column>` of metrics.csv (losses, λ, learning rates, sparsity),
    `<phase>/delta/<head>`, `gates/prob/<head>` and `gates/logit/<head>`, `validation/<head>/<metric>`."""

    def __init__(self, folder: Path, purge_step: int | None = None):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter
        # a resumed run purges what the killed one wrote after its checkpoint, so no step is there twice
        self.writer = SummaryWriter(str(folder), purge_step=purge_step)

    def add(self, table: str, rows: list[dict[str, Any]], step: int) -> None:
        for row in rows:
            for tag, value in self._scalars(table, row):
                self.writer.add_scalar(tag, value, step)

    @staticmethod
    def _scalars(table: str, row: dict[str, Any]) -> list[tuple[str, float]]:
        phase = row["phase"]
        if table == "metrics":
            return [(f"{phase}/{k}", v) for k, v in row.items() if k not in KEY_COLUMNS]
        if table == "deltas":
            return [(f"{phase}/delta/{row['head']}", row["value"])]
        if table == "gates":
            return [(f"gates/prob/{row['head']}", row["prob"]), (f"gates/logit/{row['head']}", row["logit"])]
        if table == "validation":
            return [(f"validation/{row['head']}/{row['metric']}", row["value"])]
        return []  # conflicts: per pair and module group, for the report's figures

    def close(self) -> None:
        self.writer.close()
