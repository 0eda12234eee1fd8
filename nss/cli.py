"""`nss`: the command line. Each command parses, builds a configuration and calls one function of `nss`."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from search_spaces import SpaceError, get_space, is_architecture_file, list_sizes, list_spaces
from supernet import required_divisor

from . import (architecture_table, check_folder, derive, evaluate_run, export_run, pretrain, profile_target,
               resolve_config, retrain, search, write_synthetic)
from .balancing import list_balancers
from .config import FIELDS, OPTIONS_OF, RETRAIN_ONLY, RunConfig, parse_frame_size
from .costs import head_share_table, paper_network_table
from .data import SyntheticSpec
from .data.folder import inspect_folder
from .data.importer import FLOW_DIRECTIONS, import_data
from .errors import NSSError
from .export import DEFAULT_OPSET
from .groundtruth import groundtruth
from .predict import predict
from .profile import BACKENDS
from .rank import rank
from .runs import INHERITED
from .sweep import PRETRAIN_MODES, SWEEPABLE, sweep
from .trials import Resources
from .tune import OBJECTIVES, STUDY_NAME, TUNABLE, load_params, tune


class OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes end in one line on stderr and exit status 2, like every other error of `nss`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# Run options: RunConfig field → (flag, help). Types and defaults come from RunConfig; OPTIONS_OF says which
# command offers which.
RUN_OPTIONS = {
    "space": ("--space", f"search space: a preset ({', '.join(list_spaces())}) or a JSON file"),
    "network": ("--network", f"network size preset: auto, {', '.join(list_sizes())} (auto: cpu on a CPU, "
                             "paper on a GPU)"),
    "data": ("--data", "'synthetic' (generated on the fly) or a data folder (see `nss data check`)"),
    "frame_size": ("--frame-size", "synthetic frame size HxW"),
    "clips": ("--clips", "synthetic training clips"),
    "eval_clips": ("--eval-clips", "synthetic validation and test clips, each (default: a quarter of --clips, at "
                                   "least 2; more measure a network with less noise)"),
    "frames": ("--frames", "frames per synthetic clip"),
    "batch_size": ("--batch-size", "samples per step"),
    "workers": ("--workers", "data-loading processes"),
    "pretrain_steps": ("--pretrain-steps", "pretraining steps (all heads on)"),
    "pretrain_epochs": ("--pretrain-epochs", "pretraining length in epochs (replaces --pretrain-steps)"),
    "search_steps": ("--search-steps", "search steps (gates and weights together)"),
    "search_epochs": ("--search-epochs", "search length in epochs (replaces --search-steps)"),
    "tau": ("--tau", "Gumbel-softmax temperature τ > 0"),
    "hard": ("--hard", "hard (straight-through) Gumbel samples instead of soft ones"),
    "sparsity": ("--sparsity", "weight μ of the sparsity penalty"),
    "sparsity_kind": ("--sparsity-kind", "sparsity penalty: log (Σ log α) or l1 (Σ α)"),
    "threshold": ("--threshold", "keep a head when its gate's on-probability is at least this"),
    "margin": ("--margin", "report a gate ending within this of the threshold as undecided"),
    "relaxation": ("--relaxation", "gate relaxation: gumbel (NSS), softmax (DARTS), gdas, concrete (SNAS), "
                                   "dirichlet (DrNAS)"),
    "bilevel": ("--bilevel", "alternate α steps on validation batches with θ steps on training batches (first-order "
                             "DARTS) instead of one step on both"),
    "latency_table": ("--latency-table", "per-head cost table (nss profile SPACE --per-head) for the latency terms"),
    "latency_weight": ("--latency-weight", "weight β of β·E[lat]/lat_full in the objective"),
    "latency_target": ("--latency-target", "pull the expected latency towards this many ms, not above (TF-NAS)"),
    "latency_target_weight": ("--latency-target-weight", "weight of the --latency-target term"),
    "lr": ("--lr", "weight learning rate (default: 1e-4 for the paper network, 1e-3 for the small ones)"),
    "lr_min": ("--lr-min", "final weight learning rate of the cosine schedule"),
    "gate_lr": ("--gate-lr", "gate-logit learning rate"),
    "seed": ("--seed", "random seed (network, data order, Gumbel noise; the synthetic clips unless --data-seed)"),
    "data_seed": ("--data-seed", "seed the synthetic clips are drawn with (default: --seed)"),
    "device": ("--device", "auto, cpu, cuda or cuda:N"),
    "log_every": ("--log-every", "steps between rows of metrics.csv, gates.csv and deltas.csv"),
    "checkpoint_every": ("--checkpoint-every", "steps between checkpoints/last.pt"),
    "conflicts_every": ("--conflicts-every", "steps between gradient-conflict measurements, conflicts.csv (0: off)"),
    "from_run": ("--from", "start the search from this pretrained run folder (skips pretraining)"),
    "retrain_steps": ("--steps", "retraining steps"),
    "retrain_epochs": ("--epochs", "retraining length in epochs (replaces --steps)"),
    "balancing": ("--balancing", f"task balancing: {', '.join(list_balancers())}"),
    "augment": ("--no-augment", "no flips or colour jitter"),
    "val_every": ("--val-every", "steps between validations (best.pt keeps the best multi-task score)"),
}
# What a ground-truth retraining takes: the retraining options, without the data-loading processes (--workers
# means concurrent trials there).
GROUNDTRUTH_OPTIONS = tuple(o for o in OPTIONS_OF["retrain"] if o != "workers")


def _add_run_options(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="options from a YAML file (flags override it)")
    parser.add_argument("--out", metavar="DIR", help="run folder (default: runs/<command>-<space>-…-<time>)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_options(parser, OPTIONS_OF[command])


def _add_config_options(parser: argparse.ArgumentParser, names: tuple[str, ...],
                        flags: dict[str, str] | None = None) -> None:
    """A flag per RunConfig field in `names` (`flags` renames some), typed and documented from RunConfig."""
    defaults = RunConfig()
    for name in names:
        flag, text = RUN_OPTIONS[name]
        flag = (flags or {}).get(name, flag)
        default = getattr(defaults, name)
        if isinstance(default, bool):  # a switch that turns the default around (--hard, --no-augment)
            parser.add_argument(flag, dest=name, action="store_const", const=not default, help=text)
            continue
        kind = {"int": int, "float": float}.get(FIELDS[name].type.split(" |")[0], str)
        shown = "" if default is None else f" (default: {default})"
        metavar = "RUN" if name == "from_run" else flag.lstrip("-").split("-")[-1].upper()
        parser.add_argument(flag, dest=name, type=kind, metavar=metavar, help=text + shown)


def _run_config(args: argparse.Namespace, **fixed) -> RunConfig | None:
    given = {name: getattr(args, name) for name in RUN_OPTIONS if getattr(args, name, None) is not None}
    if args.resume:
        if given or args.config:
            flags = ", ".join(RUN_OPTIONS[n][0] for n in given) or "--config"
            raise NSSError(f"{flags}: a resumed run keeps its saved configuration; give only --out with --resume")
        return None
    if given.get("from_run"):
        clash = [RUN_OPTIONS[n][0] for n in INHERITED if n in given]
        if clash:
            raise NSSError(f"{', '.join(clash)}: taken from the pretrained run given with --from; leave out")
    return resolve_config(args.config, **given, **fixed)


def cmd_search(args: argparse.Namespace) -> None:
    result = search(_run_config(args), out=args.out, force=args.force, resume=args.resume,
                    progress=not args.quiet)
    arch = result.architecture
    print(f"run folder: {result.run_dir}")
    print(f"architecture {arch.id}: {len(arch.heads)} of {len(arch.space.heads)} heads kept "
          f"({result.run_dir / 'architecture.json'})")
    print(result.table())
    if result.predicted_latency_ms is not None:
        measured = f", measured {result.measured_latency_ms:.2f} ms" if result.measured_latency_ms is not None \
            else f" ({result.latency_note})"
        print(f"latency: predicted {result.predicted_latency_ms:.2f} ms by the cost table{measured}")
    if result.undecided:
        print(f"{len(result.undecided)} undecided: {', '.join(result.undecided)} ended within {result.margin} of the "
              f"threshold {result.threshold}; a longer search, or another seed, may decide them differently")
    else:
        print(f"decisive: every gate ended at least {result.margin} away from the threshold {result.threshold}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    path = pretrain(_run_config(args), out=args.out, force=args.force, resume=args.resume,
                    progress=not args.quiet)
    print(f"run folder: {path}")
    print(f"search from it with: nss search --from {path}")


def cmd_retrain(args: argparse.Namespace) -> None:
    target = {}
    if args.target is not None:
        if args.resume:
            raise NSSError(f"{args.target}: a resumed run keeps its architecture; give only --out with --resume")
        target = {"architecture" if is_architecture_file(args.target) else "space": args.target}
    elif not args.resume:
        raise NSSError("give the architecture.json to retrain (or a space name for the full network)")
    path = retrain(_run_config(args, **target), out=args.out, force=args.force, resume=args.resume,
                   progress=not args.quiet)
    print(f"run folder: {path}")
    print(f"evaluate it with: nss evaluate {path} --split test")


def cmd_evaluate(args: argparse.Namespace) -> None:
    table = evaluate_run(args.run, args.split, device=args.device, reference=args.reference,
                         eval_clips=args.eval_clips)
    print(f"{args.run} on {args.split} ({table['checkpoint'].iloc[0]}), written to {Path(args.run) / 'eval.csv'}")
    overall = table[table["task"] == "all"]
    for task, rows in table[table["task"] != "all"].groupby("task", sort=False):
        grid = rows.pivot_table(index="head", columns="metric", values="value", sort=False)
        print(f"\n{task}\n{grid.to_string(float_format=lambda v: f'{v:.4f}')}")
    if len(overall):
        print(f"\nΔ_MTL against {args.reference}: {overall['value'].iloc[0]:+.2f}% (finest head of every task)")


def cmd_export(args: argparse.Namespace) -> None:
    report = export_run(args.run, args.out, fp16=args.fp16, opset=args.opset, size=args.size, force=args.force)
    print(f"wrote {args.out} (opset {report['opset']}, {report['precision']}, {len(report['outputs'])} outputs) and "
          f"{args.out}.json; ONNX Runtime vs PyTorch max abs diff {report['max_abs_diff']:.2e}")


def cmd_profile(args: argparse.Namespace) -> None:
    report, path, note = profile_target(args.target, backend=args.backend, fp16=args.precision == "fp16",
                                        device=args.device, size=args.size, network=args.network,
                                        iters=args.iters, warmup=args.warmup, out=args.out, per_head=args.per_head)
    if note:
        print(note, file=sys.stderr)
    if args.per_head:
        print_cost_table(report, path)
        return
    lat, stream = report["latency_ms"], report["streaming_latency_ms"]
    height, width = report["input_size"]
    print(f"{args.target}: {report['params']:,} parameters, {report['flops'] / 1e9:.3f} GFLOPs at "
          f"{height}x{width} ({report['backend']}, {report['precision']}, {report['device']})")
    print(f"two-frame forward: median {lat['median']:.2f} ms, p90 {lat['p90']:.2f}, p99 {lat['p99']:.2f}, "
          f"cv {lat['cv']:.3f}, {report['fps']:.1f} FPS")
    print(f"streaming (cached previous features): median {stream['median']:.2f} ms, {report['streaming_fps']:.1f} FPS")
    print(f"written to {path}")


def print_cost_table(table: dict, path: Path) -> None:
    """`nss profile --per-head`: every head's marginal cost, the base and the full supernet, the sanity line."""
    height, width = table["input_size"]
    print(f"per-head costs of {table['space']['name']} ({table['network']} network, {height}x{width}, "
          f"{table['backend']}, {table['precision']}, {table['device']}; medians of {table['iters']} interleaved runs)")
    rows = [("(base: fixed heads)", table["base"]), ("(full supernet)", table["full"])] + \
        [(f"(decoder stage {s})", cost) for s, cost in table["stages"].items()] + list(table["heads"].items())
    print(f"{'':22s} {'latency ms':>11s} {'params':>12s} {'GFLOPs':>9s}")
    for name, cost in rows:
        print(f"{name:22s} {cost['latency_ms']:>11.2f} {cost['params']:>12,d} {cost['flops'] / 1e9:>9.3f}")
    for s, cost in table["stages"].items():
        print(f"decoder stage {s} is paid once when any of {', '.join(cost['needed_by'])} is kept")
    errors = [abs(c["error_pct"]) for c in table["checks"]]
    if errors:
        print(f"base + stages + own costs predict {len(errors)} random sub-networks within "
              f"{sum(errors) / len(errors):.1f}% on average (worst {max(errors):.1f}%)")
    print(f"written to {path}")


def _add_experiment_options(parser: argparse.ArgumentParser, kind: str) -> None:
    """What every many-trial command takes: its folder and where its trials run (Ray Tune)."""
    parser.add_argument("--out", required=True, metavar="DIR", help=f"the {kind} folder (trials under DIR/trials/)")
    parser.add_argument("--force", action="store_true", help=f"overwrite an existing {kind} folder")
    parser.add_argument("--resume", action="store_true",
                        help=f"continue the {kind} in --out: finished trials are kept, unfinished ones continue")
    parser.add_argument("--workers", type=int, help="trials at a time (default: CPUs ÷ --cpus-per-trial)")
    parser.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs (torch threads) per trial (default 1)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial, may be fractional")
    parser.add_argument("--address", help="join this Ray cluster (host:port or ray://host:port) instead of a local "
                                          "Ray; --out must then be on storage every node sees")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-trial lines")


def _resources(args: argparse.Namespace) -> Resources:
    return Resources(args.workers, args.cpus_per_trial, args.gpus_per_trial, args.address)


def _summarise_trials(table, out: str, what: str) -> None:
    """The closing lines of a many-trial command; every trial failing is an error."""
    failed = int((table["status"] != "done").sum())
    print(f"{len(table)} trials: {len(table) - failed} done, {failed} failed ({Path(out) / what})")
    if len(table) and failed == len(table):
        raise NSSError(f"every one of the {len(table)} trials failed; see the message column of {Path(out) / what}")


def _experiment_base(args: argparse.Namespace, options: tuple[str, ...]) -> RunConfig | None:
    """The options every trial takes, from --config and flags; None for a resumed experiment given none (one given
    any is refused by the experiment, which keeps its own)."""
    given = {name: getattr(args, name) for name in options if getattr(args, name, None) is not None}
    return resolve_config(args.config, **given) if given or args.config or not args.resume else None


def cmd_sweep(args: argparse.Namespace) -> None:
    grid = {name: getattr(args, name) for name in SWEEPABLE if getattr(args, name, None) is not None}
    base = _experiment_base(args, ())
    table = sweep(grid, args.out, base=base, pretrain=args.pretrain, resources=_resources(args),
                  max_trials=args.max_trials, force=args.force, resume=args.resume, progress=not args.quiet)
    shown = table[["trial", "status", "architecture", "heads", "undecided"]].fillna("")
    shown["heads"] = shown["heads"].str.count(",") + (shown["heads"] != "")
    print(shown.to_string(index=False))
    _summarise_trials(table, args.out, "sweep.csv")


def cmd_tune(args: argparse.Namespace) -> None:
    table = tune(args.out, trials=args.trials, objectives=tuple(o.strip() for o in args.objectives.split(",")),
                 params=load_params(args.params) if args.params else None,
                 base=_experiment_base(args, SWEEPABLE + RETRAIN_ONLY), backend=args.backend,
                 size=args.profile_size, iters=args.iters, resources=_resources(args), force=args.force,
                 resume=args.resume, progress=not args.quiet)
    pareto = table[table["pareto"]] if len(table) else table
    if len(pareto):
        columns = ["trial"] + [c for c in pareto.columns if c in TUNABLE] + \
            [c for c in ("delta_mtl", "latency_ms", "params", "flops", "architecture") if c in pareto]
        print("Pareto set (pareto.csv):")
        print(pareto[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    _summarise_trials(table, args.out, "trials.csv")


def cmd_groundtruth(args: argparse.Namespace) -> None:
    ranking = groundtruth(args.space, args.out, base=_experiment_base(args, GROUNDTRUTH_OPTIONS), seeds=args.seeds,
                          sample=args.sample, backend=args.backend, size=args.profile_size, iters=args.iters,
                          resources=_resources(args), force=args.force, resume=args.resume,
                          progress=not args.quiet)
    shown = ranking[[c for c in ("rank", "heads", "delta_mtl", "delta_mtl_std", "latency_ms", "params",
                                 "pareto_latency", "status") if c in ranking]].head(12)
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print((Path(args.out) / "summary.txt").read_text().rstrip())
    _summarise_trials(ranking, args.out, "ranking.csv")


def cmd_rank(args: argparse.Namespace) -> None:
    table = rank(args.groundtruth, args.runs, out=args.out)
    columns = [c for c in ("run", "tau", "rank", "of", "percentile", "delta_mtl", "best_delta_mtl", "pareto_latency",
                           "below_front", "kendall_tau", "spearman_rho", "search_wall_s", "groundtruth_wall_s",
                           "note") if c in table]
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written to {args.out or Path(args.groundtruth) / 'rank.csv'}")


def cmd_report(args: argparse.Namespace) -> None:
    from analysis import build_report  # matplotlib and the analysis tables: only this command needs them
    out = build_report(args.runs, args.out, force=args.force)
    print(f"wrote {out / 'report.md'}")


def cmd_spaces(args: argparse.Namespace) -> None:
    if args.action == "show":
        if not args.name:
            raise NSSError("nss spaces show: give a space name or JSON file")
        print(get_space(args.name).to_json())
        return
    if args.action == "costs":
        print_costs([args.name] if args.name else list_spaces(), args.size)
        return
    for name in list_spaces():
        space = get_space(name)
        tasks = ", ".join(t.name for t in space.tasks)
        print(f"{name:16s} {tasks} × {space.scales} scales; {len(space.searchable)} searchable heads")


def print_costs(spaces: list[str], size: tuple[int, int]) -> None:
    """`nss spaces costs`: the paper networks' parameter counts, then every component's share per preset."""
    papers = paper_network_table()
    papers["ours"] = (papers["params"] / 1e6).map("{:.2f} M".format)
    papers["paper"] = (papers["paper_params"] / 1e6).map("{:.1f} M".format)
    papers["deviation"] = papers["deviation_pct"].map("{:+.1f}%".format)
    print("The paper network (--network paper) against the parameter counts the papers report:\n")
    print(papers[["network", "space", "heads", "ours", "paper", "deviation", "source"]].to_string(index=False))
    for name in spaces:
        shares = head_share_table(name, *size)
        grid = shares.pivot_table(index="component", columns="size", values=["params_pct", "flops_pct"], sort=False)
        grid = grid.reindex(columns=[(v, s) for s in dict.fromkeys(shares["size"]) for v in ("params_pct", "flops_pct")])
        grid.columns = [f"{s} {'params' if v == 'params_pct' else 'FLOPs'}" for v, s in grid.columns]
        totals = shares.groupby("size", sort=False)[["params", "flops"]].sum()
        print(f"\n{name}: share of the supernet's parameters and FLOPs (%, two-frame forward at {size[0]}x{size[1]}); "
              + "; ".join(f"{s} {r.params / 1e6:.2f} M, {r.flops / 1e9:.2f} GFLOPs" for s, r in totals.iterrows()))
        print(grid.loc[list(dict.fromkeys(shares["component"]))].to_string(float_format=lambda v: f"{v:.1f}"))


def cmd_derive(args: argparse.Namespace) -> None:
    if args.run is not None and args.heads is not None:
        raise NSSError("give either a search RUN or --space with --heads, not both")
    if args.run is None and args.heads is None:
        raise NSSError("give a search RUN folder, or --heads task@scale,… (with --space)")
    heads = tuple(h.strip() for h in args.heads.split(",") if h.strip()) if args.heads is not None else None
    architecture = derive(args.out, run=args.run, threshold=args.threshold,
                          space=get_space(args.space) if heads is not None else None, heads=heads, force=args.force)
    print(f"architecture {architecture.id}: {len(architecture.heads)} of {len(architecture.space.heads)} heads "
          f"kept ({args.out})")
    print(architecture_table(architecture))


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _frame_size(text: str) -> tuple[int, int]:
    try:
        return parse_frame_size(text)
    except NSSError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_data_synth(args: argparse.Namespace) -> None:
    if args.clips < 1 or args.frames < 2 or (args.eval_clips is not None and args.eval_clips < 1):
        raise NSSError(f"--clips and --eval-clips must be >= 1 and --frames >= 2, got {args.clips}, "
                       f"{args.eval_clips} and {args.frames}")
    h, w = args.size
    out = write_synthetic(args.out, SyntheticSpec(args.clips, args.frames, h, w, args.seed, eval_clips=args.eval_clips),
                          force=args.force, progress=not args.quiet)
    print(f"wrote synthetic data to {out}")


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected train,val,test fractions such as 0.8,0.1,0.1, got {text!r}") from None


def cmd_data_import(args: argparse.Namespace) -> None:
    labels = {kind: folder for kind, folder in (("image", args.targets), ("mask", args.masks), ("flow", args.flow),
                                                ("homography", args.homography)) if folder}
    out = import_data(args.sources, args.out, labels=labels, size=args.size,
                      divisor=required_divisor(get_space(args.space).scales), split=args.split, seed=args.seed,
                      flow_direction=args.flow_direction, force=args.force, progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    clips = {split: len(c) for split, c in meta["splits"].items()}
    print(f"wrote {out}: {sum(clips.values())} clip(s) ({', '.join(f'{n} {s}' for s, n in clips.items())}), "
          f"frames {meta['frame_size'][0]}x{meta['frame_size'][1]}, tasks: {', '.join(meta['tasks']) or 'none'}")
    problems = check_folder(out)
    if problems:
        raise NSSError(f"{out}: imported, but `nss data check` finds {len(problems)} problem(s), e.g. {problems[0]}")


def cmd_predict(args: argparse.Namespace) -> None:
    report = predict(args.run, args.input, args.out, heads=args.heads, device=args.device, size=args.size,
                     split=args.split, fps=args.fps, max_frames=args.max_frames, force=args.force,
                     progress=not args.quiet)
    print(f"{report['frames']} frames of {len(report['clips'])} clip(s) at {report['size'][0]}x{report['size'][1]} on "
          f"{report['device']}: {report['network_fps']:.1f} FPS for the network, {report['total_fps']:.1f} FPS with "
          f"reading and writing; heads {', '.join(report['heads'].values())}")
    print(f"written to {args.out} (per clip: outputs per frame and preview.mp4; predict.json"
          f"{', metrics.csv' if 'metrics' in report else ''})")


def cmd_data_check(args: argparse.Namespace) -> None:
    problems, notes = inspect_folder(args.dir)
    for line in notes:
        print(f"note: {line}")
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        raise NSSError(f"{args.dir}: {len(problems)} problem(s) found")
    print(f"{args.dir}: ok")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="nss", description="Neural Scale Search for multi-task, multi-scale video networks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrors)

    p = commands.add_parser("search", help="pretrain the supernet, search the gates, derive the architecture",
                            description="Neural Scale Search: pretraining with every head on, then single-level "
                                        "search of Gumbel-softmax gates and weights, then derivation.")
    _add_run_options(p, "search")
    p.set_defaults(func=cmd_search)

    p = commands.add_parser("pretrain", help="phase 1 alone: train the supernet with every head on")
    _add_run_options(p, "pretrain")
    p.set_defaults(func=cmd_pretrain)

    p = commands.add_parser("retrain", help="train an architecture from scratch with task balancing",
                            description="Retrain a derived architecture (or the full space, the baseline) from "
                                        "scratch: deep supervision on its heads, task balancing, augmentation, "
                                        "periodic validation with best-checkpoint selection.")
    p.add_argument("target", nargs="?", help="architecture.json, or a space (name or JSON) for the full network")
    _add_run_options(p, "retrain")
    p.set_defaults(func=cmd_retrain)

    p = commands.add_parser("evaluate", help="every metric of every head of a run on a split → eval.csv")
    p.add_argument("run", help="run folder (its best.pt, else last.pt)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--device", help="override the run's device")
    p.add_argument("--reference", metavar="RUN", help="also report Δ_MTL against this evaluated run (its eval.csv)")
    p.add_argument("--eval-clips", type=int, metavar="CLIPS",
                   help="synthetic data: measure on this many validation/test clips instead of the run's own")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("export", help="a run's network as ONNX, checked against PyTorch under ONNX Runtime")
    p.add_argument("run", help="run folder (its best.pt, else last.pt)")
    p.add_argument("--out", required=True, metavar="MODEL.onnx")
    p.add_argument("--fp16", action="store_true", help="export in half precision")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    p.add_argument("--size", type=_frame_size, metavar="HxW", help="input size (default: the run's frame size)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("profile", help="parameters, FLOPs and latency of a run, architecture or space")
    p.add_argument("target", help="run folder, architecture.json, or a space (name or JSON) for its supernet")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="auto: TensorRT where it and a GPU are present, else torch")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (torch backend)")
    p.add_argument("--size", type=_frame_size, metavar="HxW",
                   help="input size (default: a run's frame size, else 256x256)")
    p.add_argument("--network", default="auto", help="width/depth preset for an architecture or space target")
    p.add_argument("--iters", type=int, default=100, help="timed iterations (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    p.add_argument("--per-head", action="store_true",
                   help="the per-head cost table of the target's supernet (marginal latency, params, FLOPs of every "
                        "searchable head) for a latency-aware search (--latency-table)")
    p.add_argument("--out", metavar="FILE.json", help="default: profile.json (latency_table.json with --per-head) in "
                                                     "the run folder, else here")
    p.set_defaults(func=cmd_profile)

    p = commands.add_parser("sweep", help="one search per combination of option values, as trials on Ray Tune",
                            description="Search every combination of the comma-separated values given (e.g. --tau "
                                        "1,2,5,10 --seed 0,1,2). One pretraining per distinct pretraining setting is "
                                        "run first and shared by its searches (--pretrain per-trial: each search "
                                        "pretrains its own). Writes OUT/sweep.csv and one run folder per trial.")
    for name in SWEEPABLE:
        flag, text = RUN_OPTIONS[name]
        if FIELDS[name].type.startswith("bool"):
            p.add_argument(flag.replace("--no-", "--"), dest=name, nargs="?", const="true", metavar="true,false",
                           help=text + " (or a list: true,false)")
        else:
            p.add_argument(flag, dest=name, metavar="V[,V…]", help=text)
    p.add_argument("--config", metavar="FILE.yaml", help="fixed options for every trial (flags vary them)")
    p.add_argument("--pretrain", default="shared", choices=PRETRAIN_MODES,
                   help="shared: one pretraining per setting, searches start from it (default); per-trial: each "
                        "search pretrains")
    p.add_argument("--max-trials", type=int, default=256, help="refuse grids larger than this (default 256)")
    _add_experiment_options(p, "sweep")
    p.set_defaults(func=cmd_sweep)

    p = commands.add_parser("predict", help="a trained run on a video, frame folder or data folder, with pictures",
                            description="Stream a video, a frame folder or a data folder through a run's trained "
                                        "network (each frame encoded once, the previous frame's features cached), "
                                        "batch 1, and write per frame the restored frame, the mask and its overlay, "
                                        "the flow (.flo and colour wheel), the homography (.txt), plus a side-by-side "
                                        "preview.mp4 and predict.json; on a data folder also metrics.csv.")
    p.add_argument("run", help="run folder (its best.pt, else last.pt)")
    p.add_argument("--input", required=True, type=Path, metavar="VIDEO|DIR|DATA")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--heads", help="comma-separated heads to write (default: the finest kept head of each task)")
    p.add_argument("--size", type=_frame_size, metavar="HxW", help="frames fitted to this (default: the run's)")
    p.add_argument("--split", default="test", help="the split of a data folder (default test)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: the run's)")
    p.add_argument("--fps", type=float, help="frame rate of the preview video (default: the input's, else 25)")
    p.add_argument("--max-frames", type=int, help="stop each clip after this many frames")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser("tune", help="Optuna over NSS settings (search, retrain, validate, profile per trial)",
                            description="Multi-objective tuning of NSS settings with Optuna (NSGA-II for several "
                                        "objectives, TPE for one), trials on Ray Tune. Each trial searches from one "
                                        "shared pretraining, retrains the derived architecture for --retrain-steps, "
                                        "is evaluated on the validation split and profiled. The study is "
                                        "OUT/study.db (optuna.load_study(storage='sqlite:///OUT/study.db', "
                                        f"study_name='{STUDY_NAME}')); OUT/trials.csv and OUT/pareto.csv.")
    p.add_argument("--trials", type=int, help="trials in the study (default 24; with --resume: the new total)")
    p.add_argument("--objectives", default="delta_mtl,latency",
                   help=f"comma-separated, from {', '.join(OBJECTIVES)} (default delta_mtl,latency)")
    p.add_argument("--params", metavar="FILE.yaml", help="parameter space: option: {low, high[, log]} or "
                                                         "{choices: [...]} (default: τ, μ, sparsity kind, threshold)")
    p.add_argument("--backend", default="torch", choices=BACKENDS, help="where latency is measured (default torch)")
    p.add_argument("--profile-size", type=_frame_size, metavar="HxW", help="input size for latency (default: the "
                                                                         "frame size)")
    p.add_argument("--iters", type=int, default=30, help="timed iterations per latency (default 30)")
    p.add_argument("--config", metavar="FILE.yaml", help="fixed options for every trial (flags override it)")
    _add_config_options(p, SWEEPABLE + RETRAIN_ONLY,
                        {"retrain_steps": "--retrain-steps", "retrain_epochs": "--retrain-epochs"})
    _add_experiment_options(p, "tune")
    p.set_defaults(func=cmd_tune)

    p = commands.add_parser("groundtruth", help="retrain every architecture of a space (or a sample): the truth a "
                                                "search is ranked against",
                            description="Enumerate the architectures of a space (all 2^k of its k searchable heads, or "
                                        "--sample N drawn uniformly with --seed, the full and the minimal network "
                                        "always in), retrain each from scratch with the same settings (--seeds: once "
                                        "per seed), evaluate on validation and test, profile. Trials on Ray Tune, a "
                                        "whole seed before the next; OUT/ranking.csv and OUT/summary.txt, rewritten "
                                        "as each trial ends (latency once they all have).")
    p.add_argument("--space", help="space preset or JSON file (default most_net_plus)")
    p.add_argument("--sample", type=int, help="retrain N architectures drawn uniformly (default: all)")
    p.add_argument("--seeds", type=_int_list, metavar="S[,S…]",
                   help="retrain each architecture once per seed, all on the clips of --data-seed (default: --seed)")
    p.add_argument("--backend", default="torch", choices=BACKENDS, help="where latency is measured (default torch)")
    p.add_argument("--profile-size", type=_frame_size, metavar="HxW",
                   help="input size for latency (default: the frame size)")
    p.add_argument("--iters", type=int, default=30, help="timed iterations per latency (default 30)")
    p.add_argument("--config", metavar="FILE.yaml", help="retraining options (flags override it)")
    _add_config_options(p, GROUNDTRUTH_OPTIONS,
                        {"retrain_steps": "--retrain-steps", "retrain_epochs": "--retrain-epochs"})
    _add_experiment_options(p, "groundtruth")
    p.set_defaults(func=cmd_groundtruth)

    p = commands.add_parser("rank", help="where search runs' architectures stand in a ground truth",
                            description="For each search run: its architecture's rank and percentile by Δ_MTL in the "
                                        "ground truth, its Pareto standing, Kendall's τ and Spearman's ρ between its "
                                        "gate probabilities and the heads' marginal values, and the cost of the "
                                        "ground truth against the search's.")
    p.add_argument("groundtruth", help="a ground-truth folder (nss groundtruth)")
    p.add_argument("runs", nargs="+", help="search run folders of the same space")
    p.add_argument("--out", metavar="FILE.csv", help="default: GROUNDTRUTH/rank.csv")
    p.set_defaults(func=cmd_rank)

    p = commands.add_parser("report", help="figures, tables and report.md for a set of run folders")
    p.add_argument("runs", nargs="+", help="run folders (searches, retrainings, …)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--force", action="store_true", help="overwrite an existing report folder")
    p.set_defaults(func=cmd_report)

    p = commands.add_parser("derive", help="architecture.json from a search run's gates or from a list of heads",
                            description="Derive an architecture: from a search RUN (gates ≥ --threshold kept) or "
                                        "from --space and --heads (the space's fixed heads are always kept).")
    p.add_argument("run", nargs="?", help="search run folder")
    p.add_argument("--threshold", type=float, default=0.5, help="keep heads whose on-probability is at least this")
    p.add_argument("--space", default="most_net_plus", help="space preset or JSON file (with --heads)")
    p.add_argument("--heads", help="comma-separated task@scale heads to keep, e.g. restoration@1,flow@3")
    p.add_argument("--out", required=True, metavar="FILE.json")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_derive)

    p = commands.add_parser("spaces", help="list search-space presets, show one as JSON, or what their parts cost",
                            description="list: the presets; show NAME: a space as JSON; costs [NAME]: the paper "
                                        "networks' parameter counts against the papers', and every component's "
                                        "share of parameters and FLOPs on each size preset.")
    p.add_argument("action", nargs="?", choices=("list", "show", "costs"), default="list")
    p.add_argument("name", nargs="?", help="preset name or JSON file (show; costs: default every preset)")
    p.add_argument("--size", type=_frame_size, default=(64, 64), metavar="HxW",
                   help="input size for the FLOPs shares (costs; default 64x64)")
    p.set_defaults(func=cmd_spaces)

    data = commands.add_parser("data", help="synthetic data and data-folder checks").add_subparsers(
        dest="data_command", required=True, parser_class=OneLineErrors)
    p = data.add_parser("synth", help="write synthetic clips in the folder format")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--clips", type=int, default=SyntheticSpec.clips, help="training clips")
    p.add_argument("--eval-clips", type=int, metavar="CLIPS",
                   help="validation and test clips, each (default: a quarter of --clips, ≥ 2)")
    p.add_argument("--frames", type=int, default=SyntheticSpec.frames, help="frames per clip")
    p.add_argument("--size", type=_frame_size, default=(SyntheticSpec.height, SyntheticSpec.width), metavar="HxW")
    p.add_argument("--seed", type=int, default=SyntheticSpec.seed)
    p.add_argument("--force", action="store_true", help="overwrite an existing folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_synth)
    p = data.add_parser("import", help="videos or frame folders (and label folders) into the folder format",
                        description="Import videos (PyAV: no system ffmpeg needed) or frame folders, with optional "
                                    "label folders in the accepted encodings (masks: grey 0/1 or 0/255, palette, "
                                    "RGB; flow: .npy, Middlebury .flo, KITTI 16-bit PNG; homographies: .txt). "
                                    "Frames are fitted to --size (scaled to cover it, centre-cropped; labels follow "
                                    "exactly), clips split into train/val/test, meta.json written.")
    p.add_argument("sources", nargs="+", type=Path,
                   help="video files, frame folders, or folders of frame folders (one clip each)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--size", type=_frame_size, metavar="HxW",
                   help="frame size (multiples of the space's divisor; default: the frames cropped to such multiples)")
    p.add_argument("--space", default="most_net_plus", help="the space whose divisor the size must respect")
    p.add_argument("--masks", type=Path, metavar="DIR", help="segmentation labels")
    p.add_argument("--flow", type=Path, metavar="DIR", help="optical-flow labels")
    p.add_argument("--targets", type=Path, metavar="DIR", help="clean frames (restoration labels)")
    p.add_argument("--homography", type=Path, metavar="DIR", help="homography labels (.txt)")
    p.add_argument("--flow-direction", default="backward", choices=FLOW_DIRECTIONS,
                   help="backward: the flow of frame N points to N-1 (the folder format's); forward: to N+1 "
                        "(Sintel, FlyingChairs, KITTI), imported by reversing each clip in time")
    p.add_argument("--split", type=_fractions, default=(0.8, 0.1, 0.1), metavar="TRAIN,VAL,TEST",
                   help="fractions of the clips per split (default 0.8,0.1,0.1)")
    p.add_argument("--seed", type=int, default=0, help="shuffles the clips before the split")
    p.add_argument("--force", action="store_true", help="overwrite an existing folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_import)

    p = data.add_parser("check", help="validate a data folder; lists every problem with the file that has it")
    p.add_argument("dir", type=Path)
    p.set_defaults(func=cmd_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (NSSError, SpaceError) as err:
        print(f"nss: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("nss: interrupted (a run folder can be continued with --out DIR --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
