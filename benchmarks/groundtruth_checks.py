"""Is a ground truth (`nss groundtruth`) good enough to judge a search by? Checks on it, written to
OUT/checks.txt with the tables behind them:

- budget: its ranking (test Δ_MTL) against a longer retraining of a sample of it (`--longer GT`), or a shorter
  one (`--shorter GT`);
- preset: against another network preset on a sample (`--preset GT`, e.g. `cpu` against a `tiny` ground truth);
- noise: the spread between retraining seeds of a sample retrained with `--seeds 0,1,2` (`--seeds GT`; or the
  same sample's seeds spread over several ground truths of one budget and clips, `--seeds GT_SEED0 GT_SEEDS12`),
  and how many of the ground truth's differences are larger than it;
- flow: how many retrainings of each ended with flow still on its zero-motion plateau (and OUT/curves.csv: the
  validation Δ_MTL and flow EPE of every retraining at every validation step);
- size: whether its ranking favours small or big networks (rank correlation of Δ_MTL with parameters);

and one question: do non-contiguous choices (a task's scale-1 head kept, its scale-2 head dropped: the search
scores them through the telescoped composite u(Ô³) + u(Ô¹) − u(Ô²), which the derived network never computes)
rank like the contiguous ones? For each task with two searchable scales, the four choices are compared over the
settings of the other heads (OUT/scale_choices.csv).

    python benchmarks/groundtruth_checks.py GT --longer GT_LONG --preset GT_CPU --seeds GT_SEEDS --out DIR
    python benchmarks/groundtruth_checks.py GT --longer GT_LONG --eval-clips 48 --out DIR   # on 48 clips each
"""
from __future__ import annotations

import argparse
import functools
import itertools
import math
from pathlib import Path

import pandas as pd
import torch
from eval_noise import reevaluate
from scipy import stats

from nss.errors import NSSError
from nss.experiments.groundtruth import noise_floor, tie_margin
from nss.experiments.rank import load_ranking
from nss.runs.folder import RunFolder
from search_spaces import SearchSpace, parse_head


def agreement(reference: pd.DataFrame, other: pd.DataFrame, label: str) -> tuple[pd.DataFrame, str]:
    """Test Δ_MTL of the architectures both rankings retrained, and the rank correlations between them."""
    both = reference[["architecture", "heads", "delta_mtl"]].merge(
        other[["architecture", "delta_mtl"]], on="architecture", suffixes=("", f"_{label}"))
    tau = stats.kendalltau(both["delta_mtl"], both[f"delta_mtl_{label}"])
    rho = stats.spearmanr(both["delta_mtl"], both[f"delta_mtl_{label}"])
    return both, (f"{label}: test Δ_MTL of the ground truth vs {label} over {len(both)} architectures: Kendall tau "
                  f"{tau.statistic:+.2f} (p {tau.pvalue:.3f}), Spearman rho {rho.statistic:+.2f}")


def size_line(reference: pd.DataFrame) -> str:
    """Does the ranking favour small or big networks? (Too short a budget favours those that train fastest.)"""
    tau = stats.kendalltau(reference["delta_mtl"], reference["params"])
    return (f"size: Kendall tau of test Δ_MTL with parameters over {len(reference)} architectures "
            f"{tau.statistic:+.2f} (p {tau.pvalue:.3f})")


@functools.lru_cache  # a ground truth given twice (e.g. as the reference and among --seeds) is measured once
def retraining_scores(groundtruth: str, eval_clips: int | None) -> pd.DataFrame:
    """Test Δ_MTL of every finished retraining of a ground truth (architecture, trial, delta_mtl): as its trial
    recorded it, or measured again on `eval_clips` validation and test clips."""
    if eval_clips:
        table = reevaluate(groundtruth, eval_clips)
        return table.assign(delta_mtl=table[f"test_{eval_clips}"])[["architecture", "trial", "delta_mtl"]]
    return pd.DataFrame([{"architecture": r["settings"]["architecture"], "trial": r["name"],
                          "delta_mtl": r["result"]["delta_mtl"]}
                         for r in load_ranking(groundtruth)[2].finished() if math.isfinite(r["result"]["delta_mtl"])])


def remeasured(ranking: pd.DataFrame, groundtruth: str, eval_clips: int | None) -> pd.DataFrame:
    """A ground truth's finished architectures, test Δ_MTL the mean over their retrainings measured again on
    `eval_clips` clips (as recorded without)."""
    ranking = ranking[ranking["status"] == "done"]
    if not eval_clips:
        return ranking
    means = retraining_scores(groundtruth, eval_clips).groupby("architecture")["delta_mtl"].mean()
    return ranking.assign(delta_mtl=ranking["architecture"].map(means))


def pooled_seeds(paths: list[str], eval_clips: int | None) -> pd.DataFrame:
    """Test Δ_MTL of every finished retraining in the ground truths `paths`, pooled by architecture: its
    seeds_done and delta_mtl_std, as `noise_floor` reads them. The ground truths must differ in their seeds alone
    (same budget, preset and clips); a seed retrained in two of them counts once."""
    settings, scores = None, []
    for path in paths:
        base = {k: v for k, v in load_ranking(path)[2].manifest()["base"].items() if k not in ("seed", "out")}
        if settings is not None and base != settings:
            differing = sorted(k for k in base.keys() | settings.keys() if base.get(k) != settings.get(k))
            raise NSSError(f"--seeds: {path} was retrained with other settings than {paths[0]} "
                           f"({', '.join(differing)}); pool only seeds of one budget, preset and clips")
        settings = base
        scores.append(retraining_scores(path, eval_clips))
    pooled = pd.concat(scores).drop_duplicates("trial").groupby("architecture")["delta_mtl"]
    return pd.DataFrame({"seeds_done": pooled.count(), "delta_mtl": pooled.mean(),
                         "delta_mtl_std": pooled.std(ddof=1)}).reset_index()


def noise_lines(seeds: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    seeds = seeds[seeds["seeds_done"] >= 2]  # architectures retrained once tell nothing of the noise
    floor, margin = noise_floor(seeds), tie_margin(seeds)
    gaps = [abs(a - b) for a, b in itertools.combinations(reference["delta_mtl"], 2)]
    single = tie_margin(seeds, seeds=1)  # two single-seed values differ by more than this one time in ~20 by chance
    lines = [f"noise: std of test Δ_MTL between {seeds['seeds_done'].max()} seeds' retrainings, median over "
             f"{len(seeds)} architectures: {floor:.2f} points (per architecture: "
             + ", ".join(f"{s:.2f}" for s in seeds["delta_mtl_std"]) + ")",
             f"noise: {sum(g > single for g in gaps)} of {len(gaps)} pairs of the ground truth differ by more than "
             f"2·√2·floor = {single:.2f} points; means of {seeds['seeds_done'].max()} seeds are tied within "
             f"{margin:.2f}",
             f"noise: the ground truth's test Δ_MTL spans {reference['delta_mtl'].min():+.2f} … "
             f"{reference['delta_mtl'].max():+.2f} (std {reference['delta_mtl'].std():.2f})"]
    return lines


CURVE_COLUMNS = ["step", "groundtruth", "trial", "delta_mtl_val", "flow_epe_val", "flow_epe_zero_motion",
                 "flow_epe_best"]


def learning_curves(groundtruth: Path) -> pd.DataFrame:
    """Validation Δ_MTL and the finest flow head's EPE at every validation step of every retraining, beside the
    EPE of predicting no motion and the finest flow head's on its best checkpoint (eval.csv): when flow leaves its
    plateaus, and whether the ranking still moves at the end of the budget. Finished retrainings only (those with
    an eval.csv: a ground truth may still be running), and only those with a flow head."""
    rows = []
    for evaluation in sorted(groundtruth.glob("trials/*/eval.csv")):
        flow_eval = pd.read_csv(evaluation).query("split == 'val' and task == 'flow'")
        if flow_eval.empty:
            continue
        table = pd.read_csv(evaluation.parent / RunFolder.VALIDATION)
        flow = table[table["metric"] == "epe"].assign(scale=lambda t: t["head"].str.split("@").str[1].astype(int))
        finest = flow[flow["scale"] == flow["scale"].min()].set_index("step")["value"]
        overall = table[table["head"] == "all"].set_index("step")["value"]
        zero = flow_eval.loc[flow_eval["model"] == "baseline", "value"].iloc[0]
        best = flow_eval[flow_eval["model"] == "network"].sort_values("scale")["value"].iloc[0]
        rows.append(pd.DataFrame({"groundtruth": groundtruth.name, "trial": evaluation.parent.name,
                                  "delta_mtl_val": overall, "flow_epe_val": finest, "flow_epe_zero_motion": zero,
                                  "flow_epe_best": best}).rename_axis("step").reset_index())
    return pd.concat(rows)[CURVE_COLUMNS] if rows else pd.DataFrame(columns=CURVE_COLUMNS)


def plateau_line(curves: pd.DataFrame, groundtruth: str) -> str:
    """How many retrainings ended with flow still on the zero-motion plateau: validation EPE of the finest flow
    head (best.pt) within 5% of the EPE of predicting no motion."""
    ends = curves.groupby("trial")[["flow_epe_best", "flow_epe_zero_motion"]].first()
    stuck = ends.index[ends["flow_epe_best"] > 0.95 * ends["flow_epe_zero_motion"]]
    return (f"flow plateau ({groundtruth}): {len(stuck)} of {len(ends)} retrainings ended within 5% of the "
            "zero-motion EPE on validation" + (f" ({', '.join(stuck)})" if len(stuck) else ""))


def second_drop_line(curves: pd.DataFrame, groundtruth: str) -> str:
    """Flow's second plateau ends when its EPE falls below half that of predicting no motion (on the synthetic
    data: from ~1.4 to ~0.7, against 1.88)."""
    below = curves[curves["flow_epe_val"] < curves["flow_epe_zero_motion"] / 2].groupby("trial")["step"].min()
    steps = "" if below.empty else f", first at step {below.min()}" if below.min() == below.max() else \
        f", first at steps {below.min()}–{below.max()}"
    return (f"flow second drop ({groundtruth}): {len(below)} of {curves['trial'].nunique()} retrainings reached "
            f"half the zero-motion EPE on validation{steps}")


def scale_choices(reference: pd.DataFrame, space: SearchSpace) -> tuple[pd.DataFrame, list[str]]:
    """For each task with searchable heads at scales 1 and 2: test Δ_MTL of the four choices (neither, @1 only,
    @2 only, both) under every setting of the other searchable heads."""
    score = dict(zip(reference["heads"].fillna("").map(lambda h: frozenset(filter(None, h.split(",")))),
                     reference["delta_mtl"]))
    rows, lines = [], []
    for task in dict.fromkeys(parse_head(h)[0] for h in space.searchable):
        fine, middle = f"{task}@1", f"{task}@2"
        if not {fine, middle} <= set(space.searchable):
            continue
        others = [h for h in space.searchable if h not in (fine, middle)]
        for setting in itertools.product((False, True), repeat=len(others)):
            base = frozenset(h for h, on in zip(others, setting) if on)
            choices = {"neither": base, "fine_only": base | {fine}, "middle_only": base | {middle},
                       "both": base | {fine, middle}}
            if all(c in score for c in choices.values()):
                rows.append({"task": task, "others": ",".join(sorted(base)),
                             **{name: score[c] for name, c in choices.items()}})
    table = pd.DataFrame(rows, columns=["task", "others", "neither", "fine_only", "middle_only", "both"])
    if table.empty:
        return table, ["scale choices: no task has its four choices under a setting of the other heads here "
                       "(a sample too small)"]
    for task, group in table.groupby("task", sort=False):
        for a, b in (("fine_only", "both"), ("fine_only", "neither"), ("middle_only", "neither"),
                     ("fine_only", "middle_only")):
            diff = group[a] - group[b]
            lines.append(f"{task}: {a} − {b}: mean {diff.mean():+.2f}, median {diff.median():+.2f}, "
                         f"{(diff > 0).sum()}/{len(diff)} positive")
    return table, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groundtruth", help="the ground truth to check (nss groundtruth --out)")
    parser.add_argument("--longer", help="a sample of it retrained for longer")
    parser.add_argument("--shorter", help="a sample of it retrained for fewer steps")
    parser.add_argument("--preset", help="a sample of it retrained on another network preset")
    parser.add_argument("--seeds", nargs="+", help="a sample of it retrained with several seeds (in one ground truth "
                        "or spread over several of the same budget, preset and clips)")
    parser.add_argument("--eval-clips", type=int, help="measure every retraining again on this many validation and "
                        "test clips (benchmarks/eval_noise.py) instead of the clips its trial was measured on")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    ranking, space, _ = load_ranking(args.groundtruth)
    reference = remeasured(ranking, args.groundtruth, args.eval_clips)
    lines = [f"ground truth {args.groundtruth}: {len(reference)} architectures, test Δ_MTL on "
             + (f"{args.eval_clips} clips" if args.eval_clips else "the clips its trials were measured on"),
             size_line(reference)]
    for label, path in (("longer", args.longer), ("shorter", args.shorter), ("preset", args.preset)):
        if path:
            table, line = agreement(reference, remeasured(load_ranking(path)[0], path, args.eval_clips), label)
            table.to_csv(out / f"agreement_{label}.csv", index=False)
            lines.append(line)
    if args.seeds:
        lines += noise_lines(pooled_seeds(args.seeds, args.eval_clips), reference)
    paths = dict.fromkeys(filter(None, (args.groundtruth, args.longer, args.shorter, args.preset, *(args.seeds or ()))))
    curves = {path: learning_curves(Path(path)) for path in paths}
    for path in paths:
        lines += [plateau_line(curves[path], path), second_drop_line(curves[path], path)]
    pd.concat(curves.values()).to_csv(out / "curves.csv", index=False)
    table, choice_lines = scale_choices(reference, space)
    table.to_csv(out / "scale_choices.csv", index=False)
    lines += choice_lines
    (out / "checks.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except NSSError as err:
        raise SystemExit(f"error: {err}") from None
