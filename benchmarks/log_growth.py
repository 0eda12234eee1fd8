"""Does logging cost the same per row however long a run is? Bytes the run folder's CSV tables write per logged row,
for a short search and one ten times longer, in one run (the tables append at each checkpoint; before, every
checkpoint rewrote every table whole, quadratic in the run's length).

    python benchmarks/log_growth.py [--steps 40] [--checkpoint-every 5]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nss
from nss.runs.folder import RunFolder
from nss.training.api import COMMANDS
from nss.training.session import Session
from nss.training.trainer import Trainer


def bytes_per_row(steps: int, every: int, folder: Path) -> tuple[float, int]:
    config = nss.resolve_config(network="tiny", frame_size="32x32", clips=2, frames=3, batch_size=2,
                                pretrain_steps=steps, search_steps=steps, log_every=1, checkpoint_every=every,
                                conflicts_every=every, device="cpu")
    session = Session.open(config)
    trainer = Trainer(session, RunFolder(folder).create(force=True), progress=False)
    trainer.run_phases(COMMANDS["search"](session))
    tables = trainer.run.tables.values()
    rows = sum(t.rows_written for t in tables)
    return sum(t.bytes_written for t in tables) / rows, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        short = bytes_per_row(args.steps, args.checkpoint_every, Path(folder) / "short")
        long = bytes_per_row(10 * args.steps, args.checkpoint_every, Path(folder) / "long")
    print(f"{args.steps} steps per phase: {short[0]:.0f} bytes written per logged row ({short[1]} rows)")
    print(f"{10 * args.steps} steps per phase: {long[0]:.0f} bytes written per logged row ({long[1]} rows)")
    print(f"ratio {long[0] / short[0]:.2f} (flat: ~1; a rewrite at every checkpoint grows it ~10x)")


if __name__ == "__main__":
    main()
