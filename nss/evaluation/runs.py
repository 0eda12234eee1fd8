"""`nss evaluate`: a trained run's network on a split of its own data or of any data folder of the same tasks,
written to the run's eval.csv; Δ_MTL against a reference run."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from search_spaces import SearchSpace

from ..config import check_frame_size
from ..data import open_dataset, open_split, require_usable_folder
from ..errors import DataError, NSSError
from ..io import atomic_write
from ..runs.folder import RunFolder
from ..runs.trained import TrainedModel
from .evaluate import evaluate, finest_per_task
from .metrics import delta_mtl


def delta_mtl_against(table: pd.DataFrame, reference: str | Path, tasks) -> float:
    """Δ_MTL (%) of an evaluation table against the `eval.csv` of a reference run on the same split."""
    path = Path(reference) / RunFolder.EVAL
    split = table["split"].iloc[0]
    try:
        ref = pd.read_csv(path)
    except FileNotFoundError:
        raise NSSError(f"{path}: file not found (run `nss evaluate {reference} --split {split}` first)") from None
    ref = ref[ref["split"] == split]
    if not len(ref):
        raise NSSError(f"{path}: no {split} metrics to compare with (run `nss evaluate {reference} --split {split}`)")
    return delta_mtl(finest_per_task(table), finest_per_task(ref), tasks)


def _evaluation_data(model: TrainedModel, split: str, data: str | Path | None, eval_clips: int | None):
    """The split to measure on: the run's own data (with `eval_clips` synthetic clips), or the data folder `data`,
    which must label every task of the network and have frames it takes."""
    config = model.config
    if eval_clips is not None:
        source = data or config.data
        if str(source) != "synthetic":
            raise NSSError(f"--eval-clips: {model.folder.path} is measured on {source}, whose splits are fixed; only "
                           "synthetic data grows them")
        return open_split(replace(config, eval_clips=eval_clips).validate(), split)
    if data is None or str(data) == "synthetic":  # the run's own data, or synthetic clips at its frame size
        return open_split(replace(config, data=str(data or config.data)), split)
    require_usable_folder(data)
    dataset = open_dataset(data, split)
    missing = [t.name for t in model.space.tasks if t.kind not in dataset.kinds]
    if missing:
        raise DataError(f"{data}: no labels for task(s) {', '.join(missing)} of {model.folder.path}'s network")
    check_frame_size(model.space, *dataset.frame_size, f"{data}: frames are")
    return dataset


def evaluate_run(run: str | Path, split: str = "test", *, device: str | None = None, write: bool = True,
                 reference: str | Path | None = None, eval_clips: int | None = None,
                 data: str | Path | None = None) -> pd.DataFrame:
    """Every metric of every head of a run's network (best.pt if there is one, else last.pt) on a split, and
    the trivial predictor's; written long form to `<run>/eval.csv` (with the split and checkpoint). With a
    `reference` run, a last row (head "all", metric "delta_mtl") holds Δ_MTL against its eval.csv. `eval_clips`
    measures on that many synthetic validation/test clips instead of the run's own; `data`, on a data folder's
    split instead of the run's data."""
    model = TrainedModel.load(run, device)
    dataset = _evaluation_data(model, split, data, eval_clips)
    table = evaluate(model.network, model.space, dataset, model.device, model.config.batch_size)
    table.insert(0, "split", split)
    table.insert(1, "checkpoint", model.checkpoint)
    if reference is not None:
        score = delta_mtl_against(table, reference, model.space.tasks)
        table.loc[len(table)] = [split, model.checkpoint, "network", "all", "all", float("nan"), "delta_mtl", score]
    if write:
        atomic_write(model.folder / RunFolder.EVAL, lambda tmp: table.to_csv(tmp, index=False))
    return table


def evaluate_splits(run: Path, splits: list[str], *, eval_clips: int | None = None,
                    write: bool = True) -> dict[str, Any]:
    """A retrained run on each split: the metrics of each task's finest head, the trivial predictor's, and Δ_MTL
    against it; every split's table goes to the run's eval.csv (unless not `write`). `eval_clips`: as
    `evaluate_run`'s."""
    per_split, tables = {}, []
    tasks = SearchSpace.load(RunFolder(run) / RunFolder.SPACE).tasks
    for split in splits:
        table = evaluate_run(run, split, write=False, eval_clips=eval_clips)
        tables.append(table)
        ours, trivial = finest_per_task(table), finest_per_task(table, "baseline")
        per_split[split] = {"delta_mtl": delta_mtl(ours, trivial, tasks), "metrics": ours, "baseline": trivial}
    if write:
        eval_table = pd.concat(tables, ignore_index=True)
        atomic_write(RunFolder(run) / RunFolder.EVAL, lambda tmp: eval_table.to_csv(tmp, index=False))
    return per_split
