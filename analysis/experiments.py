"""Many-trial experiments (sweeps, tuning): how often each architecture is found, and tuning's Pareto front."""
from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nss.evaluation.metrics import pareto_mask
from nss.experiments.experiment import is_experiment
from nss.runs.folder import RunFolder

from .figures import draw_latency_plane
from .tables import Runs, architecture_table, run_config, run_label


def experiment_runs(path: str | Path) -> list[Path]:
    """The run folders of an experiment's trials (a tune trial holds a search and a retraining)."""
    trials = Path(path) / "trials"
    found = sorted(p.parent for p in trials.glob(f"*/{RunFolder.CONFIG}")) + \
        sorted(p.parent for p in trials.glob(f"*/*/{RunFolder.CONFIG}"))
    return sorted(found, key=lambda p: p.relative_to(trials).as_posix())


def expand_runs(paths: Runs) -> tuple[list[Path], list[Path]]:
    """Run folders given directly or inside sweep and tune folders, and the experiment folders themselves (a
    ground truth's retrainings are summed up by its ranking, not drawn one by one)."""
    runs, experiments = [], []
    for path in map(Path, paths):
        kind = is_experiment(path)
        if kind:
            experiments.append(path)
            runs += experiment_runs(path) if kind != "groundtruth" else []
        else:
            runs.append(path)
    return runs, experiments


# -- architectures across seeds ----------------------------------------------------------------------------------
def architecture_frequency_table(runs: Runs) -> pd.DataFrame:
    """Per temperature τ and searchable head: the share of the searches at that τ (seeds, other settings) that
    kept it."""
    table = architecture_table(runs)
    table = table[~table["fixed"]]
    if not len(table):
        return pd.DataFrame(columns=["tau", "head", "kept_share", "runs"])
    grouped = table.groupby(["tau", "head"], sort=False)["kept"]
    out = pd.DataFrame({"kept_share": grouped.mean(), "runs": grouped.size()}).reset_index()
    return out.sort_values("tau", kind="stable").reset_index(drop=True)


def modal_architecture_table(runs: Runs) -> pd.DataFrame:
    """Per τ: the architecture most searches found (its kept heads), how many found it, and of how many."""
    table = architecture_table(runs)
    rows = []
    for tau, part in table.groupby("tau"):
        kept = part[part["kept"]].groupby("run")["head"].apply(lambda h: ",".join(h))
        counts = kept.value_counts()
        rows.append({"tau": tau, "heads": counts.index[0], "found_by": int(counts.iloc[0]), "runs": int(len(kept)),
                     "distinct": int(len(counts))})
    return pd.DataFrame(rows, columns=["tau", "heads", "found_by", "runs", "distinct"])


def plot_architecture_frequency(runs: Runs) -> Figure:
    """Heat map of the share of searches keeping each head at each τ, with the modal architecture per τ."""
    table = architecture_frequency_table(runs)
    modal = modal_architecture_table(runs).set_index("tau")
    taus, heads = sorted(table["tau"].unique()), list(dict.fromkeys(table["head"]))
    grid = table.pivot(index="head", columns="tau", values="kept_share").loc[heads, taus]
    fig = Figure(figsize=(1.6 * len(taus) + 4, 0.5 * len(heads) + 2.2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(grid.values, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for (i, j), share in np.ndenumerate(grid.values):
        ax.text(j, i, f"{share:.0%}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(taus)), [f"τ = {t:g}\nmodal found by {modal.loc[t, 'found_by']}/{modal.loc[t, 'runs']}"
                                     for t in taus], fontsize=8)
    ax.set_yticks(range(len(heads)), heads)
    ax.set_title("Share of searches that kept each head, per temperature")
    fig.colorbar(image, ax=ax, label="kept by this share of runs")
    return fig


# -- tuning ------------------------------------------------------------------------------------------------------
def tune_trials(experiment: str | Path) -> pd.DataFrame:
    path = Path(experiment) / "trials.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def plot_tune_pareto(experiment: str | Path) -> Figure:
    """Every finished tuning trial on the latency / Δ_MTL plane; the study's Pareto set joined by a line."""
    table = tune_trials(experiment)
    done = table[table["status"] == "done"]
    # the front on these two axes, whatever objectives the study had (its pareto.csv is on those)
    done = done.assign(pareto=pareto_mask(done["latency_ms"], done["delta_mtl"]))
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    draw_latency_plane(ax, done, "trial", annotate="front", label="trials")
    ax.set(xlabel="median latency, batch 1 (ms)", ylabel="validation Δ_MTL vs trivial predictor (%)",
           title=f"Tuning trials ({len(done)} finished)")
    return fig


def optuna_figures(experiment: str | Path) -> dict[str, Figure]:
    """Optuna's own plots of the study: optimisation history and parameter importances of the first objective."""
    import optuna
    from optuna.visualization import matplotlib as ovm

    from nss.experiments import STUDY_NAME
    study = optuna.load_study(storage=f"sqlite:///{Path(experiment) / 'study.db'}", study_name=STUDY_NAME)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return {}
    name = study.metric_names[0] if study.metric_names else "objective 0"
    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    figures = {}
    with warnings.catch_warnings():  # Optuna marks its matplotlib backend experimental
        warnings.simplefilter("ignore")
        for key, plot in (("optuna_history", ovm.plot_optimization_history),
                          ("optuna_importances", ovm.plot_param_importances)):
            try:
                ax = plot(study, target=target, target_name=name)
            except (RuntimeError, ValueError, ZeroDivisionError):  # e.g. importances of a parameter that never varied
                continue
            figures[key] = ax.figure
    return figures


# -- ground truth ------------------------------------------------------------------------------------------------
def search_picks(groundtruth: str | Path, runs: Runs) -> pd.DataFrame:
    """The search runs among `runs`, where their architectures stand in the ground truth (nss.rank), with a label
    saying τ and seed."""
    from nss.experiments.rank import rank
    searches = [Path(r) for r in runs if run_config(r).get("command") == "search"
                and (Path(r) / RunFolder.ARCHITECTURE).is_file()]
    if not searches:
        return pd.DataFrame(columns=["run", "architecture", "rank", "of", "percentile", "delta_mtl", "label"])
    with tempfile.TemporaryDirectory() as folder:
        picks = rank(groundtruth, searches, out=Path(folder) / "rank.csv")
    picks["seed"] = [run_config(r).get("seed") for r in searches]
    picks["label"] = [f"{run_label(r)} (τ={run_config(r).get('tau'):g}, seed {run_config(r).get('seed')})"
                      for r in searches]
    return picks


def _values(column: pd.Series) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in sorted(column.dropna().unique()))


def plot_groundtruth(groundtruth: str | Path, picks: pd.DataFrame) -> Figure:
    """Every ground-truth architecture on the latency / Δ_MTL plane with its Pareto front (those retrained with
    several seeds: their mean, ± the seeds' standard deviation); the architectures the searches found
    (`search_picks`) marked and labelled."""
    from nss.experiments.rank import load_ranking
    ranking = load_ranking(groundtruth)[0]
    done = ranking[ranking["status"] == "done"]
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(done["latency_ms"], done["delta_mtl"], c=done["kept"], cmap="viridis", s=25, label="architectures")
    several = done[done["seeds_done"] >= 2]
    if len(several):
        ax.errorbar(several["latency_ms"], several["delta_mtl"], yerr=several["delta_mtl_std"], fmt="none",
                    ecolor="grey", elinewidth=0.8, capsize=2, label=f"{len(several)} with seeds ≥ 2: mean ± std")
    front = done[done["pareto_latency"]].sort_values("latency_ms")
    ax.step(front["latency_ms"], front["delta_mtl"], where="post", color="tab:red", label="Pareto front")
    for architecture, group in picks.groupby("architecture", sort=False):  # one star per architecture found
        found = done[done["architecture"] == architecture]
        if len(found):
            x, y = found["latency_ms"].iloc[0], found["delta_mtl"].iloc[0]
            ax.scatter([x], [y], marker="*", s=220, color="tab:orange", edgecolor="black", zorder=3)
            found_by = (group["label"].iloc[0] if len(group) == 1 else
                        f"{len(group)} searches: τ {_values(group['tau'])}, seed {_values(group['seed'])}")
            ax.annotate(f"{found_by}: rank {int(found['rank'].iloc[0])}/{len(done)}", (x, y), fontsize=8,
                        xytext=(6, -10), textcoords="offset points")
    ax.set(xlabel="median latency, batch 1 (ms)", ylabel="test Δ_MTL vs trivial predictor (%)",
           title=f"Ground truth: {len(done)} architectures (colour: searchable heads kept)"
                 + ("; ★ found by NSS" if len(picks) else ""))
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_marginal_values(groundtruth: str | Path, runs: Runs) -> Figure:
    """Each searchable head's measured marginal value (mean Δ_MTL with it − without it) beside the final gate
    on-probability the searches gave it (mean and range over the searches)."""
    from nss.experiments.groundtruth import marginal_values
    from nss.experiments.rank import load_ranking
    ranking, space, _ = load_ranking(groundtruth)
    marginal = marginal_values(ranking, space)
    gates = pd.DataFrame([json.loads((Path(r) / RunFolder.ARCHITECTURE).read_text()).get("gates", {})
                          for r in runs if run_config(r).get("command") == "search"
                          and (Path(r) / RunFolder.ARCHITECTURE).is_file()])
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(marginal))
    ax.bar(x - 0.2, marginal.values, 0.4, color="tab:blue", label="marginal value (Δ_MTL points)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("Δ_MTL with the head − without (points)")
    ax.set_xticks(x, marginal.index, rotation=20, ha="right")
    if len(gates):
        right = ax.twinx()
        probs = gates.reindex(columns=marginal.index)
        right.bar(x + 0.2, probs.mean(), 0.4, color="tab:orange", alpha=0.8, label="gate on-probability")
        right.errorbar(x + 0.2, probs.mean(), yerr=[probs.mean() - probs.min(), probs.max() - probs.mean()],
                       fmt="none", color="black", capsize=3)
        right.set(ylim=(0, 1), ylabel=f"final gate on-probability ({len(gates)} searches)")
        fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    ax.set_title("What each head is worth, measured and as the search saw it")
    return fig


def plot_delta_distribution(groundtruth: str | Path, picks: pd.DataFrame) -> Figure:
    """The distribution of Δ_MTL over the space, with the percentile of each architecture a search found."""
    from nss.experiments.rank import load_ranking
    done = load_ranking(groundtruth)[0].query("status == 'done'")
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    ax.hist(done["delta_mtl"], bins=min(30, max(5, len(done) // 2)), color="lightgrey", edgecolor="grey")
    placed = picks.dropna(subset=["delta_mtl"])
    for pick in placed.itertuples():
        ax.axvline(pick.delta_mtl, color="tab:orange")
        ax.annotate(f"{pick.label}\n{pick.percentile:.0f}th percentile", (pick.delta_mtl, ax.get_ylim()[1] * 0.9),
                    fontsize=8, rotation=90, va="top", ha="right")
    title = "Δ_MTL over the space" + (", and where the searches' architectures fall" if len(placed) else "")
    ax.set(xlabel="test Δ_MTL vs trivial predictor (%)", ylabel="architectures", title=title)
    return fig
