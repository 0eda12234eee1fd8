"""`nss rank`: where the architectures of search runs stand in a ground truth (`nss groundtruth`), and how well
the searches' gate probabilities predict each head's measured value."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from search_spaces import Architecture, SearchSpace, read_json

from ..errors import NSSError
from ..io import atomic_write
from ..runs.folder import RunFolder
from .experiment import Experiment
from .groundtruth import marginal_values


def load_ranking(groundtruth: str | Path) -> tuple[pd.DataFrame, SearchSpace, Experiment]:
    experiment = Experiment(groundtruth, "groundtruth")
    manifest = experiment.manifest()
    path = experiment.path / "ranking.csv"
    if not path.is_file():
        raise NSSError(f"{path}: not written yet (finish the ground truth with `nss groundtruth --out "
                       f"{groundtruth} --resume`)")
    return pd.read_csv(path, dtype={"heads": str}), SearchSpace.from_dict(manifest["space"]), experiment


def search_wall_time(run: Path, config: dict) -> float:
    """Seconds the search took: its search phase, and the pretraining it ran or started from."""
    if not (run / RunFolder.METRICS).is_file():
        raise NSSError(f"{run}: no metrics.csv, so no record of how long the search took")
    metrics = pd.read_csv(run / RunFolder.METRICS)
    total = float(metrics.groupby("phase")["wall_time"].max().sum())
    if config.get("from_run") and (Path(config["from_run"]) / RunFolder.METRICS).is_file():
        pretraining = pd.read_csv(Path(config["from_run"]) / RunFolder.METRICS)
        total += float(pretraining[pretraining["phase"] == "pretrain"]["wall_time"].max())
    return total


def front_at(ranking: pd.DataFrame, latency: float) -> float:
    """The best Δ_MTL any ground-truth architecture reaches at this latency or less (the Pareto front's value)."""
    faster = ranking[(ranking["status"] == "done") & (ranking["latency_ms"] <= latency)]
    return float(faster["delta_mtl"].max()) if len(faster) else float("nan")


def rank(groundtruth: str | Path, runs: Sequence[str | Path], *, out: str | Path | None = None) -> pd.DataFrame:
    """One row per search run: its architecture's rank, percentile and Pareto standing in the ground truth, the
    rank correlation (Kendall's τ, Spearman's ρ) of its per-head scores (architecture.json `scores`: the final gate
    probabilities, or what its `select` ranked the heads by) with the heads' marginal values,
    and what the search cost against the ground truth. Written to `out` (default GT/rank.csv)."""
    ranking, space, experiment = load_ranking(groundtruth)
    done = ranking[ranking["status"] == "done"]
    if not len(done):
        raise NSSError(f"{groundtruth}: no architecture of the ground truth was retrained")
    marginal = marginal_values(ranking, space)
    best = done["delta_mtl"].max()
    groundtruth_wall = float(ranking["wall_time_s"].sum())
    rows = []
    for run in map(Path, runs):
        config = RunFolder(run).require_existing().read_yaml(RunFolder.CONFIG)
        path = run / RunFolder.ARCHITECTURE
        if config.get("command") != "search" or not path.is_file():
            raise NSSError(f"{run}: not a finished search run (made by `nss {config.get('command')}`"
                           f"{'' if path.is_file() else ', no architecture.json'})")
        data = read_json(path)
        architecture = Architecture.load(path)
        if architecture.space != space:
            raise NSSError(f"{run}: searched space {architecture.space.name!r}, but the ground truth is of "
                           f"{space.name!r}")
        scores = data.get("scores") or data.get("gates", {})  # what the search ranked the heads by
        row = {"run": run.name, "tau": data.get("tau"), "select": data.get("select", "gates"),
               "architecture": architecture.id, "heads": ",".join(architecture.searchable_kept)}
        match = done[done["architecture"] == architecture.id]
        if len(match):
            found = match.iloc[0]
            row.update({"rank": int(found["rank"]), "of": len(done), "percentile": float(found["percentile"]),
                        "delta_mtl": float(found["delta_mtl"]), "best_delta_mtl": float(best),
                        "tied_with_best": found.get("tied_with_best"),
                        "pareto_latency": bool(found["pareto_latency"]), "pareto_params": bool(found["pareto_params"]),
                        "below_front": front_at(ranking, found["latency_ms"]) - float(found["delta_mtl"])})
        else:
            listed = ranking.loc[ranking["architecture"] == architecture.id, "status"]
            standing = {"not run": "not retrained yet", "error": "failed"}
            row["note"] = (f"architecture {standing[listed.iloc[0]]} in the ground truth" if len(listed)
                           else "architecture not in the ground truth (a sample)")
        heads = [h for h in space.searchable if h in scores and not math.isnan(marginal[h])
                 and not math.isnan(scores[h])]
        if len(heads) >= 3:
            by_search, values = [scores[h] for h in heads], [marginal[h] for h in heads]
            kendall, spearman = stats.kendalltau(by_search, values), stats.spearmanr(by_search, values)
            row.update({"kendall_tau": float(kendall.statistic), "kendall_p": float(kendall.pvalue),
                        "spearman_rho": float(spearman.statistic), "spearman_p": float(spearman.pvalue)})
        row.update({"search_wall_s": search_wall_time(run, config), "groundtruth_wall_s": groundtruth_wall})
        row["cost_ratio"] = groundtruth_wall / row["search_wall_s"] if row["search_wall_s"] > 0 else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    atomic_write(Path(out) if out else experiment.path / "rank.csv", lambda tmp: table.to_csv(tmp, index=False))
    return table
