"""`nss search`, `nss pretrain`, `nss retrain`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from search_spaces import is_architecture_file

from ..config import options_of
from ..errors import NSSError
from . import Command
from .options import add_run_options, run_config


def launched(args: argparse.Namespace, command: str, config) -> bool:
    """`--nproc N` (N > 1) outside torchrun: start the N ranks of the run on this machine, each with this command
    line, once what they would refuse is checked; True when they have run."""
    if args.nproc == 1 or "WORLD_SIZE" in os.environ:
        return False
    from ..training.api import check_parallel_run
    from ..training.launch import launch
    threads = check_parallel_run(command, config, args.nproc, args.out, args.force, args.resume)
    launch(args.nproc, without_nproc(args.argv), threads)
    return True


def without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def oneshot_choice(measured: Path, kept: tuple[str, ...], min_gain: float) -> str:
    """One line: how many sub-networks a one-shot search measured, the best, and the one it kept."""
    import pandas as pd
    frame = pd.read_csv(measured, dtype={"heads": str}, keep_default_na=False).set_index("heads")
    values, chosen = frame["delta_mtl_val"], ",".join(kept)
    best = values.idxmax()
    named = lambda heads: heads or "no searchable head"  # noqa: E731
    least = "lowest predicted latency" if "predicted_latency_ms" in frame else "fewest heads"
    return (f"{len(values)} sub-networks measured on validation; best {named(best)} (Δ_MTL {values[best]:+.2f}); "
            f"kept the {least} within {min_gain:g} points of it: {named(chosen)} (Δ_MTL {values[chosen]:+.2f})")


def run_search(args: argparse.Namespace) -> None:
    from ..runs.folder import RunFolder
    from ..training.api import search
    from ..training.selection import SCORE_MEANING
    config = run_config(args, "search")
    if launched(args, "search", config):
        return
    result = search(config, out=args.out, force=args.force, resume=args.resume,
                    progress=not args.quiet)
    arch = result.architecture
    print(f"run folder: {result.run_dir}")
    print(f"architecture {arch.id}: {len(arch.heads)} of {len(arch.space.heads)} heads kept "
          f"({result.run_dir / RunFolder.ARCHITECTURE})")
    print(result.table())
    if result.select != "gates":
        print(f"selected by {result.select}; score per head ({SCORE_MEANING[result.select]}): "
              + ", ".join(f"{head} {score:+.2f}" for head, score in result.scores.items()))
    if result.select == "oneshot":
        print(oneshot_choice(result.run_dir / RunFolder.SUBNETWORKS, arch.searchable_kept, config.min_gain))
    if result.predicted_latency_ms is not None:
        measured = f", measured {result.measured_latency_ms:.2f} ms" if result.measured_latency_ms is not None \
            else f" ({result.latency_note})"
        print(f"latency: predicted {result.predicted_latency_ms:.2f} ms by the cost table{measured}")
    if result.undecided:
        print(f"{len(result.undecided)} undecided: {', '.join(result.undecided)} ended within {result.margin} of the "
              f"threshold {result.threshold}; a longer search, or another seed, may decide them differently")
    elif result.select == "gates":
        print(f"decisive: every gate ended at least {result.margin} away from the threshold {result.threshold}")


def run_pretrain(args: argparse.Namespace) -> None:
    from ..training.api import pretrain
    config = run_config(args, "pretrain")
    if launched(args, "pretrain", config):
        return
    path = pretrain(config, out=args.out, force=args.force, resume=args.resume,
                    progress=not args.quiet)
    print(f"run folder: {path}")
    print(f"search from it with: nss search --from {path}")


def add_retrain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", help="architecture.json, or a space (name or JSON) for the full network")
    add_run_options(parser, options_of("retrain"))


def run_retrain(args: argparse.Namespace) -> None:
    from ..training.api import retrain
    target = {}
    if args.target is not None:
        if args.resume:
            raise NSSError(f"{args.target}: a resumed run keeps its architecture; give only --out with --resume")
        target = {"architecture" if is_architecture_file(args.target) else "space": args.target}
    elif not args.resume:
        raise NSSError("give the architecture.json to retrain (or a space name for the full network)")
    config = run_config(args, "retrain", **target)
    if launched(args, "retrain", config):
        return
    path = retrain(config, out=args.out, force=args.force, resume=args.resume,
                   progress=not args.quiet)
    print(f"run folder: {path}")
    print(f"evaluate it with: nss evaluate {path} --split test")


SEARCH = Command("search", "pretrain the supernet, search the gates, derive the architecture",
                 lambda p: add_run_options(p, options_of("search")), run_search,
                 "Neural Scale Search: pretraining with every head on, then single-level search of Gumbel-softmax "
                 "gates and weights, then derivation.")
PRETRAIN = Command("pretrain", "phase 1 alone: train the supernet with every head on",
                   lambda p: add_run_options(p, options_of("pretrain")), run_pretrain)
RETRAIN = Command("retrain", "train an architecture from scratch with task balancing", add_retrain_arguments,
                  run_retrain, "Retrain a derived architecture (or the full space, the baseline) from scratch: deep "
                  "supervision on its heads, task balancing, augmentation, periodic validation with best-checkpoint "
                  "selection.")
