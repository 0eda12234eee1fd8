"""`nss report`."""
from __future__ import annotations

import argparse

from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders (searches, retrainings, …) and experiment folders")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--force", action="store_true", help="overwrite an existing report folder")


def run(args: argparse.Namespace) -> None:
    from analysis import build_report  # matplotlib and the analysis tables: only this command needs them
    out = build_report(args.runs, args.out, force=args.force)
    print(f"wrote {out / 'report.md'}")


REPORT = Command("report", "figures, tables and report.md for a set of run folders", add_arguments, run)
