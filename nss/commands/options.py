"""Command-line flags derived from the RunConfig fields (nss.config), and the flag groups several commands share.
Torch-free: `nss --help` and argument errors answer at once."""
from __future__ import annotations

import argparse
from typing import Any

from ..config import (GROUP_TITLES, OPTIONS, Option, RunConfig, inherited_options, options_of, parse_frame_size,
                      resolve_config)
from ..deploy import BACKENDS
from ..errors import NSSError


def _add_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, option: Option, as_list: bool) -> None:
    """One option as a flag: typed and documented from its field; a switch turns its default around (--hard,
    --no-augment); `as_list`: comma-separated values, as a sweep's grid takes them."""
    if as_list:
        if option.kind is bool:
            parser.add_argument(option.flag.replace("--no-", "--"), dest=option.name, nargs="?", const="true",
                                metavar="true,false", help=option.help + " (or a list: true,false)")
        else:
            parser.add_argument(*option.flags, dest=option.name, metavar="V[,V…]", help=option.help)
        return
    if option.kind is bool:
        parser.add_argument(*option.flags, dest=option.name, action="store_const", const=not option.default,
                            help=option.help + (" (on unless this flag is given)" if option.default else ""))
        return
    shown = "" if option.default is None else f" (default: {option.default})"
    metavar = option.metavar or option.flag.lstrip("-").split("-")[-1].upper()
    parser.add_argument(*option.flags, dest=option.name, type=option.kind, metavar=metavar, help=option.help + shown)


def add_config_options(parser: argparse.ArgumentParser, names: tuple[str, ...], *, as_list: bool = False) -> None:
    """A flag per RunConfig option in `names`, in --help sections by option group."""
    sections: dict[str, argparse._ArgumentGroup] = {}
    for name in names:
        option = OPTIONS[name]
        if option.group not in sections:
            sections[option.group] = parser.add_argument_group(f"{GROUP_TITLES[option.group]} options")
        _add_flag(sections[option.group], option, as_list)


def add_run_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """What every training command takes: its run folder and config file, then its options."""
    parser.add_argument("--config", metavar="FILE.yaml", help="options from a YAML file, keys as the flags (a run's "
                                                              "config.yaml is one); flags override it")
    parser.add_argument("--out", metavar="DIR", help="run folder (default: runs/<command>-<space>-…-<time>)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--nproc", type=checked_count, default=1, metavar="N",
                        help="processes of one data-parallel run on this machine: one per GPU, or CPU processes "
                             "sharing the cores; --batch-size stays the global batch (default 1; on several "
                             "machines, start `python -m nss` with torchrun instead)")
    add_config_options(parser, names)


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig options given on the command line."""
    return {name: getattr(args, name) for name in OPTIONS if getattr(args, name, None) is not None}


def run_config(args: argparse.Namespace, command: str, **fixed: Any) -> RunConfig | None:
    """The configuration of a training command: defaults ← --config ← flags (and `fixed`); None for --resume."""
    given = given_options(args)
    if args.resume:
        if given or args.config:
            flags = ", ".join(OPTIONS[n].flag for n in given) or "--config"
            raise NSSError(f"{flags}: a resumed run keeps its saved configuration; give only --out with --resume")
        return None
    if given.get("from_run"):
        clash = [OPTIONS[n].flag for n in inherited_options() if n in given]
        if clash:
            raise NSSError(f"{', '.join(clash)}: taken from the pretrained run given with --from; leave out")
    return resolve_config(args.config, options_of(command) + tuple(fixed), **given, **fixed)


def experiment_base(args: argparse.Namespace, names: tuple[str, ...]) -> RunConfig | None:
    """The options every trial of an experiment takes, from --config and flags; None for a resumed experiment given
    none (one given any is refused by the experiment, which keeps its own)."""
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return resolve_config(args.config, names, **given) if given or args.config or not args.resume else None


def add_trial_resources(parser: argparse.ArgumentParser, kind: str) -> None:
    """What every many-trial command takes: its folder and where its trials run."""
    group = parser.add_argument_group(f"{kind} folder and trial resources")
    group.add_argument("--out", required=True, metavar="DIR", help=f"the {kind} folder (trials under DIR/trials/)")
    group.add_argument("--force", action="store_true", help=f"overwrite an existing {kind} folder")
    group.add_argument("--resume", action="store_true",
                       help=f"continue the {kind} in --out: finished trials are kept, unfinished ones continue")
    group.add_argument("--workers", type=int, help="trials at a time (default: CPUs ÷ --cpus-per-trial)")
    group.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs (torch threads) per trial (default 1)")
    group.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial, may be fractional")
    group.add_argument("--address", help="join this Ray cluster (host:port or ray://host:port) instead of a local "
                                         "Ray; --out must then be on storage every node sees")
    group.add_argument("--inline", action="store_true",
                       help="run the trials one after another in this process, without Ray (debugging; a machine "
                            "without Ray)")
    group.add_argument("--quiet", action="store_true", help="no progress bar or per-trial lines")


def resources(args: argparse.Namespace):
    from ..experiments.runner import Resources
    return Resources(args.workers, args.cpus_per_trial, args.gpus_per_trial, args.address, args.inline)


def add_latency_measurement(parser: argparse.ArgumentParser) -> None:
    """How an experiment times its architectures (nss.deploy.profile.measurement_options)."""
    group = parser.add_argument_group("latency measurement")
    group.add_argument("--backend", default="torch", choices=BACKENDS, help="where latency is measured (default torch)")
    group.add_argument("--profile-size", type=frame_size, metavar="HxW",
                       help="input size for latency (default: the frame size)")
    group.add_argument("--iters", type=int, default=30, help="timed iterations per latency (default 30)")


def checked(name: str):
    """An argparse type for option `name` outside a run's configuration: its type and its check."""
    option = OPTIONS[name]

    def parse(text: str):
        try:
            value = option.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {option.kind.__name__} value: {text!r}") from None
        why = option.problem(value)
        if why:
            raise argparse.ArgumentTypeError(f"{why}, got {text}")
        return value
    return parse


def add_device_options(parser: argparse.ArgumentParser, default: str | None = None,
                       default_help: str = "the run's, where it exists here") -> None:
    """Where a network runs: its device and torch's CPU threads (as a run's --device and --threads)."""
    for name, value, shown in (("device", default, default_help), ("threads", None, None)):
        option = OPTIONS[name]
        parser.add_argument(option.flag, default=value, type=checked(name),
                            help=option.help + (f" (default: {shown})" if shown else ""))


def add_compile_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--compile for a command that runs a trained network (`what` it compiles), as training's --compile."""
    option = OPTIONS["compile"]
    parser.add_argument(option.flag, default=option.default, choices=option.choices,
                        help=f"compile {what} with torch.compile and this backend (default: off; the first calls "
                             f"then take the compile time)")


def checked_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def frame_size(text: str) -> tuple[int, int]:
    try:
        return parse_frame_size(text)
    except NSSError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected train,val,test fractions such as 0.8,0.1,0.1, got {text!r}") from None
