"""The command line, one module per room of the pipeline: each command is a small `add_arguments(parser)` /
`run(args)` pair that builds a configuration and calls one library function. Modules here import nothing heavy
at import time (torch, Ray, Optuna come with `run`), so that `nss --help` and argument errors answer at once."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    description: str | None = None
