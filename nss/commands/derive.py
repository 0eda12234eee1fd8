"""`nss derive`."""
from __future__ import annotations

import argparse

from search_spaces import get_space

from ..config import OPTIONS
from ..errors import NSSError
from . import Command
from .options import checked


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", help="search run folder")
    for name, use in (("threshold", "with a RUN"), ("space", "with --heads")):
        option = OPTIONS[name]
        parser.add_argument(option.flag, default=option.default, type=checked(name),
                            help=f"{option.help} ({use}; default: {option.default})")
    parser.add_argument("--heads", help="comma-separated task@scale heads to keep, e.g. restoration@1,flow@3 (the "
                                        "space's fixed heads are always kept)")
    parser.add_argument("--out", required=True, metavar="FILE.json")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> None:
    from ..runs.trained import derive
    from ..scale_search.derive import architecture_table
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


DERIVE = Command("derive", "architecture.json from a search run's gates or from a list of heads", add_arguments, run,
                 "Derive an architecture: from a search RUN (gates ≥ --threshold kept, each on-probability as the "
                 "run's relaxation has it: the search's own derivation at that threshold) or from --space and "
                 "--heads (the space's fixed heads are always kept).")
