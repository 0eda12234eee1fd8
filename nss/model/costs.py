"""What each part of a MOST network costs: parameters and FLOPs per component, the four networks the papers
report, and the share of every head per size preset (`nss spaces costs`)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from search_spaces import Architecture, SearchSpace, get_size, get_space, list_sizes
from supernet import MostNet, build_network

DENSE_HEADS = ("restoration@1", "restoration@2", "restoration@3", "segmentation@1", "segmentation@2",
               "segmentation@3")


@dataclass(frozen=True)
class PaperNetwork:
    """A network the papers report, as an architecture of one of our spaces, with its published figures."""

    name: str
    space: str
    heads: tuple[str, ...] | None  # None: every head of the space
    params_m: float  # #P (M)
    fps: float  # frames per second on the papers' GPU (RTX 5000), for ratios only
    source: str

    def architecture(self) -> Architecture:
        space = get_space(self.space)
        return Architecture(space, self.heads if self.heads is not None else space.heads)


PAPER_NETWORKS = (
    PaperNetwork("MOST-NET+ SW", "most_net_plus", DENSE_HEADS + ("flow@3",), 13.2, 6.4, "MOST-NET+ Table I"),
    PaperNetwork("MOST-NET+ DW", "most_net_plus", DENSE_HEADS + ("flow@2", "flow@3"), 29.8, 5.2, "MOST-NET+ Table I"),
    PaperNetwork("MOST-NET++", "most_net_pp", None, 8.9, 5.0, "dissertation Table 6.4"),
    PaperNetwork("MOST-NSS++", "most_net_pp", ("restoration@1", "restoration@3", "segmentation@2",
                                               "segmentation@3", "homography@3"), 6.8, 6.4, "dissertation Table 6.4"),
)


def reference_network(target: SearchSpace | Architecture, size: str) -> MostNet:
    """The network of a space (its supernet) or an architecture at a size preset, initialised from seed 0 (the
    global RNG is left as it was): what is counted, timed and exported wherever the weights do not matter, the same
    every time."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_network(target, get_size(size))


def network_costs(architecture: Architecture, size: str, height: int, width: int) -> dict[str, int]:
    """Parameters and FLOPs (two-frame forward, batch 1) of an architecture at a size preset."""
    network = reference_network(architecture, size)
    return {"params": count_parameters(network), "flops": count_flops(network, height, width)}


def count_parameters(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def component(module_name: str) -> str:
    """The part of a MostNet a module belongs to: encoder, alignment@s, decoder@s or the head's `task@s`."""
    parts = module_name.split(".")
    return parts[0] if parts[0] == "encoder" else parts[1] if parts[0] == "heads" else f"{parts[0]}@{parts[1]}"


def _counted_forward(network: MostNet, height: int, width: int) -> FlopCounterMode:
    """One two-frame forward at batch 1 in eval mode under a FLOP counter; the network is left as it was."""
    parameter = next(network.parameters())
    frames = torch.rand(2, 1, 3, height, width, generator=torch.Generator().manual_seed(0)).to(parameter)
    was_training = network.training
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            network.eval()(frames[0], frames[1])
    finally:
        network.train(was_training)
    return counter


def count_flops(network: MostNet, height: int, width: int) -> int:
    """FLOPs of one two-frame forward at batch 1 (torch.utils.flop_counter: a multiply-add counts 2)."""
    return int(_counted_forward(network, height, width).get_total_flops())


def component_costs(network: MostNet, height: int, width: int) -> pd.DataFrame:
    """Parameters and FLOPs (two-frame forward, batch 1) of every component; FLOPs outside every module (warping,
    upsampling between scales) are the row "between modules"."""
    counter = _counted_forward(network, height, width)
    flops_of = {name: sum(counts.values()) for name, counts in counter.get_flop_counts().items()}
    rows: dict[str, dict[str, int]] = {}
    for name, child in network.named_children():
        for sub, module in (child.items() if isinstance(child, torch.nn.ModuleDict) else [("", child)]):
            key = component(f"{name}.{sub}" if sub else name)
            row = rows.setdefault(key, {"params": 0, "flops": 0})
            row["params"] += count_parameters(module)
            row["flops"] += flops_of.get(f"MostNet.{name}{'.' + sub if sub else ''}", 0)
    inside = sum(r["flops"] for r in rows.values())
    rows["between modules"] = {"params": 0, "flops": int(counter.get_total_flops()) - inside}
    table = pd.DataFrame([{"component": k, **v} for k, v in rows.items()])
    table["params_pct"] = 100 * table["params"] / table["params"].sum()
    table["flops_pct"] = 100 * table["flops"] / table["flops"].sum()
    return table


def compact_heads(heads: tuple[str, ...]) -> str:
    """("restoration@1", "restoration@3", "flow@3") → "restoration 1,3 · flow 3"."""
    scales: dict[str, list[str]] = {}
    for head in heads:
        task, _, scale = head.partition("@")
        scales.setdefault(task, []).append(scale)
    return " · ".join(f"{task} {','.join(s)}" for task, s in scales.items())


def paper_network_table(size: str = "paper") -> pd.DataFrame:
    """Our parameter count of each network the papers report, next to theirs."""
    rows = []
    for paper in PAPER_NETWORKS:
        params = count_parameters(reference_network(paper.architecture(), size))
        rows.append({"network": paper.name, "space": paper.space,
                     "heads": "every head" if paper.heads is None else compact_heads(paper.heads),
                     "params": params, "paper_params": paper.params_m * 1e6,
                     "deviation_pct": 100 * (params / (paper.params_m * 1e6) - 1), "source": paper.source})
    return pd.DataFrame(rows)


def head_share_table(space: str, height: int = 64, width: int = 64,
                     sizes: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every component's share of the supernet's parameters and FLOPs, one row per (size preset, component)."""
    frames = []
    for size in sizes or sorted(list_sizes(), key=lambda name: get_size(name).divisor):
        table = component_costs(reference_network(get_space(space), size), height, width)
        table.insert(0, "size", size)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)
