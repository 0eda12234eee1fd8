"""What the step benchmarks share: their options, one fixed batch and a tiny timer."""
from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import default_collate

from nss.config import RunConfig
from nss.data import SyntheticDataset, SyntheticSpec
from nss.deploy.profile import time_interleaved
from nss.device import resolve_device
from nss.model.costs import reference_network
from nss.model.step import batch_to
from nss.scale_search.objective import SearchObjective
from search_spaces import SearchSpace, get_space
from supernet import MostNet


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
    objective: SearchObjective  # the default search's, its gates on the device
    batch: dict
    device: torch.device
    description: str


def set_up(args: argparse.Namespace) -> Setup:
    """The supernet, the default search objective and one synthetic batch, all on the chosen device."""
    device = resolve_device(args.device)
    height, width = (int(v) for v in args.frame_size.split("x"))
    space = get_space(args.space)
    network = reference_network(space, args.network).to(device)
    objective = SearchObjective.from_config(RunConfig(), space)
    objective.gates.to(device)
    data = SyntheticDataset(SyntheticSpec(clips=2, frames=args.batch_size + 1, height=height, width=width), "train")
    batch = batch_to(default_collate([data[i] for i in range(args.batch_size)]), device)
    description = (f"device {device}, network {args.network}, {args.batch_size}×{height}×{width}, "
                   f"{args.iters} steps each")
    return Setup(space, network, objective, batch, device, description)


def median_ms(steps: dict[str, Callable[[], None]], iters: int, device: torch.device) -> dict[str, float]:
    """Median milliseconds of each step, the steps interleaved so that machine noise hits all alike."""
    times = time_interleaved(steps, iters, warmup=5, device=device)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}
