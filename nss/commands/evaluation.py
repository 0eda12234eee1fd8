"""`nss evaluate`."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import Command
from .options import add_device_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder (its best.pt, else last.pt)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--data", metavar="synthetic|DIR",
                        help="measure on this data folder's split (the same tasks) instead of the run's own data")
    parser.add_argument("--reference", metavar="RUN", help="also report Δ_MTL against this evaluated run (its eval.csv)")
    parser.add_argument("--eval-clips", type=int, metavar="CLIPS",
                        help="synthetic data: measure on this many validation/test clips instead of the run's own")
    add_device_options(parser)


def run(args: argparse.Namespace) -> None:
    from ..device import choose_threads, using_threads
    from ..evaluation.runs import evaluate_run
    from ..runs.folder import RunFolder
    with using_threads(choose_threads(args.threads)):
        table = evaluate_run(args.run, args.split, device=args.device, reference=args.reference,
                             eval_clips=args.eval_clips, data=args.data)
    print(f"{args.run} on {args.split} of {args.data or 'its own data'} ({table['checkpoint'].iloc[0]}), written to "
          f"{Path(args.run) / RunFolder.EVAL}")
    overall = table[table["task"] == "all"]
    for task, rows in table[table["task"] != "all"].groupby("task", sort=False):
        grid = rows.pivot_table(index="head", columns="metric", values="value", sort=False)
        print(f"\n{task}\n{grid.to_string(float_format=lambda v: f'{v:.4f}')}")
    if len(overall):
        print(f"\nΔ_MTL against {args.reference}: {overall['value'].iloc[0]:+.2f}% (finest head of every task)")


EVALUATE = Command("evaluate", "every metric of every head of a run on a split → eval.csv", add_arguments, run,
                   "Every metric of every head of a run's trained network, after upsampling to full resolution, next "
                   "to the trivial predictor, on a split of the run's data or of any data folder of the same tasks "
                   "(the run's training data is not needed).")
