"""Figures of the dissertation's analyses (§6.3.3), each a function of run folders returning a matplotlib Figure."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from search_spaces import Architecture, head_name

from .tables import (Runs, architecture_table, conflict_rates, gate_table, group_conflict_rates, pair_conflict_rates,
                     pareto_table, run_config, run_label, scale_gain_table, validation_table)


def _bars(ax, frame, category: str, series: str, value: str) -> None:
    """Grouped bars: one group per `category`, one bar per `series`."""
    categories, names = list(dict.fromkeys(frame[category])), list(dict.fromkeys(frame[series]))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        part = frame[frame[series] == name].set_index(category)[value]
        ax.bar(np.arange(len(categories)) + i * width, [part.get(c, np.nan) for c in categories], width, label=name)
    ax.set_xticks(np.arange(len(categories)) + width * (len(names) - 1) / 2, categories, rotation=30, ha="right")


def plot_conflicts(runs: Runs) -> Figure:
    """% of measured updates with a gradient conflict per epoch (Fig. 6.8), per task pair and per module group."""
    fig = Figure(figsize=(15, 4.5), layout="constrained")
    ax_epoch, ax_pair, ax_group = fig.subplots(1, 3)
    rates = conflict_rates(runs)
    # a moving average over enough epochs to hold ~10 measured updates (a few per epoch at the default K)
    window = max(1, int(np.ceil(10 / max(rates["updates"].median(), 1)))) if len(rates) else 1
    for (run, phase), part in rates.groupby(["run", "phase"], sort=False):
        conflicted = (part["conflict_pct"] * part["updates"]).rolling(window, min_periods=1).sum()
        smoothed = conflicted / part["updates"].rolling(window, min_periods=1).sum()
        ax_epoch.plot(part["epoch"], smoothed, marker=".", label=f"{run} ({phase})")
    title = "Conflicting updates per epoch" + (f" ({window}-epoch moving average)" if window > 1 else "")
    ax_epoch.set(xlabel="epoch", ylabel="updates with a conflict (%)", title=title, ylim=(0, 100))
    ax_epoch.legend(fontsize=8)
    pairs = pair_conflict_rates(runs).assign(series=lambda t: t["run"] + " (" + t["phase"] + ")")
    _bars(ax_pair, pairs, "pair", "series", "conflict_pct")
    ax_pair.set(ylabel="updates with this pair in conflict (%)", title="Per task pair", ylim=(0, 100))
    groups = group_conflict_rates(runs).assign(series=lambda t: t["run"] + " (" + t["phase"] + ")")
    _bars(ax_group, groups, "group", "series", "conflict_pct")
    ax_group.set(ylabel="task pairs in conflict (%)", title="Per module group (where conflicts live)", ylim=(0, 100))
    ax_group.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_gate_convergence(runs: Runs) -> Figure:
    """On-probability and mean |Δ| of every searchable head over the search, one row per temperature τ: mean
    across the runs at that τ (seeds, other settings) with a min–max band (Fig. 6.7); the grey band is where a
    gate ending there is undecided (the threshold ± the margin)."""
    runs = list(runs)
    decision = {run_label(r): (run_config(r).get("threshold", 0.5), run_config(r).get("margin", 0.15)) for r in runs}
    table = gate_table(runs)
    table = table[table["phase"] == "search"]
    taus = sorted(table["tau"].unique())
    fig = Figure(figsize=(12, 3.8 * len(taus)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(taus), 2))
    for (ax_prob, ax_delta), tau in zip(axes, taus):
        at_tau = table[table["tau"] == tau]
        for head, part in at_tau.groupby("head", sort=False):
            for ax, column in ((ax_prob, "prob"), (ax_delta, "delta")):
                stats = part.groupby("step")[column].agg(["mean", "min", "max"])
                line, = ax.plot(stats.index, stats["mean"], label=head)
                ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
        runs_at_tau = at_tau["run"].nunique()
        threshold, margin = decision[at_tau["run"].iloc[0]]
        ax_prob.axhline(threshold, color="grey", linestyle=":", linewidth=1)
        ax_prob.axhspan(threshold - margin, threshold + margin, color="grey", alpha=0.12, linewidth=0)
        ax_prob.set(xlabel="search step", ylabel="gate on-probability", ylim=(0, 1),
                    title=f"Gates, τ = {tau:g} ({runs_at_tau} run{'s' if runs_at_tau > 1 else ''})")
        ax_delta.set(xlabel="search step", ylabel="mean |Δ| (output units)", title=f"Refinements Δ, τ = {tau:g}")
        ax_prob.legend(fontsize=8, ncol=2)
    return fig


def plot_architecture(architecture: Architecture, probabilities: dict[str, float] | None = None) -> Figure:
    """The task × scale grid of an architecture: kept, dropped, fixed, with gate on-probabilities."""
    space, probabilities = architecture.space, probabilities or {}
    states = np.zeros((len(space.tasks), space.scales))  # 0 absent, 1 dropped, 2 kept, 3 fixed
    fig = Figure(figsize=(1.6 * space.scales + 2, 0.8 * len(space.tasks) + 1.2), layout="constrained")
    ax = fig.subplots()
    for i, task in enumerate(space.tasks):
        for s in range(1, space.scales + 1):
            head = head_name(task.name, s)
            state = 3 if head in space.fixed else 2 if head in architecture.heads else 1 if head in space.heads else 0
            states[i, s - 1] = state
            text = {0: "–", 1: "dropped", 2: "kept", 3: "fixed"}[state]
            if head in probabilities:
                text += f"\n{probabilities[head]:.2f}"
            ax.text(s - 1, i, text, ha="center", va="center", fontsize=9)
    ax.imshow(states, cmap=ListedColormap(["white", "#f4c7c3", "#b7e1cd", "#8fbc8f"]), vmin=0, vmax=3)
    ax.set_xticks(range(space.scales), [f"scale {s}" for s in range(1, space.scales + 1)])
    ax.set_yticks(range(len(space.tasks)), [t.name for t in space.tasks])
    ax.set_title(f"architecture {architecture.id}")
    return fig


def plot_temperature_robustness(runs: Runs) -> Figure:
    """The heads kept by the search at every temperature τ (Fig. 6.5): one column per search run."""
    table = architecture_table(runs).sort_values(["tau", "run"], kind="stable")
    columns = list(dict.fromkeys(table["run"]))
    heads = list(dict.fromkeys(table["head"]))
    grid = table.pivot(index="head", columns="run", values="kept").loc[heads, columns].astype(float)
    fig = Figure(figsize=(1.4 * len(columns) + 3, 0.45 * len(heads) + 1.5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid.values, cmap=ListedColormap(["#f4c7c3", "#b7e1cd"]), vmin=0, vmax=1, aspect="auto")
    taus = table.drop_duplicates("run").set_index("run")["tau"]
    ax.set_xticks(range(len(columns)), [f"τ={taus[c]:g}\n{c}" for c in columns], fontsize=8)
    ax.set_yticks(range(len(heads)), heads)
    for (i, j), kept in np.ndenumerate(grid.values):
        ax.text(j, i, "kept" if kept else "dropped", ha="center", va="center", fontsize=8)
    ax.set_title("Architecture found at each temperature")
    return fig


def plot_scale_gains(runs: Runs) -> Figure:
    """Each metric at each scale, after upsampling to full resolution, for every run (Fig. 6.10)."""
    table = scale_gain_table(runs)
    metrics = list(dict.fromkeys(table["task"] + " / " + table["metric"]))
    fig = Figure(figsize=(4.2 * max(len(metrics), 1), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(metrics), 1)))
    for ax, name in zip(axes, metrics):
        task, metric = name.split(" / ")
        part = table[(table["task"] == task) & (table["metric"] == metric)].assign(
            series=lambda t: t["run"] + " (" + t["network"] + ")", scale=lambda t: "scale " + t["scale"].astype(str))
        _bars(ax, part.sort_values("scale"), "scale", "series", "value")
        ax.set(title=name, ylabel=metric)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_training_curves(runs: Runs) -> Figure:
    """Validation metrics of each task's finest head and Δ_MTL over retraining, one line per run labelled by its
    balancing method (Fig. 6.9)."""
    table = validation_table(runs)
    table = table.assign(series=lambda t: t["run"] + " (" + t["balancing"].astype(str) + ")")
    finest = table[table["head"] != "all"].copy()
    finest["scale"] = finest["head"].str.split("@").str[1].astype(int)
    finest["task"] = finest["head"].str.split("@").str[0]
    finest = finest[finest["scale"] == finest.groupby(["run", "task"])["scale"].transform("min")]
    panels = [("all", "delta_mtl")] + list(dict.fromkeys(zip(finest["task"], finest["metric"])))
    fig = Figure(figsize=(4 * len(panels), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (task, metric) in zip(axes, panels):
        part = table[(table["head"] == "all")] if task == "all" else finest[finest["task"] == task]
        for series, rows in part[part["metric"] == metric].groupby("series", sort=False):
            ax.plot(rows["step"], rows["value"], marker=".", label=series)
        ax.set(xlabel="retraining step", ylabel="Δ_MTL vs trivial (%)" if task == "all" else metric,
               title="multi-task score" if task == "all" else f"{task} (finest head)")
    axes[0].legend(fontsize=8)
    return fig


def draw_latency_plane(ax, table, names: str, annotate: str = "all", label: str = "runs") -> None:
    """Points (latency_ms, delta_mtl) of a table with a boolean `pareto` column; the front joined in red; the
    points named from column `names` (every point, or only the front's)."""
    ax.scatter(table["latency_ms"], table["delta_mtl"], color="grey", label=label)
    front = table[table["pareto"]].sort_values("latency_ms")
    ax.plot(front["latency_ms"], front["delta_mtl"], color="tab:red", marker="o", label="Pareto front")
    for row in (table if annotate == "all" else front).itertuples():
        ax.annotate(getattr(row, names), (row.latency_ms, row.delta_mtl), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")
    ax.legend(fontsize=8)


def plot_pareto(runs: Runs) -> Figure:
    """Latency (profile.json) against Δ_MTL (eval.csv) of every run; the Pareto front highlighted."""
    table = pareto_table(runs)
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    draw_latency_plane(ax, table, "run")
    backends = ", ".join(sorted(set(table["backend"] + " " + table["device"])))
    ax.set(xlabel=f"median latency, batch 1 (ms; {backends})", ylabel="Δ_MTL vs trivial predictor (%)",
           title="Quality against latency")
    busy = table[pd.to_numeric(table["other_load_cores"], errors="coerce") >= 0.5]
    if len(busy):  # a latency timed beside other work is slower than the network is
        fig.text(0.01, 0.005, "timed on a busy machine: " + ", ".join(
            f"{r.run} ({r.other_load_cores:.1f} cores taken)" for r in busy.itertuples()), fontsize=7, color="darkred")
    return fig
