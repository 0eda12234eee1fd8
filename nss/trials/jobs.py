"""What a trial does, run inside a Ray worker: each job writes ordinary run folders under the trial's folder and
returns plain data. Every step resumes from the run's own checkpoint when the trial was interrupted."""
from __future__ import annotations

import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from search_spaces import SearchSpace, SpaceError

from ..config import RunConfig, resolve_config
from ..errors import NSSError
from ..evaluate import finest_per_task
from ..io import atomic_write
from ..metrics import delta_mtl
from ..runs import SearchResult, evaluate_run, pretrain, profile_target, retrain, search
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


def evaluate_and_profile(run: Path, options: dict[str, Any]) -> dict[str, Any]:
    """A retrained run on each of `options["splits"]` (default validation) and its cost on `options["backend"]`.

    Returns per split the metrics of each task's finest head, the trivial predictor's, and Δ_MTL against it;
    `delta_mtl` is the first split's. Every split's table goes to the run's eval.csv."""
    splits, per_split, tables = options.get("splits", ["val"]), {}, []
    tasks = SearchSpace.load(run / "space.json").tasks
    for split in splits:
        table = evaluate_run(run, split, write=False)
        tables.append(table)
        ours, trivial = finest_per_task(table), finest_per_task(table, "baseline")
        per_split[split] = {"delta_mtl": delta_mtl(ours, trivial, tasks), "metrics": ours, "baseline": trivial}
    eval_table = pd.concat(tables, ignore_index=True)
    atomic_write(run / "eval.csv", lambda tmp: eval_table.to_csv(tmp, index=False))
    report, _, _ = profile_target(run, backend=options.get("backend", "torch"), device=options.get("device", "auto"),
                                  size=tuple(options["size"]) if options.get("size") else None,
                                  iters=options.get("iters", 30), warmup=options.get("warmup", 5))
    return {"delta_mtl": per_split[splits[0]]["delta_mtl"], "splits": per_split,
            "latency_ms": report["latency_ms"]["median"], "params": report["params"], "flops": report["flops"]}


def _tune_job(trial: Trial, folder: Path) -> dict[str, Any]:
    """Search from the shared pretraining, retrain the derived architecture, evaluate it on validation, profile."""
    config = resolve_config(**trial.config)
    found = _train(search, config, folder / "search")
    architecture = str(folder / "search" / "architecture.json")
    _train(retrain, replace(config, architecture=architecture, from_run=None).validate(), folder / "retrain")
    return dict(search_summary(found), **evaluate_and_profile(folder / "retrain", trial.options))


def _groundtruth_job(trial: Trial, folder: Path) -> dict[str, Any]:
    """Retrain one architecture from scratch, evaluate it on validation and test, profile it."""
    _train(retrain, resolve_config(**trial.config), folder)
    return evaluate_and_profile(folder, dict(trial.options, splits=["val", "test"]))


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
