"""What the step benchmarks share: their options, one fixed batch and a tiny timer."""
from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import default_collate

from nss.data import SyntheticDataset, SyntheticSpec
from nss.gates import Gates
from nss.profile import time_interleaved
from nss.steps import batch_to
from nss.train import resolve_device
from search_spaces import SearchSpace, get_size, get_space
from supernet import MostNet, build_network


def step_benchmark_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--space", default="most_net_plus")
    parser.add_argument("--network", default="cpu")
    parser.add_argument("--frame-size", default="64x64")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--device", default="auto")
    return parser


@dataclass
class Setup:
    space: SearchSpace
    network: MostNet
    gates: Gates
    batch: dict
    device: torch.device
    description: str


def set_up(args: argparse.Namespace) -> Setup:
    """The supernet, its gates and one synthetic batch, all on the chosen device."""
    device = resolve_device(args.device)
    height, width = (int(v) for v in args.frame_size.split("x"))
    space = get_space(args.space)
    torch.manual_seed(0)
    network = build_network(space, get_size(args.network)).to(device)
    gates = Gates(space.searchable).to(device)
    data = SyntheticDataset(SyntheticSpec(clips=2, frames=args.batch_size + 1, height=height, width=width), "train")
    batch = batch_to(default_collate([data[i] for i in range(args.batch_size)]), device)
    description = (f"device {device}, network {args.network}, {args.batch_size}×{height}×{width}, "
                   f"{args.iters} steps each")
    return Setup(space, network, gates, batch, device, description)


def median_ms(steps: dict[str, Callable[[], None]], iters: int, device: torch.device) -> dict[str, float]:
    """Median milliseconds of each step, the steps interleaved so that machine noise hits all alike."""
    times = time_interleaved(steps, iters, warmup=5, device=device)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}
