"""What a trial does, run inside a Ray worker: each job writes ordinary run folders under the trial's folder and
returns plain data. Every step resumes from the run's own checkpoint when the trial was interrupted."""
from __future__ import annotations

import statistics
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from search_spaces import Architecture, SearchSpace, SpaceError, get_size
from supernet import build_network

from ..config import RunConfig, resolve_config
from ..costs import count_flops, count_parameters
from ..errors import NSSError
from ..evaluate import finest_per_task
from ..io import atomic_write
from ..metrics import delta_mtl
from ..profile import interleaved_times
from ..runs import SearchResult, evaluate_run, pretrain, retrain, search
from ..train import resolve_device, resolve_network_size
from .experiment import Experiment, Trial


def _train(command: Callable, config: RunConfig, out: Path) -> Any:
    """Run `command` (pretrain, search, retrain) into `out`, continuing it if a checkpoint is there."""
    if (out / "checkpoints" / "last.pt").is_file():
        return command(out=out, resume=True, progress=False)
    return command(config, out=out, force=True, progress=False)  # force: a folder killed before its first checkpoint


def search_summary(result: SearchResult) -> dict[str, Any]:
    return {"architecture": result.architecture.id, "heads": list(result.architecture.heads),
            "probabilities": result.probabilities, "undecided": list(result.undecided)}


def _pretrain_job(trial: Trial, folder: Path) -> dict[str, Any]:
    _train(pretrain, resolve_config(**trial.config), folder)
    return {}


def _search_job(trial: Trial, folder: Path) -> dict[str, Any]:
    return search_summary(_train(search, resolve_config(**trial.config), folder))


def evaluate_splits(run: Path, splits: list[str], *, eval_clips: int | None = None,
                    write: bool = True) -> dict[str, Any]:
    """A retrained run on each split: the metrics of each task's finest head, the trivial predictor's, and Δ_MTL
    against it; every split's table goes to the run's eval.csv (unless not `write`). `eval_clips`: as
    `evaluate_run`'s."""
    per_split, tables = {}, []
    tasks = SearchSpace.load(run / "space.json").tasks
    for split in splits:
        table = evaluate_run(run, split, write=False, eval_clips=eval_clips)
        tables.append(table)
        ours, trivial = finest_per_task(table), finest_per_task(table, "baseline")
        per_split[split] = {"delta_mtl": delta_mtl(ours, trivial, tasks), "metrics": ours, "baseline": trivial}
    if write:
        eval_table = pd.concat(tables, ignore_index=True)
        atomic_write(run / "eval.csv", lambda tmp: eval_table.to_csv(tmp, index=False))
    return per_split


def network_size(config: RunConfig) -> str:
    """The size preset a configuration trains (auto resolved for its device)."""
    return resolve_network_size(config.network, resolve_device(config.device))


def network_costs(architecture: Architecture, size: str, height: int, width: int) -> dict[str, int]:
    torch.manual_seed(0)
    network = build_network(architecture, get_size(size))
    return {"params": count_parameters(network), "flops": count_flops(network, height, width)}


def reference_latency(space: SearchSpace, size: str, options: dict[str, Any]) -> float:
    """The median batch-1 latency (ms) of a space's supernet, measured while nothing else runs."""
    torch.manual_seed(0)
    height, width = options["size"]
    times = interleaved_times({"reference": build_network(space, get_size(size))}, height, width,
                              backend=options["backend"], device=options["device"], iters=options["iters"])
    return 1e3 * statistics.median(times["reference"])


def latency_against_reference(architecture: Architecture, size: str, options: dict[str, Any]) -> float:
    """The architecture's median batch-1 latency (ms), timed in turns with its space's supernet and scaled by the
    supernet's latency measured before the trials started (`options["reference_ms"]`): a ratio of two networks
    timed together holds while other trials share the machine, an absolute time does not."""
    networks = {}
    for name, target in (("derived", architecture), ("reference", Architecture.full(architecture.space))):
        torch.manual_seed(0)
        networks[name] = build_network(target, get_size(size))
    height, width = options["size"]
    times = interleaved_times(networks, height, width, backend=options["backend"], device=options["device"],
                              iters=options["iters"])
    return statistics.median(times["derived"]) / statistics.median(times["reference"]) * options["reference_ms"]


def _tune_job(trial: Trial, folder: Path) -> dict[str, Any]:
    """Search from the shared pretraining, retrain the derived architecture, evaluate it on validation, time it
    against the supernet."""
    config = resolve_config(**trial.config)
    found = _train(search, config, folder / "search")
    architecture = str(folder / "search" / "architecture.json")
    retrained = replace(config, architecture=architecture, from_run=None).validate()
    _train(retrain, retrained, folder / "retrain")
    splits = evaluate_splits(folder / "retrain", ["val"])
    height, width, size = *trial.options["size"], network_size(config)
    return dict(search_summary(found), delta_mtl=splits["val"]["delta_mtl"], splits=splits,
                latency_ms=latency_against_reference(found.architecture, size, trial.options),
                **network_costs(found.architecture, size, height, width))


def _groundtruth_job(trial: Trial, folder: Path) -> dict[str, Any]:
    """Retrain one architecture from scratch, evaluate it on validation and test, count its cost (its latency is
    measured afterwards, every architecture in turn on a quiet machine)."""
    config = resolve_config(**trial.config)
    _train(retrain, config, folder)
    splits = evaluate_splits(folder, ["val", "test"])
    height, width = trial.options["size"]
    return dict(delta_mtl=splits["test"]["delta_mtl"], splits=splits,
                **network_costs(Architecture.load(config.architecture), network_size(config), height, width))


JOBS: dict[str, Callable[[Trial, Path], dict[str, Any]]] = {
    "pretrain": _pretrain_job, "search": _search_job, "tune": _tune_job, "groundtruth": _groundtruth_job}


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(err, (NSSError, SpaceError)) else f"{type(err).__name__}: {message}"


def execute(trial: Trial, experiment: Experiment) -> dict[str, Any]:
    """Run a trial and write its record (trial.json). Never raises: a failure is a record with status "error",
    its one-line message, and the traceback in error.txt beside it."""
    folder = experiment.trial_dir(trial.name)
    folder.mkdir(parents=True, exist_ok=True)
    started_at, began = time.time(), time.perf_counter()
    try:
        record = {"status": "done", "message": "", "result": JOBS[trial.job](trial, folder)}
    except Exception as err:  # noqa: BLE001 - a trial's failure is data, whatever its kind
        (folder / "error.txt").write_text(traceback.format_exc())
        record = {"status": "error", "message": one_line(err), "result": {}}
    record = dict(name=trial.name, job=trial.job, settings=trial.settings, wall_time_s=time.perf_counter() - began,
                  started_at=started_at, ended_at=time.time(), **record)
    experiment.write_record(trial.name, record)
    return record
