"""Cost of measuring gradient conflicts: a measured step ÷ a plain step (target ≤ T, the number of tasks) and the
amortized overhead at the default --conflicts-every K (target ≤ 15%), in one run, for pretraining and search steps.

    python benchmarks/conflict_overhead.py [--network cpu] [--frame-size 64x64] [--batch-size 4] [--iters 30]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import default_collate

from nss.balancing import make as make_balancer
from nss.config import RunConfig
from nss.conflicts import backward_per_task, conflict_rows
from nss.data import SyntheticDataset, SyntheticSpec
from nss.gates import Gates
from nss.steps import search_loss, supervised_loss
from search_spaces import get_size, get_space
from supernet import build_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="most_net_plus")
    parser.add_argument("--network", default="cpu")
    parser.add_argument("--frame-size", default="64x64")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args()
    height, width = (int(v) for v in args.frame_size.split("x"))
    space = get_space(args.space)
    torch.manual_seed(0)
    network, gates = build_network(space, get_size(args.network)), Gates(space.searchable)
    data = SyntheticDataset(SyntheticSpec(clips=2, frames=args.batch_size + 1, height=height, width=width), "train")
    batch = default_collate([data[i] for i in range(args.batch_size)])
    optimizer = torch.optim.Adam(list(network.parameters()) + list(gates.parameters()), lr=1e-4)
    balancer = make_balancer("ls", space.tasks)
    named = list(network.named_parameters()) + [("gates.logits", gates.logits)]
    network_names = {n for n, _ in network.named_parameters()}
    losses = {
        "pretrain": lambda: supervised_loss(space, network, batch, balancer),
        "search": lambda: search_loss(space, network, gates, batch, tau=5.0, hard=False, sparsity=1e-4,
                                      sparsity_kind="log"),
    }

    def plain(phase: str) -> None:
        optimizer.zero_grad(set_to_none=True)
        losses[phase]().loss.backward()
        optimizer.step()

    def measured(phase: str) -> None:
        optimizer.zero_grad(set_to_none=True)
        result = losses[phase]()
        terms = {t: result.weights[t] * v for t, v in result.task_losses.items()}
        conflict_rows(backward_per_task(terms, result.extra, named), network_names)
        optimizer.step()

    def timed(step, phase: str) -> float:
        start = time.perf_counter()
        step(phase)
        return time.perf_counter() - start

    every, tasks = RunConfig().conflicts_every, len(space.tasks)
    print(f"network {args.network}, {args.batch_size}×{height}×{width}, {args.iters} steps each, "
          f"{tasks} tasks, default K = {every}")
    for phase in losses:
        for _ in range(3):
            plain(phase), measured(phase)
        times = {"plain": [], "measured": []}
        for _ in range(args.iters):  # interleaved, so that machine noise hits both alike
            times["plain"].append(timed(plain, phase))
            times["measured"].append(timed(measured, phase))
        plain_ms, measured_ms = (1e3 * statistics.median(times[k]) for k in ("plain", "measured"))
        ratio = measured_ms / plain_ms
        amortized = (ratio - 1) / every
        print(f"{phase:9s} plain {plain_ms:7.1f} ms, measured {measured_ms:7.1f} ms: ratio {ratio:.2f} "
              f"(target <= {tasks}); amortized overhead at K={every}: {100 * amortized:.1f}% (target <= 15%)")


if __name__ == "__main__":
    main()
