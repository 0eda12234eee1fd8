"""Is a search's pick tied with the best? Every search strategy's picks placed in a ground truth (`nss rank`),
per scenario, beside the baselines any search must beat: one architecture drawn at random (the exact expectation
over the ground truth), the full and the minimal network, and random search at equal budget (architectures drawn
at random, as many as the CPU time of one search and its retraining retrains, the best on validation kept: its
exact expectation from the ranking, no new runs).

A strategy is what a search's config.yaml says of the options that pick heads (select, sparsity kind and weight,
gate warm-up, contiguity, τ, relaxation); the runs of one strategy differ by their seed. Per strategy: mean, median
and worst regret (best Δ_MTL of the ground truth − the pick's, in points), mean rank, picks tied with the best
(within the ground truth's noise), picks on the latency Pareto front or within noise of it, picks faster than the
full network, how often restoration@1 is kept and flow@1 is kept without flow@2, Kendall τ of the per-head scores
against the heads' marginal values (beside its noise ceiling: τ between the marginal values of two draws of the
ground truth's retraining noise), for one-shot searches the Kendall τ of every sub-network's validation Δ_MTL on the
inherited weights with the ground truth's, and the cost (CPU seconds of pretraining + search, and in dissertation
searches: `log` strategy's mean).

    python benchmarks/search_validity.py --groundtruth textured=runs/reference-groundtruth/gt-4000-64 \\
        --groundtruth thin-fast=runs/reference-groundtruth/thin-fast/gt-4000 --runs RUNS_DIR... --out OUT

Writes OUT/validity.csv (long form: scenario, strategy, is_default, seed, heads, rank, regret, tied_with_best,
on_front, cost_s, with the baselines' expectations as rows without a seed), OUT/validity.md (a table per
scenario) and OUT/validity.png (regret per strategy, one dot per seed, the random pick's and the full network's
as lines).
"""
from __future__ import annotations

import argparse
import math
import tempfile
from itertools import product
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import comb

from nss.config import PREDATES, RunConfig
from nss.experiments.groundtruth import marginal_values, noise_floor, tie_margin
from nss.experiments.rank import front_at, load_ranking, rank
from nss.runs.folder import RunFolder
from nss.scale_search.derive import contiguous_heads, with_fixed_heads
from nss.training.selection import fewest_heads_within
from search_spaces import read_json

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STRATEGY_OPTIONS = ("select", "sparsity_kind", "sparsity", "gate_warmup", "min_gain", "contiguous",
                    "contiguous_selection", "tau", "relaxation")
DEFAULTS = {name: getattr(RunConfig(), name) for name in STRATEGY_OPTIONS}


def settings(config: dict) -> dict:
    """A run's strategy options, with the value of those it predates."""
    return {name: config.get(name, PREDATES.get(name)) for name in STRATEGY_OPTIONS}


def strategy_of(config: dict) -> str:
    """A readable name of the options that pick heads, the defaults left out but for select and penalty."""
    parts = [config["select"]]
    if config["select"] != "oneshot":  # a one-shot search's gates are never stepped: no penalty to name
        parts.append(config["sparsity_kind"] if config["sparsity"] > 0 else "no sparsity")
        if config["sparsity"] not in (0, DEFAULTS["sparsity"]):
            parts.append(f"μ {config['sparsity']:g}")
    if config["gate_warmup"]:
        parts.append(f"warm-up {config['gate_warmup']}")
    if config["min_gain"] and config["select"] != "gates":
        parts.append(f"min gain {config['min_gain']:g}")
    if config["contiguous"]:
        parts.append("contiguous")
    elif config["contiguous_selection"]:
        parts.append("contiguous selection")
    for name in ("tau", "relaxation"):
        if config[name] != DEFAULTS[name]:
            parts.append(f"{name} {config[name]}")
    return " + ".join(parts)


def search_runs(paths: list[str]) -> list[Path]:
    """Finished search runs: each path, or the run folders inside it."""
    runs = []
    for path in map(Path, paths):
        candidates = [path] if (path / RunFolder.CONFIG).is_file() else \
            sorted(p.parent for p in path.glob("*/config.yaml"))
        runs += [r for r in candidates if (r / RunFolder.ARCHITECTURE).is_file()
                 and RunFolder(r).read_yaml(RunFolder.CONFIG).get("command") == "search"]
    return runs


def scenario_runs(runs: list[Path], scenario: str) -> list[Path]:
    """The runs on this scenario's synthetic scene."""
    return [r for r in runs if RunFolder(r).read_yaml(RunFolder.CONFIG).get("scene", "textured") == scenario]


def searched(groundtruth: Path, runs: list[Path]) -> pd.DataFrame:
    """One row per run: its pick, strategy, seed, score τ and cost (nss rank), and for a one-shot search the
    Kendall τ of its sub-networks' validation Δ_MTL with the ground truth's (SPOS's known weak spot)."""
    with tempfile.TemporaryDirectory() as scratch:
        table = rank(groundtruth, runs, out=Path(scratch) / "rank.csv")
    ranking, space, _ = load_ranking(groundtruth)
    truth = ranking.set_index("architecture")["delta_mtl"]
    configs = [settings(RunFolder(r).read_yaml(RunFolder.CONFIG)) for r in runs]
    subnetwork_tau = []
    for run in runs:
        path = run / RunFolder.SUBNETWORKS
        if not path.is_file():
            subnetwork_tau.append(float("nan"))
            continue
        measured = pd.read_csv(path, dtype={"heads": str}, keep_default_na=False)
        ids = [with_fixed_heads(space, [h for h in heads.split(",") if h]).id for heads in measured["heads"]]
        values = truth.reindex(ids)
        subnetwork_tau.append(float(stats.kendalltau(measured["delta_mtl_val"][values.notna().to_numpy()],
                                                     values.dropna()).statistic))
    return pd.DataFrame({"run": table["run"], "architecture": table["architecture"], "heads": table["heads"],
                         "strategy": [strategy_of(c) for c in configs],
                         "is_default": [strategy_of(c) == strategy_of(DEFAULTS) for c in configs],
                         "seed": [RunFolder(r).read_yaml(RunFolder.CONFIG)["seed"] for r in runs],
                         "kendall_tau": table.get("kendall_tau"),
                         "subnetwork_tau": subnetwork_tau, "cost_s": table["search_wall_s"]})


def replayed(groundtruth: Path, runs: list[Path], gains: list[float], contiguous: bool) -> pd.DataFrame:
    """The picks knockout and one-shot runs would have made with another --min-gain (and, with `contiguous`, with
    their selection kept contiguous too), from what they recorded (the per-head scores, subnetworks.csv): the
    selection is a function of those alone; their training is the run's own. A replayed pick counts under the
    strategy it replays (its run is named "RUN (replayed: …)"); a replayed contiguity is of the selection only."""
    _, space, _ = load_ranking(groundtruth)
    rows = []
    for run, row in zip(runs, searched(groundtruth, runs).to_dict("records")):
        config = settings(RunFolder(run).read_yaml(RunFolder.CONFIG))
        if config["select"] == "gates":
            continue
        scores = read_json(run / RunFolder.ARCHITECTURE)["scores"]
        measured = pd.read_csv(run / RunFolder.SUBNETWORKS, dtype={"heads": str}, keep_default_na=False) \
            if config["select"] == "oneshot" else None
        own = config["contiguous"] or config["contiguous_selection"]
        for gain, chained in product(gains, {own, own or contiguous}):
            if (gain, chained) == (config["min_gain"], own):
                continue  # the run's own
            if measured is None:
                kept = [h for h in space.searchable if scores[h] > gain]
            else:
                heads = measured["heads"].str.split(",").map(lambda hs: tuple(h for h in hs if h))
                usable = measured[[not chained or contiguous_heads(space, h) == h for h in heads]]
                choice = usable["heads"].iloc[fewest_heads_within(usable["delta_mtl_val"], usable["kept"], gain)]
                kept = [h for h in choice.split(",") if h]
            architecture = with_fixed_heads(space, contiguous_heads(space, kept) if chained else kept)
            label = strategy_of(dict(config, min_gain=gain, contiguous_selection=chained))
            rows.append(dict(row, run=f"{row['run']} (replayed: {label})", architecture=architecture.id,
                             heads=",".join(architecture.searchable_kept), strategy=label,
                             is_default=label == strategy_of(DEFAULTS)))
    return pd.DataFrame(rows)


def published(path: Path) -> pd.DataFrame:
    """The searches of a rank.csv made before these strategies were options, named STRATEGY-sSEED (log-s0, l1-s3,
    nosparsity-s1): the dissertation's gates with log, l1 or no sparsity, at the defaults otherwise."""
    table = pd.read_csv(path, dtype={"heads": str})
    kind = table["run"].str.rsplit("-s", n=1).str[0]
    names = {"log": "gates + log", "l1": "gates + l1", "nosparsity": "gates + no sparsity"}
    return pd.DataFrame({"run": table["run"], "architecture": table["architecture"], "heads": table["heads"],
                         "strategy": kind.map(names), "is_default": kind.map(names) == strategy_of(DEFAULTS),
                         "seed": table["run"].str.rsplit("-s", n=1).str[1].astype(int),
                         "kendall_tau": table["kendall_tau"], "cost_s": table["search_wall_s"]})


def recorded(path: Path, scenario: str, space) -> pd.DataFrame:
    """The picks an earlier run of this script wrote to its validity.csv (the rows with a seed), to place again in
    a ground truth that has gained seeds since, without their run folders. Their per-head score τ is not in the
    file (it needs the runs' scores) and is left empty."""
    table = pd.read_csv(path, dtype={"heads": str}, keep_default_na=False, na_values={"seed": [""]})
    table = table[(table["scenario"] == scenario) & table["seed"].notna()]
    heads = table["heads"].map(lambda hs: [h for h in hs.split(",") if h])
    return pd.DataFrame({"run": table["strategy"] + " s" + table["seed"].astype(int).astype(str),
                         "architecture": [with_fixed_heads(space, kept).id for kept in heads],
                         "heads": table["heads"], "strategy": table["strategy"],
                         "is_default": table["strategy"] == strategy_of(DEFAULTS),
                         "seed": table["seed"].astype(int), "cost_s": table["cost_s"].astype(float)})


def placed(ranking: pd.DataFrame, picks: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """Each pick's rank, regret (best Δ_MTL − its), tie with the best, standing against the latency front and
    whether it is faster than the full network, read from the ranking."""
    done = ranking[ranking["status"] == "done"].set_index("architecture")
    best = done["delta_mtl"].max()
    found = done.reindex(picks["architecture"])
    margin = tie_margin(ranking, found["seeds_done"].fillna(1).to_numpy(), 1)  # against the front
    below = np.array([front_at(ranking, latency) for latency in found["latency_ms"]]) - found["delta_mtl"].to_numpy()
    full_latency = float(done.loc[done["kept"] == done["kept"].max(), "latency_ms"].iloc[0])
    return picks.assign(scenario=scenario, rank=found["rank"].to_numpy(),
                        faster_than_full=(found["latency_ms"] < full_latency).to_numpy(),
                        regret=(best - found["delta_mtl"]).to_numpy(),
                        tied_with_best=found.get("tied_with_best", pd.Series(False, index=found.index)).to_numpy(),
                        on_front=(found["pareto_latency"].astype(bool).to_numpy() | (below <= margin)))


def random_search_choice(ranking: pd.DataFrame, draws: int) -> np.ndarray:
    """P(each architecture is the one kept) when `draws` architectures are drawn uniformly without replacement and
    the best on validation is kept; in the ranking's row order."""
    order = ranking["delta_mtl_val"].rank(ascending=False, method="first").to_numpy().astype(int) - 1  # 0 = best
    n = len(ranking)
    return np.array([comb(n - 1 - i, draws - 1) / comb(n, draws) for i in order])


def baselines(ranking: pd.DataFrame, scenario: str, search_cost: float) -> pd.DataFrame:
    """Expected regret, rank, ties and front of the picks no search makes."""
    done = ranking[ranking["status"] == "done"].reset_index(drop=True)
    best = done["delta_mtl"].max()
    regret = best - done["delta_mtl"]
    tied = done.get("tied_with_best", pd.Series(False, index=done.index)).fillna(False).astype(bool)
    margin = tie_margin(done, done["seeds_done"], 1)
    front = done["latency_ms"].map(lambda latency: front_at(done, latency))
    on_front = done["pareto_latency"].astype(bool) | (front - done["delta_mtl"] <= margin)
    retrain_cost = float(done["wall_time_s"].median() / done["seeds_done"].median())
    draws = max(1, int((search_cost + retrain_cost) // retrain_cost))
    uniform = np.full(len(done), 1 / len(done))
    rows = []
    for name, weights, cost in (("random pick (expected)", uniform, retrain_cost),
                                (f"random search, {draws} retrained (expected)",
                                 random_search_choice(done, draws), draws * retrain_cost)):
        rows.append(dict(strategy=name, regret=float(weights @ regret), rank=float(weights @ done["rank"]),
                         tied_with_best=float(weights @ tied), on_front=float(weights @ on_front),
                         median_regret=float(np.interp(0.5, np.cumsum(weights[np.argsort(regret)]),
                                                       np.sort(regret))),
                         worst_regret=float(regret[weights > 0].max()), cost_s=cost))
    full = done["kept"] == done["kept"].max()
    minimal = done["kept"] == 0
    for name, mask in (("full network", full), ("minimal network", minimal)):
        if not mask.any():
            continue  # not retrained (yet)
        row = done[mask].iloc[0]
        rows.append(dict(strategy=name, heads=row["heads"], regret=best - row["delta_mtl"], rank=row["rank"],
                         tied_with_best=float(bool(tied[mask].iloc[0])), on_front=float(bool(on_front[mask].iloc[0])),
                         median_regret=best - row["delta_mtl"], worst_regret=best - row["delta_mtl"], cost_s=0.0))
    table = pd.DataFrame(rows)
    table["scenario"], table["is_default"] = scenario, False
    return table


def noise_ceiling(ranking: pd.DataFrame, space, draws: int = 2000, seed: int = 0) -> float:
    """Mean Kendall τ between the heads' marginal values of two ground truths that differ by retraining noise alone
    (each architecture's Δ_MTL plus a normal draw of the noise floor): the most a search's scores can agree."""
    done = ranking[ranking["status"] == "done"].reset_index(drop=True)
    sigma = noise_floor(done)
    if math.isnan(sigma):
        return float("nan")
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(draws):
        a, b = (marginal_values(done.assign(delta_mtl=done["delta_mtl"] + rng.normal(0, sigma, len(done))), space)
                for _ in range(2))
        taus.append(stats.kendalltau(a, b).statistic)
    return float(np.nanmean(taus))


def per_strategy(picks: pd.DataFrame, unit_cost: float) -> pd.DataFrame:
    def share(mask: pd.Series) -> str:
        return f"{int(mask.sum())}/{len(mask)}"
    heads = picks["heads"].fillna("").str.split(",")
    picks = picks.assign(restoration1=heads.map(lambda h: "restoration@1" in h),
                         loose_flow=heads.map(lambda h: "flow@1" in h and "flow@2" not in h))
    rows = []
    for strategy, group in picks.groupby("strategy", sort=False):
        rows.append({"strategy": strategy, "default": "yes" if group["is_default"].all() else "",
                     "seeds": ",".join(map(str, sorted(group["seed"]))),
                     "mean regret": group["regret"].mean(), "median": group["regret"].median(),
                     "worst": group["regret"].max(), "mean rank": group["rank"].mean(),
                     "tied with best": share(group["tied_with_best"].fillna(False).astype(bool)),
                     "on front": share(group["on_front"]),
                     "faster than full": share(group["faster_than_full"].astype(bool)),
                     "restoration@1 kept": share(group["restoration1"]),
                     "flow@1 without flow@2": share(group["loose_flow"]),
                     "Kendall τ": group["kendall_tau"].mean() if "kendall_tau" in group else float("nan"),
                     "sub-network τ": group["subnetwork_tau"].mean() if "subnetwork_tau" in group else float("nan"),
                     "cost s": group["cost_s"].mean(), "cost (searches)": group["cost_s"].mean() / unit_cost})
    return pd.DataFrame(rows).sort_values("mean regret", kind="stable")


def markdown(table: pd.DataFrame) -> str:
    def cell(v):
        return f"{v:.2f}" if isinstance(v, float) and not math.isnan(v) else ("" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groundtruth", action="append", required=True, metavar="SCENARIO=DIR",
                        help="the ground truth of a scenario (the synthetic --scene its searches ran on)")
    parser.add_argument("--runs", nargs="+", default=[], help="search run folders, or folders holding them")
    parser.add_argument("--published", action="append", default=[], metavar="SCENARIO=RANK_CSV",
                        help="a rank.csv of searches made before the strategies were options (see `published`)")
    parser.add_argument("--picks", action="append", default=[], metavar="SCENARIO=VALIDITY_CSV",
                        help="the picks of an earlier validity.csv, placed again (see `recorded`)")
    parser.add_argument("--replay-min-gain", type=lambda v: [float(x) for x in v.split(",")], default=[],
                        metavar="G[,G…]", help="also the picks knockout and one-shot runs make with these --min-gain "
                                              "values, from their recorded scores")
    parser.add_argument("--replay-contiguous", action="store_true",
                        help="and the picks they make kept contiguous (a finer head only with its coarser one)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = search_runs(args.runs)
    args.published = dict(spec.split("=", 1) for spec in args.published)
    args.picks = dict(spec.split("=", 1) for spec in args.picks)
    long, sections, figures = [], [], []
    for spec in args.groundtruth:
        scenario, groundtruth = spec.split("=", 1)
        mine = scenario_runs(runs, scenario)
        if not mine and scenario not in args.published and scenario not in args.picks:
            print(f"{scenario}: no search runs")
            continue
        ranking, space, _ = load_ranking(groundtruth)
        found = [searched(Path(groundtruth), mine),
                 replayed(Path(groundtruth), mine, args.replay_min_gain, args.replay_contiguous)] if mine else []
        if scenario in args.published:
            found.append(published(Path(args.published[scenario])))
        if scenario in args.picks:
            found.append(recorded(Path(args.picks[scenario]), scenario, space))
        picks = placed(ranking, pd.concat(found, ignore_index=True), scenario)
        unplaced = picks[picks["rank"].isna()]
        if len(unplaced):
            print(f"{scenario}: not in the ground truth (yet): {', '.join(unplaced['run'])}")
            picks = picks[picks["rank"].notna()]
        logs = picks[picks["strategy"] == "gates + log"]["cost_s"]
        unit = float(logs.mean()) if len(logs) else float(picks["cost_s"].mean())
        default_cost = picks.loc[picks["is_default"], "cost_s"]
        base = baselines(ranking, scenario, float(default_cost.mean()) if len(default_cost) else unit)
        table = per_strategy(picks, unit)
        base_rows = pd.DataFrame({"strategy": base["strategy"], "default": "", "seeds": "",
                                  "mean regret": base["regret"], "median": base["median_regret"],
                                  "worst": base["worst_regret"], "mean rank": base["rank"],
                                  "tied with best": base["tied_with_best"].map(lambda v: f"{v:.2f}"),
                                  "on front": base["on_front"].map(lambda v: f"{v:.2f}"),
                                  "cost s": base["cost_s"], "cost (searches)": base["cost_s"] / unit})
        ceiling = noise_ceiling(ranking, space)
        sections.append(f"## {scenario} ({groundtruth})\n\n{len(ranking)} architectures; best Δ_MTL "
                        f"{ranking['delta_mtl'].max():+.2f}; noise floor {noise_floor(ranking):.2f} points; "
                        f"Kendall τ noise ceiling {ceiling:+.2f}\n\n"
                        + markdown(pd.concat([table, base_rows], ignore_index=True)))
        columns = ["scenario", "strategy", "is_default", "seed", "heads", "rank", "regret", "tied_with_best",
                   "on_front", "cost_s"]
        long += [picks[columns], base.reindex(columns=columns)]
        figures.append((scenario, picks, base))
        print(sections[-1] + "\n")
    pd.concat(long, ignore_index=True).to_csv(out / "validity.csv", index=False)
    (out / "validity.md").write_text("\n\n".join(sections) + "\n")
    plot(figures, out / "validity.png")


def plot(figures: list, path: Path) -> None:
    fig, axes = plt.subplots(1, len(figures), figsize=(6.5 * len(figures), 5.2), squeeze=False)
    for ax, (scenario, picks, base) in zip(axes[0], figures):
        order = picks.groupby("strategy", sort=False)["regret"].mean().sort_values().index
        for y, strategy in enumerate(order):
            values = picks.loc[picks["strategy"] == strategy, "regret"]
            ax.scatter(values, np.full(len(values), y) + np.linspace(-0.15, 0.15, len(values)), s=22,
                       color="tab:red" if picks.loc[picks["strategy"] == strategy, "is_default"].all() else "tab:blue")
        for name, style in (("random pick (expected)", "--"), ("full network", ":")):
            ax.axvline(float(base.loc[base["strategy"] == name, "regret"].iloc[0]), color="grey", ls=style, label=name)
        ax.set_yticks(range(len(order)), order)
        ax.set(xlabel="regret (best Δ_MTL − the pick's, points)", title=scenario)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2, fontsize=8)  # below: dots use every corner
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
