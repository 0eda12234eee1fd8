"""How much of a ground truth's ranking is the noise of its small evaluation splits? Every finished retraining
of a ground truth (`nss groundtruth`) is evaluated again, its checkpoint unchanged, on N synthetic validation
and test clips (`nss evaluate --eval-clips N`). Printed: how well the validation and the test ranking agree on
the clips the trials were measured on and on the N, and how well the trials' test ranking agrees with the one
on N clips. Per-retraining values go to OUT/eval_clips.csv.

    python benchmarks/eval_noise.py GT --eval-clips 48 --out DIR
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from scipy import stats
from tqdm import tqdm

from nss.errors import NSSError
from nss.evaluation.runs import evaluate_splits
from nss.experiments.groundtruth import SPLITS
from nss.experiments.rank import load_ranking


def reevaluate(groundtruth: str, eval_clips: int) -> pd.DataFrame:
    """One row per finished retraining: test and validation Δ_MTL as recorded and on `eval_clips` clips."""
    experiment = load_ranking(groundtruth)[2]
    rows = []
    for record in tqdm(experiment.finished(), desc="re-evaluating", unit="run"):
        again = evaluate_splits(experiment.trial_dir(record["name"]), list(SPLITS), eval_clips=eval_clips, write=False)
        rows.append({"trial": record["name"], "architecture": record["settings"]["architecture"],
                     **{split: record["result"]["splits"][split]["delta_mtl"] for split in SPLITS},
                     **{f"{split}_{eval_clips}": again[split]["delta_mtl"] for split in SPLITS}})
    return pd.DataFrame(rows)


def agreement_line(table: pd.DataFrame, a: str, b: str) -> str:
    tau, rho = stats.kendalltau(table[a], table[b]).statistic, stats.spearmanr(table[a], table[b]).statistic
    return f"{a} vs {b} over {len(table)} retrainings: Kendall tau {tau:+.2f}, Spearman rho {rho:+.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groundtruth", help="a ground truth (nss groundtruth --out)")
    parser.add_argument("--eval-clips", type=int, default=48, help="validation and test clips, each (default 48)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.eval_clips < 1:
        raise SystemExit(f"error: --eval-clips must be >= 1, got {args.eval_clips}")
    torch.set_num_threads(1)  # as the trials ran; leaves the other cores to a ground truth still running
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = reevaluate(args.groundtruth, args.eval_clips)
    table.to_csv(out / "eval_clips.csv", index=False)
    n = args.eval_clips
    print("\n".join([agreement_line(table, "val", "test"), agreement_line(table, f"val_{n}", f"test_{n}"),
                     agreement_line(table, "test", f"test_{n}")]))


if __name__ == "__main__":
    try:
        main()
    except NSSError as err:
        raise SystemExit(f"error: {err}") from None
