"""Does pruning pay as in the papers? Parameters, FLOPs and measured latency of the networks the papers compare,
at the paper's width (`--network paper`) and frame size (320×416), next to the papers' #P and FPS ratios.

    MOST-NET+ DW ÷ SW      flow at scales 3 and 2 against flow at scale 3 only   (paper: 29.8/13.2 M, 6.4/5.2 FPS)
    MOST-NET++ ÷ MOST-NSS++   every head against NSS's R@1,3 · M@2,3 · H@3      (paper: 8.9/6.8 M, 6.4/5.0 FPS)

Ratios are bigger ÷ smaller (params, FLOPs, latency), so a latency ratio is the papers' FPS ratio. Latency is the
median batch-1 two-frame forward, the four networks timed in turns in one run (torch on the CPU here; torch
fp16 on a GPU, or TensorRT FP16 with --backend tensorrt). Targets: params ratios within ±10% of the papers';
latency ratio ≥ 0.8 × FLOPs ratio.

    python benchmarks/pruning_speedup.py [--size 320x416] [--network paper] [--iters 10] [--backend torch]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from nss.deploy.profile import backend_runs, resolve_backend, time_interleaved
from nss.device import backend_device
from nss.model.costs import PAPER_NETWORKS, count_flops, count_parameters, reference_network

PAIRS = (("MOST-NET+ DW", "MOST-NET+ SW"), ("MOST-NET++", "MOST-NSS++"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="320x416")
    parser.add_argument("--network", default="paper")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt"))
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    backend, _ = resolve_backend(args.backend)
    device = backend_device(backend)
    fp16 = device.type == "cuda"
    papers = {p.name: p for p in PAPER_NETWORKS}

    costs, runs = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for name, paper in papers.items():
            network = reference_network(paper.architecture(), args.network)
            costs[name] = (count_parameters(network), count_flops(network, height, width))
            sub = Path(folder) / name.replace(" ", "_")
            sub.mkdir()
            runs[name] = backend_runs(network, height, width, backend, device, fp16, sub)[0]
        times = time_interleaved(runs, args.iters, warmup=2, device=device)
    latency = {name: 1e3 * statistics.median(t) for name, t in times.items()}

    print(f"{args.network} network, {height}x{width}, batch 1, {backend} on {device} "
          f"({'fp16' if fp16 else 'fp32'}, {torch.get_num_threads()} threads), {args.iters} timed runs each")
    print(f"{'network':<14} {'params':>9} {'GFLOPs':>8} {'latency':>10}   paper #P   paper FPS")
    for name, (params, flops) in costs.items():
        print(f"{name:<14} {params / 1e6:>8.2f}M {flops / 1e9:>8.1f} {latency[name]:>8.1f}ms "
              f"{papers[name].params_m:>8.1f}M {papers[name].fps:>10.1f}")
    print(f"\n{'bigger ÷ smaller':<26} {'params':>7} {'paper':>6} {'FLOPs':>6} {'latency':>8} {'paper FPS':>10} "
          f"{'latency/FLOPs':>14}")
    for big, small in PAIRS:
        params = costs[big][0] / costs[small][0]
        paper_params = papers[big].params_m / papers[small].params_m
        flops = costs[big][1] / costs[small][1]
        ratio = latency[big] / latency[small]
        print(f"{big + ' ÷ ' + small:<26} {params:>6.2f}x {paper_params:>5.2f}x {flops:>5.2f}x {ratio:>7.2f}x "
              f"{papers[small].fps / papers[big].fps:>9.2f}x {ratio / flops:>13.2f}   "
              f"(params {100 * (params / paper_params - 1):+.0f}% vs paper, target ±10%; latency/FLOPs target ≥ 0.8)")


if __name__ == "__main__":
    main()
