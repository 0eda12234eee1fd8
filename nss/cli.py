"""`nss`: the command line, assembled from the commands of nss.commands (each an add_arguments / run pair)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from search_spaces import SpaceError

from .commands import Command
from .commands.data import DATA
from .commands.deploy import EXPORT, PREDICT, PROFILE
from .commands.derive import DERIVE
from .commands.evaluation import EVALUATE
from .commands.experiments import GROUNDTRUTH, RANK, SWEEP, TUNE
from .commands.report import REPORT
from .commands.spaces import SPACES
from .commands.training import PRETRAIN, RETRAIN, SEARCH
from .errors import NSSError

COMMANDS: tuple[Command, ...] = (SEARCH, PRETRAIN, RETRAIN, EVALUATE, EXPORT, PROFILE, SWEEP, PREDICT, TUNE,
                                 GROUNDTRUTH, RANK, REPORT, DERIVE, SPACES, DATA)


class OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes end in one line on stderr and exit status 2, like every other error of `nss`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="nss", description="Neural Scale Search for multi-task, multi-scale video networks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrors)
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.description or None)
        command.add_arguments(sub)
        sub.set_defaults(command_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what `--nproc` starts each rank with
    rank = int(os.environ.get("RANK", 0))  # a data-parallel run's rank 0 speaks for it; the others print errors only
    notes = logging.StreamHandler(sys.stderr)
    notes.setFormatter(logging.Formatter("nss: %(message)s"))
    logging.getLogger("nss").addHandler(notes)
    if rank:
        notes.setLevel(logging.ERROR)
        sys.stdout = open(os.devnull, "w")
    try:
        args.command_run(args)
    except (NSSError, SpaceError) as err:
        print(f"nss: error{f' (rank {rank})' if rank else ''}: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:  # an output that cannot be written (a read-only folder, a file where a folder goes)
        print(f"nss: error: {err.filename or ''}{': ' if err.filename else ''}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nss: interrupted (a run folder can be continued with --out DIR --resume)", file=sys.stderr)
        return 130
    finally:
        logging.getLogger("nss").removeHandler(notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
