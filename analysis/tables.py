"""Tidy pandas tables read from run folders: one row per observation, a `run` column naming the run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from nss.evaluation.evaluate import finest_per_task
from nss.evaluation.metrics import delta_mtl, pareto_mask
from nss.runs.folder import RunFolder
from search_spaces import Architecture, SearchSpace, parse_head

Runs = Iterable[str | Path]


def run_config(run: str | Path) -> dict:
    """A run's config.yaml as saved (its command and every option)."""
    return RunFolder(run).require_existing().read_yaml(RunFolder.CONFIG)


def run_label(run: str | Path) -> str:
    """A short name for legends: the folder name; for a trial of an experiment, the experiment's and the trial's
    (sweep-tau/tau5-seed0, tune/t003-search), so that trials of two experiments stay apart."""
    path = Path(run)
    if path.parent.name == "trials":
        return f"{path.parent.parent.name}/{path.name}"
    if path.parent.parent.name == "trials":
        return f"{path.parent.parent.parent.name}/{path.parent.name}-{path.name}"
    return path.name


def _read(runs: Runs, name: str) -> pd.DataFrame:
    """One CSV of every run that has it, with a leading `run` column; empty when none has it."""
    frames = []
    for run in runs:
        path = Path(run) / name
        if path.is_file():
            frame = pd.read_csv(path)
            frame.insert(0, "run", run_label(run))
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _as_list(runs: Runs | str | Path) -> list:
    return [runs] if isinstance(runs, (str, Path)) else list(runs)


# -- gradient conflicts ------------------------------------------------------------------------------------------
def conflict_table(runs: Runs | str | Path) -> pd.DataFrame:
    """conflicts.csv of the runs, with `conflict` = cosine < 0 (Yu et al. 2020)."""
    table = _read(_as_list(runs), RunFolder.CONFLICTS)
    if len(table):
        table["conflict"] = table["cosine"] < 0
    return table


def conflict_rates(runs: Runs | str | Path) -> pd.DataFrame:
    """Per run, phase and epoch: % of measured updates with at least one conflicting task pair over all shared
    parameters (dissertation Fig. 6.8), and how many updates were measured."""
    table = conflict_table(runs)
    if not len(table):
        return pd.DataFrame(columns=["run", "phase", "epoch", "conflict_pct", "updates"])
    per_update = table[table["group"] == "all"].groupby(["run", "phase", "epoch", "step"], sort=False)["conflict"].any()
    grouped = per_update.groupby(["run", "phase", "epoch"], sort=False)
    return pd.DataFrame({"conflict_pct": 100 * grouped.mean(), "updates": grouped.size()}).reset_index()


def pair_conflict_rates(runs: Runs | str | Path) -> pd.DataFrame:
    """Per run, phase and task pair: % of measured updates in which that pair conflicts (all shared parameters)."""
    table = conflict_table(runs)
    if not len(table):
        return pd.DataFrame(columns=["run", "phase", "pair", "conflict_pct"])
    table = table[table["group"] == "all"].assign(pair=lambda t: t["task_a"] + " – " + t["task_b"])
    rates = 100 * table.groupby(["run", "phase", "pair"], sort=False)["conflict"].mean()
    return rates.rename("conflict_pct").reset_index()


def group_conflict_rates(runs: Runs | str | Path) -> pd.DataFrame:
    """Per run, phase and module group: % of (update, task pair) cosines below zero: which scale or module
    carries the conflicts."""
    table = conflict_table(runs)
    if not len(table):
        return pd.DataFrame(columns=["run", "phase", "group", "conflict_pct"])
    table = table[table["group"] != "all"]
    rates = 100 * table.groupby(["run", "phase", "group"], sort=False)["conflict"].mean()
    rates = rates.rename("conflict_pct").reset_index()
    order = {"encoder": 0, "alignment": 1, "decoder": 2}  # then heads; coarse to fine within each
    key = rates["group"].map(lambda g: (order.get(g.split("@")[0], 3), g))
    return rates.iloc[key.argsort(kind="stable")].reset_index(drop=True)


# -- gates and architectures -------------------------------------------------------------------------------------
def gate_table(runs: Runs | str | Path) -> pd.DataFrame:
    """gates.csv (on-probability and logit per head and step) joined with deltas.csv (mean |Δ|)."""
    runs = _as_list(runs)
    gates, deltas = _read(runs, RunFolder.GATES), _read(runs, RunFolder.DELTAS)
    if not len(gates):
        return pd.DataFrame(columns=["run", "phase", "step", "head", "prob", "delta"])
    deltas = deltas.rename(columns={"value": "delta"})[["run", "phase", "step", "head", "delta"]]
    return gates.merge(deltas, on=["run", "phase", "step", "head"], how="left")


def architecture_table(runs: Runs | str | Path) -> pd.DataFrame:
    """Per search run and head: τ, kept, on-probability (fixed heads have none) from architecture.json."""
    rows = []
    for run in _as_list(runs):
        path = Path(run) / RunFolder.ARCHITECTURE
        if run_config(run).get("command") != "search" or not path.is_file():
            continue
        data = json.loads(path.read_text())
        arch = Architecture.from_dict(data)
        for head in arch.space.heads:
            task, scale = parse_head(head)
            rows.append({"run": run_label(run), "tau": data.get("tau"), "head": head, "task": task, "scale": scale,
                         "kept": head in arch.heads, "fixed": head in arch.space.fixed,
                         "prob": data.get("gates", {}).get(head)})
    return pd.DataFrame(rows, columns=["run", "tau", "head", "task", "scale", "kept", "fixed", "prob"])


# -- evaluation, training curves, cost ---------------------------------------------------------------------------
def scale_gain_table(runs: Runs | str | Path) -> pd.DataFrame:
    """Every metric of every head at every scale (eval.csv), with `network`: supernet or derived."""
    runs = _as_list(runs)
    table = _read(runs, RunFolder.EVAL)
    if not len(table):
        return pd.DataFrame(columns=["run", "network", "task", "scale", "metric", "value"])
    kinds = {run_label(r): ("derived" if run_config(r).get("command") == "retrain" and
                            len(Architecture.load(Path(r) / RunFolder.ARCHITECTURE).dropped) else "supernet")
             for r in runs}
    table = table[(table["model"] == "network") & (table["task"] != "all")].copy()
    table.insert(1, "network", table["run"].map(kinds))
    return table


def validation_table(runs: Runs | str | Path) -> pd.DataFrame:
    """validation.csv of retraining runs with their task balancing: the curves of Fig. 6.9."""
    runs = _as_list(runs)
    table = _read(runs, RunFolder.VALIDATION)
    if len(table):
        balancing = {run_label(r): run_config(r).get("balancing") for r in runs}
        table.insert(1, "balancing", table["run"].map(balancing))
    return table


def pareto_table(runs: Runs | str | Path) -> pd.DataFrame:
    """Per run with profile.json and eval.csv: median latency, parameters, FLOPs and Δ_MTL (%) of each task's
    finest head against the trivial predictor; `pareto` marks runs no other run beats on both latency and Δ_MTL.
    `other_load_cores`: the cores other processes kept busy while the run was timed (empty for older profiles)."""
    rows = []
    for run in _as_list(runs):
        profile_path, eval_path = Path(run) / RunFolder.PROFILE, Path(run) / RunFolder.EVAL
        if not (profile_path.is_file() and eval_path.is_file()):
            continue
        profile, table = json.loads(profile_path.read_text()), pd.read_csv(eval_path)
        table = table[table["task"] != "all"]
        space = SearchSpace.load(Path(run) / RunFolder.SPACE)
        score = delta_mtl(finest_per_task(table), finest_per_task(table, "baseline"), space.tasks)
        rows.append({"run": run_label(run), "latency_ms": profile["latency_ms"]["median"],
                     "backend": profile["backend"], "device": profile["device"], "params": profile["params"],
                     "flops": profile["flops"], "delta_mtl": score, "torch_threads": profile.get("torch_threads"),
                     "other_load_cores": profile.get("other_load_cores")})
    table = pd.DataFrame(rows, columns=["run", "latency_ms", "backend", "device", "params", "flops", "delta_mtl",
                                        "torch_threads", "other_load_cores"])
    table["pareto"] = pareto_mask(table["latency_ms"], table["delta_mtl"])
    return table
