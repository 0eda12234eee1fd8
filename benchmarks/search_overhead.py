"""Search-step cost ÷ plain supernet training-step cost, on the same batch, measured in one run.

A plain step is the pretraining step (every head supervised); a search step adds the Gumbel-softmax gates, the
gated composite of refinements and the sparsity penalty. Both include backward and optimizer steps. The two are
interleaved so that machine noise hits both alike; medians are reported. Target: ratio ≤ 1.10.

    python benchmarks/search_overhead.py [--network cpu] [--frame-size 64x64] [--batch-size 4] [--iters 40]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import default_collate

from nss.data import SyntheticDataset, SyntheticSpec
from nss.gates import Gates
from nss.balancing import make as make_balancer
from nss.steps import batch_to, search_loss, supervised_loss
from nss.train import resolve_device
from search_spaces import get_size, get_space
from supernet import build_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="most_net_plus")
    parser.add_argument("--network", default="cpu")
    parser.add_argument("--frame-size", default="64x64")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    height, width = (int(v) for v in args.frame_size.split("x"))
    space = get_space(args.space)
    torch.manual_seed(0)
    network = build_network(space, get_size(args.network)).to(device)
    gates = Gates(space.searchable).to(device)
    data = SyntheticDataset(SyntheticSpec(clips=2, frames=args.batch_size + 1, height=height, width=width), "train")
    batch = batch_to(default_collate([data[i] for i in range(args.batch_size)]), device)
    theta = torch.optim.Adam(network.parameters(), lr=1e-4)
    alpha = torch.optim.Adam(gates.parameters(), lr=1e-2)
    fixed_weights = make_balancer("ls", space.tasks)

    def plain() -> None:
        theta.zero_grad(set_to_none=True)
        supervised_loss(space, network, batch, fixed_weights).loss.backward()
        theta.step()

    def search() -> None:
        theta.zero_grad(set_to_none=True)
        alpha.zero_grad(set_to_none=True)
        search_loss(space, network, gates, batch, tau=5.0, hard=False, sparsity=1e-3, sparsity_kind="log").loss.backward()
        theta.step()
        alpha.step()

    def timed(step) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(5):  # warm-up
        plain(), search()
    times = {"plain": [], "search": []}
    for _ in range(args.iters):
        times["plain"].append(timed(plain))
        times["search"].append(timed(search))
    plain_ms, search_ms = (1e3 * statistics.median(times[k]) for k in ("plain", "search"))
    print(f"device {device}, network {args.network}, {args.batch_size}×{height}×{width}, {args.iters} steps each")
    print(f"plain supernet training step: {plain_ms:.2f} ms (median)")
    print(f"search step:                  {search_ms:.2f} ms (median)")
    print(f"search / plain ratio:         {search_ms / plain_ms:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
