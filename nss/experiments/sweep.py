"""`nss sweep`: one search per combination of the values given for search options, run as trials.

Pretraining does not depend on the search-only options (τ, μ, …): by default each distinct pretraining (one per
seed, space, network, … in the grid) runs once first and the searches start from it, as the dissertation does.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from search_spaces import list_spaces

from ..config import OPTIONS, SEARCH, RunConfig, absolute_paths, resolve_config, sweepable
from ..errors import NSSError
from ..io import atomic_write
from ..training.api import pretrain, search
from ..training.session import check_inputs
from .experiment import Experiment, Trial, run_in
from .runner import WAIT, Resources, job, progress_bar, ray_session, run_trials

SWEEPABLE = sweepable()
PRETRAIN_MODES = ("shared", "per-trial")
PRETRAIN_JOB, SEARCH_JOB = "pretrain", "search"


@job(PRETRAIN_JOB)
def pretrain_job(trial: Trial, folder: Path) -> dict[str, Any]:
    run_in(folder, pretrain, resolve_config(**trial.config))
    return {}


@job(SEARCH_JOB)
def search_job(trial: Trial, folder: Path) -> dict[str, Any]:
    return run_in(folder, search, resolve_config(**trial.config)).summary()


def parse_grid(grid: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Option → list of values (a comma-separated string or a sequence), every value of the option's type."""
    parsed = {}
    for name, values in grid.items():
        if name not in SWEEPABLE:
            raise NSSError(f"{name!r}: not an option a sweep can vary (choose from {', '.join(SWEEPABLE)})")
        option = OPTIONS[name]
        if isinstance(values, str):
            values = [v.strip() for v in values.split(",")]
        values = list(values) if isinstance(values, Sequence) else [values]
        if not values or any(v == "" for v in values):
            raise NSSError(f"{option.flag}: an empty value in {values!r}")
        parsed[name] = [option.coerce(_from_text(name, v)) for v in values]
        if len(set(map(json.dumps, parsed[name]))) < len(parsed[name]):
            raise NSSError(f"{option.flag}: a value appears twice in {values!r}")
    return parsed


def _from_text(name: str, value: Any) -> Any:
    """"true"/"false" for switches given on the command line; everything else as it is."""
    if OPTIONS[name].kind is bool and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0"):
            raise NSSError(f"{OPTIONS[name].flag.replace('--no-', '--')}: expected true or false, got {value!r}")
        return value.lower() in ("true", "1")
    return value


def _slug(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    text = Path(text).stem if ("/" in text or text.endswith(".json")) else text
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def _names(settings: list[dict[str, Any]], keys: list[str], prefix: str = "", alone: str = "trial") -> list[str]:
    """Folder names from the settings that differ between trials (`alone` when none does); a hash tells apart the
    ones that would clash."""
    varied = [k for k in keys if len({json.dumps(s[k]) for s in settings}) > 1]
    names = ["-".join([prefix] * bool(prefix) + [f"{OPTIONS[k].short or k.replace('_', '')}{_slug(s[k])}"
                                                 for k in varied])
             or alone for s in settings]
    clashing = {n for n in names if names.count(n) > 1}
    return [n + "-" + hashlib.sha1(json.dumps(s, sort_keys=True).encode()).hexdigest()[:6] if n in clashing else n
            for n, s in zip(names, settings)]


def validate_grid(grid: dict[str, list[Any]], base: dict[str, Any]) -> None:
    """Every combination of the grid is a configuration that can run, every file it names exists, and its data
    folder and cost table are what a run would accept: a bad value is refused before anything starts, not found by
    a trial."""
    for name, values in grid.items():
        missing = [v for v in values if OPTIONS[name].path and v not in ("synthetic", *list_spaces())
                   and not Path(v).exists()]
        if missing:
            raise NSSError(f"{OPTIONS[name].flag}: {missing[0]}: no such file or folder")
    inputs = ("space", "data", "frame_size", "latency_table", "latency_target")
    checked = set()
    for values in itertools.product(*grid.values()):
        config = RunConfig(**dict(base, **dict(zip(grid, values)))).validate()
        key = tuple(getattr(config, name) for name in inputs)
        if key not in checked:  # each data folder and cost table once
            check_inputs(config)
            checked.add(key)


def plan_trials(grid: dict[str, list[Any]], base: dict[str, Any], pretrain: str) -> tuple[list[Trial], list[Trial]]:
    """The pretraining trials (shared mode) and the search trials of a grid over a base configuration."""
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    configs = [absolute_paths(dict(base, **combo)) for combo in combos]
    searches = [Trial(name, SEARCH_JOB, config, combo)
                for name, config, combo in zip(_names(combos, list(grid)), configs, combos)]
    if pretrain == "per-trial":
        return [], searches
    # searches whose configurations agree but for the search-only options share a pretraining
    search_only = {name for name, o in OPTIONS.items() if o.group == SEARCH}
    shared = [{k: v for k, v in c.items() if k not in search_only} for c in configs]
    keys = list(dict.fromkeys(json.dumps(s, sort_keys=True) for s in shared))
    groups = [json.loads(k) for k in keys]
    pretrain_keys = [k for k in grid if k not in search_only]
    group_settings = [{k: g[k] for k in pretrain_keys} for g in groups]
    names = _names(group_settings, pretrain_keys, prefix="pretrain", alone="pretrain")
    pretrainings = [Trial(name, PRETRAIN_JOB, group, settings)
                    for name, group, settings in zip(names, groups, group_settings)]
    by_key = dict(zip(keys, pretrainings))
    searches = [replace(t, config=dict(t.config, from_run=None), options={"pretraining": by_key[k].name})
                for t, k in zip(searches, (json.dumps(s, sort_keys=True) for s in shared))]
    return pretrainings, searches


def sweep_table(experiment: Experiment, trials: list[Trial], grid_keys: list[str]) -> pd.DataFrame:
    """One row per search trial: its settings, status, architecture, kept heads, final on-probabilities."""
    rows = []
    for trial in trials:
        record = experiment.record(trial.name) or {"status": "not run", "message": "", "result": {}}
        result = record.get("result") or {}
        row = {"trial": trial.name, **{k: trial.settings.get(k) for k in grid_keys}, "status": record["status"],
               "message": record.get("message", ""), "architecture": result.get("architecture"),
               "heads": ",".join(result.get("heads", [])), "undecided": ",".join(result.get("undecided", [])),
               **{f"prob/{h}": p for h, p in result.get("probabilities", {}).items()},
               "wall_time_s": record.get("wall_time_s"), "pretraining": trial.options.get("pretraining"),
               "run": str(experiment.trial_dir(trial.name))}
        rows.append(row)
    return pd.DataFrame(rows)


class PretrainingsFirst:
    """The pretrainings first; each search as soon as its pretraining has ended (started from it; an error row
    without running, if it failed), so that no worker waits for pretrainings other than its own."""

    def __init__(self, trials: list[Trial], experiment: Experiment, bar):
        self.experiment, self.bar, self.total = experiment, bar, len(trials)
        self.ready = [t for t in trials if t.job == PRETRAIN_JOB]
        pending = {t.name for t in self.ready}
        self.waiting: dict[str, list[Trial]] = {}  # pretraining still to end → its searches
        for trial in (t for t in trials if t.job == SEARCH_JOB):
            source = trial.options.get("pretraining")
            if source in pending:
                self.waiting.setdefault(source, []).append(trial)
            else:  # per-trial pretraining, or a shared one a resumed sweep already has
                self._release(trial, experiment.record(source) if source else None)

    def _release(self, trial: Trial, made: dict[str, Any] | None) -> None:
        if made is None:
            self.ready.append(trial)
            return
        source = trial.options["pretraining"]
        if made["status"] == "done":
            from_run = str(self.experiment.trial_dir(source))
            self.ready.append(replace(trial, config=dict(trial.config, from_run=from_run)))
        else:
            self.experiment.write_error(trial, f"its pretraining {source} failed: {made['message']}")
            self.bar.update()

    def __len__(self) -> int:
        return self.total

    def next_trial(self) -> Trial | str | None:
        if self.ready:
            return self.ready.pop(0)
        return WAIT if self.waiting else None

    def complete(self, trial: Trial, record: dict[str, Any]) -> None:
        for waiting in self.waiting.pop(trial.name, []):
            self._release(waiting, record)


def _describe(record: dict[str, Any]) -> str:
    result = record.get("result") or {}
    if "architecture" not in result:
        return ""
    undecided = len(result["undecided"])
    return f"architecture {result['architecture']} ({len(result['heads'])} heads, {undecided} undecided)"


def sweep(grid: Mapping[str, Any] | None = None, out: str | Path = "runs/sweep", *,
          base: RunConfig | None = None, pretrain: str = "shared", resources: Resources = Resources(),
          max_trials: int = 256, force: bool = False, resume: bool = False, progress: bool = True) -> pd.DataFrame:
    """Search every combination of `grid` (option → values) over `base`; returns the sweep.csv table.

    With `resume`, the sweep in `out` goes on: finished trials are kept, unfinished ones continue from their own
    checkpoints (only `resources` may change)."""
    experiment = Experiment(out, "sweep")
    resources.validate()
    if resume:
        if grid or base is not None:
            raise NSSError("a resumed sweep keeps its grid and options: give only --out (and resources) with --resume")
        manifest = experiment.manifest()
        grid, base_dict, pretrain = manifest["grid"], manifest["base"], manifest["pretrain"]
    else:
        if not grid:
            raise NSSError("give at least one option to sweep, e.g. --tau 1,2,5 --seed 0,1,2")
        if pretrain not in PRETRAIN_MODES:
            raise NSSError(f"--pretrain: must be one of {', '.join(PRETRAIN_MODES)}, got {pretrain!r}")
        grid = parse_grid(grid)
        count = 1
        for values in grid.values():
            count *= len(values)
        if count > max_trials:
            raise NSSError(f"the grid has {count} trials, more than --max-trials {max_trials}")
        grid = {name: [absolute_paths({name: v})[name] for v in values] for name, values in grid.items()}
        base_dict = (base or RunConfig()).validate().with_absolute_paths().to_dict()
        validate_grid(grid, base_dict)
        experiment.refuse_existing(force)
    pretrainings, searches = plan_trials(grid, base_dict, pretrain)
    with ray_session(resources):
        if not resume:
            experiment.create({"grid": grid, "base": base_dict, "pretrain": pretrain, "max_trials": max_trials})
        pending = [t for t in pretrainings + searches if experiment.record(t.name) is None]
        with progress_bar(len(pending), "sweep", progress) as bar:
            source = PretrainingsFirst(pending, experiment, bar)
            run_trials(source, experiment, resources, progress=progress, describe=_describe, bar=bar)
    table = sweep_table(experiment, searches, list(grid))
    atomic_write(experiment.path / "sweep.csv", lambda tmp: table.to_csv(tmp, index=False))
    return table

