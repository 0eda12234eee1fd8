"""`nss sweep`, `nss tune`, `nss groundtruth`, `nss rank`."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import OPTIONS, RETRAIN, options_of, sweepable, trial_options
from ..errors import NSSError
from ..experiments import OBJECTIVES, STUDY_NAME
from . import Command
from .options import (add_config_options, add_latency_measurement, add_trial_resources, experiment_base, int_list,
                      resources)

SWEEPABLE, RETRAINING = sweepable(), trial_options(RETRAIN)
GROUNDTRUTH_OPTIONS = tuple(o for o in options_of("retrain") if OPTIONS[o].trial)


def summarise_trials(table, out: str, what: str) -> None:
    """The closing lines of a many-trial command; every trial failing is an error."""
    failed = int((table["status"] != "done").sum())
    print(f"{len(table)} trials: {len(table) - failed} done, {failed} failed ({Path(out) / what})")
    if len(table) and failed == len(table):
        raise NSSError(f"every one of the {len(table)} trials failed; see the message column of {Path(out) / what}")


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, SWEEPABLE, as_list=True)
    parser.add_argument("--config", metavar="FILE.yaml", help="fixed options for every trial (flags vary them)")
    parser.add_argument("--pretrain", default="shared", choices=("shared", "per-trial"),
                        help="shared: one pretraining per setting, searches start from it (default); per-trial: each "
                             "search pretrains")
    parser.add_argument("--max-trials", type=int, default=256, help="refuse grids larger than this (default 256)")
    add_trial_resources(parser, "sweep")


def run_sweep(args: argparse.Namespace) -> None:
    from ..experiments.sweep import sweep
    grid = {name: getattr(args, name) for name in SWEEPABLE if getattr(args, name, None) is not None}
    table = sweep(grid, args.out, base=experiment_base(args, ()), pretrain=args.pretrain, resources=resources(args),
                  max_trials=args.max_trials, force=args.force, resume=args.resume, progress=not args.quiet)
    shown = table[["trial", "status", "architecture", "heads", "undecided"]].fillna("")
    shown["heads"] = shown["heads"].str.count(",") + (shown["heads"] != "")
    print(shown.to_string(index=False))
    summarise_trials(table, args.out, "sweep.csv")


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, help="trials in the study (default 24; with --resume: the new total)")
    parser.add_argument("--objectives", default="delta_mtl,latency",
                        help=f"comma-separated, from {', '.join(OBJECTIVES)} (default delta_mtl,latency)")
    parser.add_argument("--params", metavar="FILE.yaml", help="parameter space: option: {low, high[, log]} or "
                                                              "{choices: [...]} (default: τ, μ, sparsity kind, "
                                                              "threshold)")
    parser.add_argument("--config", metavar="FILE.yaml", help="fixed options for every trial (flags override it)")
    add_config_options(parser, SWEEPABLE + RETRAINING)
    add_latency_measurement(parser)
    add_trial_resources(parser, "tune")


def run_tune(args: argparse.Namespace) -> None:
    from ..experiments.tune import TUNABLE, load_params, tune
    table = tune(args.out, trials=args.trials, objectives=tuple(o.strip() for o in args.objectives.split(",")),
                 params=load_params(args.params) if args.params else None,
                 base=experiment_base(args, SWEEPABLE + RETRAINING), backend=args.backend, size=args.profile_size,
                 iters=args.iters, resources=resources(args), force=args.force, resume=args.resume,
                 progress=not args.quiet)
    pareto = table[table["pareto"]] if len(table) else table
    if len(pareto):
        columns = ["trial"] + [c for c in pareto.columns if c in TUNABLE] + \
            [c for c in ("delta_mtl", "latency_ms", "params", "flops", "architecture") if c in pareto]
        print("Pareto set (pareto.csv):")
        print(pareto[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    summarise_trials(table, args.out, "trials.csv")


def add_groundtruth_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, ("space",))
    parser.add_argument("--sample", type=int, help="retrain N architectures drawn uniformly (default: all)")
    parser.add_argument("--architectures", metavar="FILE",
                        help="retrain these architectures (default: all): a heads list per line (e.g. "
                             "restoration@1,flow@2; '-' for the fixed heads alone), or a CSV with a heads column")
    parser.add_argument("--seeds", type=int_list, metavar="S[,S…]",
                        help="retrain each architecture once per seed, all on the clips of --data-seed (default: "
                             "--seed)")
    parser.add_argument("--config", metavar="FILE.yaml", help="retraining options (flags override it)")
    add_config_options(parser, GROUNDTRUTH_OPTIONS)
    add_latency_measurement(parser)
    add_trial_resources(parser, "groundtruth")


def run_groundtruth(args: argparse.Namespace) -> None:
    from ..experiments.groundtruth import groundtruth
    ranking = groundtruth(args.space, args.out, base=experiment_base(args, GROUNDTRUTH_OPTIONS), seeds=args.seeds,
                          sample=args.sample, architectures=args.architectures, backend=args.backend,
                          size=args.profile_size, iters=args.iters, resources=resources(args), force=args.force, resume=args.resume, progress=not args.quiet)
    shown = ranking[[c for c in ("rank", "heads", "delta_mtl", "delta_mtl_std", "latency_ms", "params",
                                 "pareto_latency", "status") if c in ranking]].head(12)
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print((Path(args.out) / "summary.txt").read_text().rstrip())
    summarise_trials(ranking, args.out, "ranking.csv")


def add_rank_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("groundtruth", help="a ground-truth folder (nss groundtruth)")
    parser.add_argument("runs", nargs="+", help="search run folders of the same space")
    parser.add_argument("--out", metavar="FILE.csv", help="default: GROUNDTRUTH/rank.csv")


def run_rank(args: argparse.Namespace) -> None:
    from ..experiments.rank import rank
    table = rank(args.groundtruth, args.runs, out=args.out)
    columns = [c for c in ("run", "tau", "rank", "of", "percentile", "delta_mtl", "best_delta_mtl", "pareto_latency",
                           "below_front", "kendall_tau", "spearman_rho", "search_wall_s", "groundtruth_wall_s",
                           "note") if c in table]
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written to {args.out or Path(args.groundtruth) / 'rank.csv'}")


SWEEP = Command("sweep", "one search per combination of option values, as trials on Ray Tune", add_sweep_arguments,
                run_sweep, "Search every combination of the comma-separated values given (e.g. --tau 1,2,5,10 --seed "
                "0,1,2); every combination is checked before anything runs. One pretraining per distinct pretraining "
                "setting is run first and shared by its searches (--pretrain per-trial: each search pretrains its "
                "own). Writes OUT/sweep.csv and one run folder per trial.")
TUNE = Command("tune", "Optuna over NSS settings (search, retrain, validate, profile per trial)", add_tune_arguments,
               run_tune, "Multi-objective tuning of NSS settings with Optuna (NSGA-II for several objectives, TPE for "
               "one), trials on Ray Tune. Each trial searches from one shared pretraining, retrains the derived "
               "architecture for --retrain-steps, is evaluated on the validation split and profiled. The study is "
               f"OUT/study.db (optuna.load_study(storage='sqlite:///OUT/study.db', study_name='{STUDY_NAME}')); "
               "OUT/trials.csv and OUT/pareto.csv.")
GROUNDTRUTH = Command("groundtruth", "retrain every architecture of a space (or a sample): the truth a search is ranked "
                      "against", add_groundtruth_arguments, run_groundtruth,
                      "Enumerate the architectures of a space (all 2^k of its k searchable heads, or --sample N drawn "
                      "uniformly with --seed, the full and the minimal network always in), retrain each from scratch "
                      "with the same settings (--seeds: once per seed), evaluate on validation and test, profile. "
                      "Trials on Ray Tune, a whole seed before the next; OUT/ranking.csv and OUT/summary.txt, "
                      "rewritten as each trial ends (latency once they all have).")
RANK = Command("rank", "where search runs' architectures stand in a ground truth", add_rank_arguments, run_rank,
               "For each search run: its architecture's rank and percentile by Δ_MTL in the ground truth, its Pareto "
               "standing, Kendall's τ and Spearman's ρ between its gate probabilities and the heads' marginal values, "
               "and the cost of the ground truth against the search's.")
