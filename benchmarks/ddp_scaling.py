"""Data-parallel scaling on this CPU: samples/s of a `cpu`-network search on 2 gloo ranks × 1 thread against
1 process × 1 thread, the same global batch on the same data folder, and the gates the two end with.

A phase's samples/s is the global batch times the slope of metrics.csv's wall_time over its steps after the first
logged row (start-up excluded). The gates are compared twice: after the timed fp32 runs, where 1 and 2 ranks add
their gradients in a different order and Adam turns that rounding into noise (its size is shown by the same
one-process run on 2 threads against 1), and after fp64 runs of the same configuration, where what is left is
the data-parallel arithmetic itself, next to the same one-process fp64 run on 2 threads (fp64's own floor:
a summation order changed by the thread count alone). Targets: ≥ 1.7× the samples/s; fp64 gates equal within 1e-5.

Beside the speed-up, its bound without any communication: one process on one rank's share of the batch, twice
(each rank computes that much): where the step is bound by per-operation overhead rather than arithmetic, halving
the batch hardly shortens it, and no data parallelism over the batch can then scale.

    python benchmarks/ddp_scaling.py [--steps 40] [--exact-steps 10] [--batch-size 4]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from nss.data import SyntheticSpec, write_synthetic

PHASES = ("pretrain", "search")


def search(data: Path, out: Path, steps: int, batch: int, *, nproc: int = 1, threads: int = 1,
           precision: str = "fp32") -> dict:
    """One `nss search` of the cpu network on `data`; samples/s per phase and the final gates."""
    argv = [sys.executable, "-m", "nss", "search", "--network", "cpu", "--device", "cpu", "--data", str(data),
            "--batch-size", str(batch), "--pretrain-steps", str(steps), "--search-steps", str(steps),
            "--log-every", "5", "--checkpoint-every", str(steps), "--select", "gates", "--threads", str(threads),
            "--precision", precision, "--nproc", str(nproc), "--quiet", "--out", str(out)]
    subprocess.run(argv, check=True, capture_output=True)
    metrics = pd.read_csv(out / "metrics.csv")
    rates = {}
    for phase in PHASES:
        rows = metrics[metrics["phase"] == phase].iloc[1:]
        if len(rows) > 1:  # the short fp64 runs are not timed
            seconds = rows["wall_time"].iloc[-1] - rows["wall_time"].iloc[0]
            rates[phase] = batch * (rows["step"].iloc[-1] - rows["step"].iloc[0]) / seconds
    return {"rates": rates, "gates": torch.load(out / "checkpoints" / "last.pt", weights_only=True)["gates"]}


def gate_difference(a: dict, b: dict) -> float:
    return max((a["gates"][k] - b["gates"][k]).abs().max().item() for k in a["gates"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="steps of each phase in the timed fp32 runs")
    parser.add_argument("--exact-steps", type=int, default=10, help="steps of each phase in the fp64 runs")
    parser.add_argument("--batch-size", type=int, default=4, help="the global batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        data = write_synthetic(root / "data", SyntheticSpec(clips=8, frames=6, height=64, width=64), progress=False)
        common = dict(data=data, batch=args.batch_size)
        one = search(out=root / "one", steps=args.steps, **common)
        two = search(out=root / "two", steps=args.steps, nproc=2, **common)
        share = search(out=root / "share", steps=args.steps, data=data, batch=args.batch_size // 2)
        threads = search(out=root / "threads", steps=args.steps, threads=2, **common)
        exact_one = search(out=root / "exact-one", steps=args.exact_steps, precision="fp64", **common)
        exact_two = search(out=root / "exact-two", steps=args.exact_steps, precision="fp64", nproc=2, **common)
        exact_threads = search(out=root / "exact-threads", steps=args.exact_steps, precision="fp64", threads=2,
                               **common)

    print(f"cpu network, 64x64, global batch {args.batch_size}, {args.steps} steps a phase, data folder, "
          f"{torch.get_num_threads()} cores")
    print(f"{'phase':9} {'1 × 1 thread':>13} {'2 ranks × 1':>12} {'speed-up':>9} {'bound':>7}")
    for phase in PHASES:
        a, b, bound = one["rates"][phase], two["rates"][phase], 2 * share["rates"][phase]
        print(f"{phase:9} {a:>7.2f} smp/s {b:>6.2f} smp/s {b / a:>8.2f}× {bound / a:>6.2f}×   (target >= 1.7×; "
              f"bound: 2 × one process on batch {args.batch_size // 2})")
    print(f"final gates, fp32, 2 ranks vs 1 process:           max |Δ| {gate_difference(one, two):.2e}")
    print(f"final gates, fp32, 1 process 2 threads vs 1 thread: max |Δ| {gate_difference(one, threads):.2e} "
          "(the noise floor of fp32)")
    print(f"final gates, fp64 ({args.exact_steps} steps a phase), 2 ranks vs 1 process: max |Δ| "
          f"{gate_difference(exact_one, exact_two):.2e} (target <= 1e-5)")
    print(f"final gates, fp64, 1 process 2 threads vs 1 thread: max |Δ| "
          f"{gate_difference(exact_one, exact_threads):.2e} "
          "(the noise floor of fp64: Adam turns a changed summation order into this much)")


if __name__ == "__main__":
    main()
