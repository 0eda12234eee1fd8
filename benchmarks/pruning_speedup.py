"""Does pruning turn into speed? Supernet ÷ derived network: latency ratio next to the FLOPs and parameter ratios.

Two derived networks of `most_net_plus`: the one the default search (`nss search --tau 5`) finds, and the paper's
MOST-NSS++-like structure (restoration at scales 1 and 3, segmentation at 2 and 3, motion at 3 only). Latency at
batch 1 on the CPU with torch and ONNX Runtime, measured in one run. Target: latency ratio ≥ 0.8 × FLOPs ratio.

    python benchmarks/pruning_speedup.py [--size 256x256] [--network cpu] [--iters 50]
    python benchmarks/pruning_speedup.py --architecture runs/<search>/architecture.json   # another derived net
"""
from __future__ import annotations

import argparse

import torch

from nss.profile import profile_network
from search_spaces import Architecture, get_size, get_space
from supernet import build_network

SPACE = get_space("most_net_plus")
DERIVED = {
    # what `nss search --tau 5` keeps on the synthetic data (runs/reference): gates restoration@1 0.65,
    # segmentation@1 0.70, segmentation@2 0.60, flow@2 0.76 kept; restoration@2 0.01 and flow@1 0.04 dropped
    "default search": ("restoration@1", "restoration@3", "segmentation@1", "segmentation@2", "segmentation@3",
                       "flow@2", "flow@3"),
    "MOST-NSS++-like": ("restoration@1", "restoration@3", "segmentation@2", "segmentation@3", "flow@3"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--network", default="cpu")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--architecture", help="also measure this architecture.json")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    derived = {name: Architecture(SPACE, heads) for name, heads in DERIVED.items()}
    if args.architecture:
        derived[args.architecture] = Architecture.load(args.architecture)

    print(f"{args.network} network, {height}x{width}, batch 1, {args.iters} timed iterations, "
          f"{torch.get_num_threads()} threads")
    print(f"{'architecture':<18} {'backend':<12} {'params':>7} {'FLOPs':>7} {'latency':>8} {'latency/FLOPs':>14}")
    for backend in ("torch", "onnxruntime"):
        torch.manual_seed(0)
        full = profile_network(build_network(SPACE, get_size(args.network)), height=height, width=width,
                               backend=backend, iters=args.iters)
        for name, architecture in derived.items():
            pruned = profile_network(build_network(architecture, get_size(args.network)), height=height,
                                     width=width, backend=backend, iters=args.iters)
            params = full["params"] / pruned["params"]
            flops = full["flops"] / pruned["flops"]
            latency = full["latency_ms"]["median"] / pruned["latency_ms"]["median"]
            print(f"{name:<18} {backend:<12} {params:>6.2f}x {flops:>6.2f}x {latency:>7.2f}x "
                  f"{latency / flops:>13.2f} (target >= 0.8)")
        print(f"{'(supernet)':<18} {backend:<12} {'':>7} {'':>7} {full['latency_ms']['median']:>6.1f}ms")


if __name__ == "__main__":
    main()
