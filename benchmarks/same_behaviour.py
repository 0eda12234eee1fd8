"""Does a change keep what runs compute? The same short runs made by an earlier commit (checked out in a git
worktree) and by this tree, their logs and weights compared byte for byte.

Three runs on each side, all on the CPU with one thread: a default search with a short schedule (seed 0), a
retraining of its architecture, and the same search killed part way through its search phase and resumed.
Compared exactly: every cell of gates.csv, deltas.csv, conflicts.csv, validation.csv and metrics.csv (its wall-clock
column aside) as the text written, architecture.json byte for byte, and every tensor of the final checkpoints.

    python benchmarks/same_behaviour.py --baseline HEAD~3 --out /tmp/same
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
SCHEDULE = ["--pretrain-steps", "40", "--search-steps", "40", "--seed", "0", "--checkpoint-every", "10", "--quiet"]
TABLES = ("gates.csv", "deltas.csv", "conflicts.csv", "validation.csv", "metrics.csv")


def nss(tree: Path, *argv: str) -> subprocess.Popen:
    """`python -m nss.cli ARGV` with the package of `tree` first on the path (one thread: the same on both sides)."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "nss.cli", *argv], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate()
    if process.returncode:
        raise SystemExit(f"{' '.join(map(str, process.args))} failed:\n{err}")


def killed_in_search(tree: Path, out: Path) -> None:
    """The search, SIGKILLed once a checkpoint of its search phase past step 0 is on disk, then resumed."""
    process, last = nss(tree, "search", *SCHEDULE, "--out", str(out)), out / "checkpoints" / "last.pt"
    while process.poll() is None:
        try:
            state = torch.load(last, weights_only=True)
        except Exception:  # noqa: BLE001 - not there yet, or renamed into place while we looked
            state = {}
        if state.get("phase") == "search" and 0 < state["step"] < 40:
            process.send_signal(signal.SIGKILL)
            process.wait()
            finish(nss(tree, "search", "--out", str(out), "--resume", "--quiet"))
            return
        time.sleep(0.05)
    raise SystemExit(f"{out}: the search ended before it could be killed in its search phase")


def make_runs(tree: Path, out: Path) -> None:
    finish(nss(tree, "search", *SCHEDULE, "--out", str(out / "search")))
    finish(nss(tree, "retrain", str(out / "search" / "architecture.json"), "--steps", "40", "--val-every", "20",
               "--seed", "0", "--quiet", "--out", str(out / "retrain")))
    killed_in_search(tree, out / "resumed")


def differences(ours: Path, theirs: Path) -> list[str]:
    """What differs between two run folders, one line each; empty when they hold the same."""
    found = []
    for name in TABLES:
        a, b = ours / name, theirs / name
        if a.exists() != b.exists():
            found.append(f"{name}: on one side only")
        elif a.exists():  # the cells as written (a float's digits), whatever the line endings
            left, right = (pd.read_csv(p, dtype=str, keep_default_na=False).drop(columns="wall_time", errors="ignore")
                           for p in (a, b))
            if not left.equals(right):
                found.append(f"{name} differs")
    a, b = ours / "architecture.json", theirs / "architecture.json"
    if a.read_bytes() != b.read_bytes():
        found.append("architecture.json differs")
    for name in ("last.pt", "best.pt"):
        a, b = (run / "checkpoints" / name for run in (ours, theirs))
        if a.exists() != b.exists():
            found.append(f"checkpoints/{name}: on one side only")
        elif a.exists():
            left, right = (torch.load(p, weights_only=True)["network"] for p in (a, b))
            if left.keys() != right.keys() or not all(torch.equal(left[k], right[k]) for k in left):
                found.append(f"checkpoints/{name}: weights differ")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with (any git revision)")
    parser.add_argument("--out", type=Path, required=True, help="where both sides' runs are written")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        baseline = Path(scratch) / "baseline"
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", "-q", str(baseline),
                        args.baseline], check=True)
        try:
            make_runs(baseline, args.out / "baseline")
        finally:
            subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(baseline)], check=True)
    make_runs(REPOSITORY, args.out / "current")
    rows = []
    for run in ("search", "retrain", "resumed"):
        found = differences(args.out / "current" / run, args.out / "baseline" / run)
        rows.append({"run": run, "same": not found, "differences": "; ".join(found)})
    found = differences(args.out / "current" / "resumed", args.out / "current" / "search")
    rows.append({"run": "resumed vs uninterrupted (this tree)", "same": not found, "differences": "; ".join(found)})
    table = pd.DataFrame(rows)
    print(f"this tree against {args.baseline}:")
    print(table.to_string(index=False))
    (args.out / "same_behaviour.json").write_text(json.dumps(rows, indent=2) + "\n")
    if not table["same"].all():
        raise SystemExit(1)


if __name__ == "__main__":
    main()
