"""`nss`: the command line. Each command parses, builds a configuration and calls one function of `nss`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from search_spaces import SpaceError, get_space, is_architecture_file, list_sizes, list_spaces

from . import (architecture_table, check_folder, derive, evaluate_run, export_run, pretrain, profile_target,
               resolve_config, retrain, search, write_synthetic)
from .balancing import list_balancers
from .config import FIELDS, RunConfig, parse_frame_size
from .costs import head_share_table, paper_network_table
from .data import SyntheticSpec
from .errors import NSSError
from .export import DEFAULT_OPSET
from .profile import BACKENDS
from .runs import INHERITED


class OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes end in one line on stderr and exit status 2, like every other error of `nss`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# Run options: RunConfig field → (flag, help). Types and defaults come from RunConfig; OPTIONS_OF says which
# command offers which.
RUN_OPTIONS = {
    "space": ("--space", f"search space: a preset ({', '.join(list_spaces())}) or a JSON file"),
    "network": ("--network", f"network width/depth preset: auto, {', '.join(list_sizes())} (auto: cpu on a CPU, "
                             "paper on a GPU)"),
    "data": ("--data", "'synthetic' (generated on the fly) or a data folder (see `nss data check`)"),
    "frame_size": ("--frame-size", "synthetic frame size HxW"),
    "clips": ("--clips", "synthetic training clips"),
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
    "lr": ("--lr", "weight learning rate (default: 1e-4 for the paper network, 1e-3 for the small ones)"),
    "lr_min": ("--lr-min", "final weight learning rate of the cosine schedule"),
    "gate_lr": ("--gate-lr", "gate-logit learning rate"),
    "seed": ("--seed", "random seed (network, data order, Gumbel noise)"),
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
TRAINING = ["network", "data", "frame_size", "clips", "frames", "batch_size", "workers", "lr", "lr_min", "seed",
            "device", "log_every", "checkpoint_every", "conflicts_every"]
OPTIONS_OF = {
    "pretrain": ["space", "pretrain_steps", "pretrain_epochs"] + TRAINING,
    "search": ["space", "pretrain_steps", "pretrain_epochs", "search_steps", "search_epochs", "tau", "hard",
               "sparsity", "sparsity_kind", "threshold", "gate_lr", "from_run"] + TRAINING,
    "retrain": ["retrain_steps", "retrain_epochs", "balancing", "augment", "val_every"] + TRAINING,
}


def _add_run_options(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="options from a YAML file (flags override it)")
    parser.add_argument("--out", metavar="DIR", help="run folder (default: runs/<command>-<space>-…-<time>)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    defaults = RunConfig()
    for name in OPTIONS_OF[command]:
        flag, text = RUN_OPTIONS[name]
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
    table = evaluate_run(args.run, args.split, device=args.device, reference=args.reference)
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
                                        iters=args.iters, warmup=args.warmup, out=args.out)
    if note:
        print(note, file=sys.stderr)
    lat, stream = report["latency_ms"], report["streaming_latency_ms"]
    print(f"{args.target}: {report['params']:,} parameters, {report['flops'] / 1e9:.3f} GFLOPs at "
          f"{args.size[0]}x{args.size[1]} ({report['backend']}, {report['precision']}, {report['device']})")
    print(f"two-frame forward: median {lat['median']:.2f} ms, p90 {lat['p90']:.2f}, p99 {lat['p99']:.2f}, "
          f"cv {lat['cv']:.3f}, {report['fps']:.1f} FPS")
    print(f"streaming (cached previous features): median {stream['median']:.2f} ms, {report['streaming_fps']:.1f} FPS")
    print(f"written to {path}")


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


def _frame_size(text: str) -> tuple[int, int]:
    try:
        return parse_frame_size(text)
    except NSSError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_data_synth(args: argparse.Namespace) -> None:
    if args.clips < 1 or args.frames < 2:
        raise NSSError(f"--clips must be >= 1 and --frames >= 2, got {args.clips} and {args.frames}")
    h, w = args.size
    out = write_synthetic(args.out, SyntheticSpec(args.clips, args.frames, h, w, args.seed), force=args.force,
                          progress=not args.quiet)
    print(f"wrote synthetic data to {out}")


def cmd_data_check(args: argparse.Namespace) -> None:
    problems = check_folder(args.dir)
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
    p.add_argument("--size", type=_frame_size, default=(256, 256), metavar="HxW", help="input size (default 256x256)")
    p.add_argument("--network", default="auto", help="width/depth preset for an architecture or space target")
    p.add_argument("--iters", type=int, default=100, help="timed iterations (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    p.add_argument("--out", metavar="FILE.json", help="default: profile.json in the run folder, else here")
    p.set_defaults(func=cmd_profile)

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
    p.add_argument("--clips", type=int, default=SyntheticSpec.clips, help="training clips (val/test: a quarter, ≥ 2)")
    p.add_argument("--frames", type=int, default=SyntheticSpec.frames, help="frames per clip")
    p.add_argument("--size", type=_frame_size, default=(SyntheticSpec.height, SyntheticSpec.width), metavar="HxW")
    p.add_argument("--seed", type=int, default=SyntheticSpec.seed)
    p.add_argument("--force", action="store_true", help="overwrite an existing folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_synth)
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
