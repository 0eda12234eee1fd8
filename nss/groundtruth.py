"""`nss groundtruth`: every architecture of a space (or a uniform sample) retrained from scratch under one budget,
evaluated on the validation and test splits and profiled, as trials on Ray Tune. The ranking it writes is what
a search is judged against (`nss rank`)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from search_spaces import Architecture, SearchSpace, get_space

from .config import RunConfig
from .derive import save_architecture
from .errors import NSSError
from .io import atomic_write, atomic_write_text
from .metrics import delta_mtl, pareto_mask
from .sweep import absolute_paths
from .trials import Experiment, ListSource, Resources, Trial, ray_session, run_trials

SPLITS = ("val", "test")


def enumerate_architectures(space: SearchSpace, sample: int | None = None, seed: int = 0) -> list[Architecture]:
    """All 2^k architectures of a space's k searchable heads (the fixed heads always kept), minimal first and full
    last; or `sample` of them drawn uniformly without replacement, the minimal and the full network always in."""
    heads = space.searchable
    every = [Architecture(space, space.fixed + tuple(h for i, h in enumerate(heads) if mask >> i & 1))
             for mask in range(2 ** len(heads))]
    if sample is None:
        return every
    if not 2 <= sample <= len(every):
        raise NSSError(f"--sample: {space.name!r} has {len(every)} architectures; a sample holds 2 (the minimal and "
                       f"the full network) to {len(every)}, got {sample}")
    middle = every[1:-1]
    picked = np.random.default_rng(seed).choice(len(middle), sample - 2, replace=False)
    return [every[0]] + [middle[i] for i in sorted(picked)] + [every[-1]]


def searchable_kept(architecture: Architecture) -> list[str]:
    return [h for h in architecture.heads if h not in architecture.space.fixed]


def _metrics_of(row: Any, space: SearchSpace) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from a ranking row's `task/metric` columns."""
    return {t.name: {m.name: row[f"{t.name}/{m.name}"] for m in t.metrics} for t in space.tasks}


def ranking_table(experiment: Experiment, architectures: list[Architecture], seeds: Sequence[int],
                  split: str = "test") -> pd.DataFrame:
    """One row per architecture, means (and spread) over its retraining seeds: every metric of each task's finest
    kept head on `split`, Δ_MTL against the trivial predictor (both splits) and against the full network's
    retraining, cost, Pareto membership (Δ_MTL against latency and against parameters), rank and percentile."""
    space = architectures[0].space
    columns = [(t.name, m.name) for t in space.tasks for m in t.metrics]
    rows, full_metrics = [], None
    for architecture in architectures:
        records = [experiment.record(f"{architecture.id}-seed{s}") for s in seeds]
        done = [r["result"] for r in records if r and r["status"] == "done"]
        errors = [r["message"] for r in records if r and r["status"] == "error"]
        row: dict[str, Any] = {"architecture": architecture.id, "heads": ",".join(searchable_kept(architecture)),
                               "kept": len(searchable_kept(architecture)), "seeds_done": len(done),
                               "status": "done" if done else ("error" if errors else "not run"),
                               "message": errors[0] if errors and not done else "",
                               "wall_time_s": sum(r["wall_time_s"] for r in records if r)}
        if done:
            for task, metric in columns:
                values = [d["splits"][split]["metrics"][task][metric] for d in done]
                row[f"{task}/{metric}"], row[f"{task}/{metric}_std"] = np.mean(values), np.std(values)
            for s in SPLITS:
                values = [d["splits"][s]["delta_mtl"] for d in done]
                suffix = "" if s == split else f"_{s}"
                row[f"delta_mtl{suffix}"], row[f"delta_mtl{suffix}_std"] = np.mean(values), np.std(values)
            for key in ("params", "flops", "latency_ms"):
                row[key] = float(np.mean([d[key] for d in done]))
            if architecture.heads == space.heads:
                full_metrics = _metrics_of(row, space)
        rows.append(row)
    table = pd.DataFrame(rows)
    done = table["status"] == "done"
    if full_metrics is not None:
        table.loc[done, "delta_mtl_vs_full"] = [delta_mtl(_metrics_of(r, space), full_metrics, space.tasks)
                                                for _, r in table[done].iterrows()]
    for cost in ("latency_ms", "params"):
        table[f"pareto_{cost.split('_')[0]}"] = False
        if done.any():
            table.loc[done, f"pareto_{cost.split('_')[0]}"] = pareto_mask(table.loc[done, cost],
                                                                        table.loc[done, "delta_mtl"])
    if done.any():
        scores = table.loc[done, "delta_mtl"]
        table.loc[done, "rank"] = scores.rank(ascending=False, method="min").astype(int)
        n = int(done.sum())
        table.loc[done, "percentile"] = 100 * (n - table.loc[done, "rank"]) / max(n - 1, 1)
    return table.sort_values("rank", kind="stable").reset_index(drop=True) if done.any() else table


def noise_floor(ranking: pd.DataFrame) -> float:
    """The spread of Δ_MTL between retraining seeds of one architecture (median over architectures): differences
    below it are ties. NaN with a single seed."""
    spread = ranking.get("delta_mtl_std")
    if spread is None or ranking["seeds_done"].max() < 2:
        return float("nan")
    return float(spread[ranking["seeds_done"] >= 2].median())


def marginal_values(ranking: pd.DataFrame, space: SearchSpace, column: str = "delta_mtl") -> pd.Series:
    """Per searchable head: mean `column` of the architectures that keep it minus that of those that do not."""
    done = ranking[ranking["status"] == "done"]
    kept = done["heads"].fillna("").str.split(",")
    values = {}
    for head in space.searchable:
        has = kept.map(lambda heads: head in heads)
        values[head] = done.loc[has, column].mean() - done.loc[~has, column].mean() if has.any() and (~has).any() \
            else float("nan")
    return pd.Series(values, name=f"marginal_{column}")


def groundtruth(space: str = "most_net_plus", out: str | Path = "runs/groundtruth", *,
                base: RunConfig | None = None, seeds: Sequence[int] | None = None, sample: int | None = None,
                backend: str = "torch", iters: int = 30, resources: Resources = Resources(), force: bool = False,
                resume: bool = False, progress: bool = True) -> pd.DataFrame:
    """Retrain every architecture of `space` (or `sample` of them, drawn with `base.seed`) once per seed of
    `seeds` (default: `base.seed`) with `base`'s retraining settings; evaluate on validation and test, profile on
    `backend`. Returns ranking.csv's table. With `resume`, the ground truth in `out` goes on."""
    experiment = Experiment(out, "groundtruth")
    resources.validate()
    if resume:
        if base is not None or seeds is not None or sample is not None:
            raise NSSError("a resumed ground truth keeps its settings: give only --out (and resources) with --resume")
        manifest = experiment.manifest()
    else:
        base_config = (base or RunConfig()).validate()
        the_space = get_space(space)
        architectures = enumerate_architectures(the_space, sample, base_config.seed)
        seeds = list(seeds) if seeds is not None else [base_config.seed]
        if not seeds or len(set(seeds)) < len(seeds):
            raise NSSError(f"--seeds: give distinct seeds, got {seeds}")
        experiment.refuse_existing(force)
        base_dict = absolute_paths(dict(base_config.to_dict(), space=space))
        manifest = {"space": the_space.to_dict(), "base": base_dict, "seeds": seeds,
                    "sample": sample, "architectures": [a.id for a in architectures],
                    "options": {"backend": backend, "iters": iters}}
    the_space = SearchSpace.from_dict(manifest["space"])
    architectures = [a for a in enumerate_architectures(the_space) if a.id in set(manifest["architectures"])]
    with ray_session(resources):
        if not resume:
            experiment.create(manifest)
            for architecture in architectures:
                save_architecture(experiment.path / "architectures" / f"{architecture.id}.json", architecture)
        trials = [Trial(f"{a.id}-seed{seed}", "groundtruth",
                        dict(manifest["base"], seed=seed, architecture=str(experiment.path / "architectures" / f"{a.id}.json")),
                        {"architecture": a.id, "heads": ",".join(searchable_kept(a)), "seed": seed},
                        manifest["options"])
                  for a in architectures for seed in manifest["seeds"]]
        pending = [t for t in trials if experiment.record(t.name) is None]
        run_trials(ListSource(pending), experiment, resources, progress=progress, describe=_describe)
    ranking = ranking_table(experiment, architectures, manifest["seeds"])
    atomic_write(experiment.path / "ranking.csv", lambda tmp: ranking.to_csv(tmp, index=False))
    atomic_write_text(experiment.path / "summary.txt", summary(ranking, the_space) + "\n")
    return ranking


def summary(ranking: pd.DataFrame, space: SearchSpace) -> str:
    """A few lines on a ground truth: how many architectures, failures, noise floor, best, marginal values."""
    done = ranking[ranking["status"] == "done"]
    lines = [f"{len(ranking)} architectures of {space.name}: {len(done)} retrained, {len(ranking) - len(done)} failed"]
    if len(done):
        best = done.iloc[0]
        floor = noise_floor(ranking)
        lines.append(f"best Δ_MTL {best['delta_mtl']:+.2f}% ({best['heads'] or 'fixed heads only'}); noise floor "
                     + ("n/a (one seed)" if math.isnan(floor) else f"{floor:.2f} points"))
        marginal = marginal_values(ranking, space)
        lines.append("marginal value of each head (Δ_MTL points with − without): "
                     + ", ".join(f"{h} {v:+.2f}" for h, v in marginal.items()))
    return "\n".join(lines)


def _describe(record: dict[str, Any]) -> str:
    result = record.get("result") or {}
    if "splits" not in result:
        return ""
    return (f"{record['settings']['heads'] or 'fixed heads only'}: test Δ_MTL {result['splits']['test']['delta_mtl']:+.1f}%"
            f", {result['latency_ms']:.1f} ms")

