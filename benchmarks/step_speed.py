"""Training steps per second of the default search's two phases (pretrain, search), this tree against a baseline
commit, and the FLOP/s they achieve as a share of a large matrix product's on the same threads, measured in one run.

The baseline is checked out in a git worktree and run by the same Python; the two trees' runs take turns
(`--repeats` rounds) so that the machine's drift hits both alike. A phase's rate is the slope of metrics.csv's
wall_time over its steps after the first logged row (start-up, first-call allocation and compilation excluded).
The final gates of the two trees' runs are compared: in fp32 any change of summation order (another thread
count, memory layout or kernel) parts them by up to ~1e-1 after 60 steps — Adam turns the rounding of a near-zero
gradient into a step of up to lr (README) — so the function the two trees compute is compared on a short fp64
pair as well (target 1e-5), next to that pair's own floor: the baseline on one thread against all of them
(`--compile` changes the arithmetic). Target: the `cpu` network's search ≥ 2× the baseline's steps/s.

    python benchmarks/step_speed.py [--baseline COMMIT] [--steps 60] [--repeats 2] [--networks tiny,cpu]
                                    [--extra "--compile inductor"]
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch

from nss.model.step import supervised_loss
from nss.training.balancing import make as make_balancer

from common import set_up, step_benchmark_parser

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("pretrain", "search")
FP64_STEPS = 10  # a phase of the fp64 pair that compares the function the trees compute


@contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """`commit` checked out in a temporary git worktree (removed afterwards)."""
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True,
                       capture_output=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)


def run_search(tree: Path, network: str, steps: int, extra: list[str], out: Path) -> dict:
    """`nss search` of `tree`'s code on the built-in synthetic data; its final gates."""
    argv = [sys.executable, "-m", "nss", "search", "--network", network, "--device", "cpu", "--pretrain-steps",
            str(steps), "--search-steps", str(steps), "--log-every", "5", "--checkpoint-every", str(steps),
            "--select", "gates", "--quiet", "--out", str(out), *extra]
    env = dict(os.environ, PYTHONPATH=str(tree))  # before the installed package: this tree's nss, supernet, …
    subprocess.run(argv, check=True, capture_output=True, env=env, cwd=tree)
    return {"gates": torch.load(out / "checkpoints" / "last.pt", weights_only=True)["gates"]}


def phase_rates(out: Path) -> dict[str, float]:
    """Steps/s of each phase of a run: the slope of wall_time after its first logged row."""
    metrics = pd.read_csv(out / "metrics.csv")
    rates = {}
    for phase in PHASES:
        rows = metrics[metrics["phase"] == phase].iloc[1:]
        rates[phase] = (rows["step"].iloc[-1] - rows["step"].iloc[0]) / (rows["wall_time"].iloc[-1] -
                                                                        rows["wall_time"].iloc[0])
    return rates


def gate_difference(a: dict, b: dict) -> float:
    return max((a["gates"][k] - b["gates"][k]).abs().max().item() for k in a["gates"])


def flops_per_step(network: str) -> dict[str, float]:
    """FLOPs of one pretrain and one search step (forward and backward) of the default configuration."""
    s = set_up(step_benchmark_parser("").parse_args(["--network", network, "--device", "cpu"]))
    weights = make_balancer("ls", s.space.tasks)
    steps = {"pretrain": lambda: supervised_loss(s.space, s.network, s.batch, weights).loss.backward(),
             "search": lambda: s.objective.loss(s.network, s.batch).loss.backward()}
    counted = {}
    for phase, step in steps.items():
        with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
            step()
        counted[phase] = counter.get_total_flops()
    return counted


def matmul_flops_per_second(size: int = 2048, iters: int = 10) -> float:
    """What the CPU threads give a large fp32 matrix product: its FLOP/s, best of `iters`."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="4e2eeb9", help="the commit to compare with (default: before issue 22)")
    parser.add_argument("--steps", type=int, default=60, help="steps of each phase per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each tree, taking turns")
    parser.add_argument("--networks", default="tiny,cpu")
    parser.add_argument("--extra", default="", help="more `nss search` flags for this tree's runs only")
    args = parser.parse_args()
    networks, extra = args.networks.split(","), shlex.split(args.extra)

    results: dict[tuple[str, str], list[dict]] = {}
    with worktree(args.baseline) as baseline, tempfile.TemporaryDirectory() as runs:
        for repeat in range(args.repeats):
            for network in networks:
                for name, tree, flags in (("baseline", baseline, []), ("this tree", ROOT, extra)):
                    out = Path(runs) / f"{name.replace(' ', '_')}-{network}-{repeat}"
                    run = run_search(tree, network, args.steps, flags, out)
                    results.setdefault((name, network), []).append(dict(run, rates=phase_rates(out)))
        fp64 = {}
        for network in networks:  # this tree against the baseline, and the baseline on one thread: fp64's own floor
            def fp64_gates(name: str, tree: Path, flags: list[str]) -> dict:
                return run_search(tree, network, FP64_STEPS, ["--precision", "fp64", *flags],
                                  Path(runs) / f"{name}-{network}-fp64")
            try:
                reference = fp64_gates("baseline", baseline, [])
            except subprocess.CalledProcessError:  # a baseline from before --precision
                continue
            fp64[network] = (gate_difference(reference, fp64_gates("this", ROOT, extra)),
                             gate_difference(reference, fp64_gates("floor", baseline, ["--threads", "1"])))
    matmul = matmul_flops_per_second()

    print(f"nss search on the CPU ({torch.get_num_threads()} threads), {args.steps} steps a phase, median of "
          f"{args.repeats} runs a tree taking turns; baseline {args.baseline}"
          f"{'; this tree with ' + args.extra if extra else ''}")
    print(f"large matmul (2048², fp32): {matmul / 1e9:.1f} GFLOP/s")
    print(f"{'network':8} {'phase':9} {'baseline':>9} {'this tree':>10} {'speed-up':>9} {'GFLOP/step':>11} "
          f"{'GFLOP/s':>8} {'of matmul':>10}")
    for network in networks:
        flops = flops_per_step(network)
        for phase in PHASES:
            rate = {name: statistics.median(r["rates"][phase] for r in results[(name, network)])
                    for name in ("baseline", "this tree")}
            achieved = flops[phase] * rate["this tree"]
            print(f"{network:8} {phase:9} {rate['baseline']:>7.2f}/s {rate['this tree']:>8.2f}/s "
                  f"{rate['this tree'] / rate['baseline']:>8.2f}× {flops[phase] / 1e9:>11.2f} {achieved / 1e9:>8.1f} "
                  f"{achieved / matmul:>9.1%}")
        fp32 = gate_difference(results[("baseline", network)][0], results[("this tree", network)][0])
        exact = "the baseline has no --precision fp64" if network not in fp64 else (
            f"in fp64 after {FP64_STEPS} + {FP64_STEPS}: {fp64[network][0]:.2e} (target <= 1e-5), the baseline on 1 "
            f"thread against {torch.get_num_threads()}: {fp64[network][1]:.2e}")
        print(f"{network:8} final gates, baseline vs this tree: max |Δ| {fp32:.2e} in fp32 after {args.steps} + "
              f"{args.steps} steps; {exact}")
    print("target: the cpu network's search >= 2× the baseline's steps/s")


if __name__ == "__main__":
    main()
