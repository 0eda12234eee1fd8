"""Built-in tasks, search-space presets and network-size presets (flat registries)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .space import Metric, SearchSpace, SpaceError, TaskSpec, head_name

# Loss weights λ_i follow MOST-NET+ (restoration 0.1, segmentation 0.2, flow 0.1). The dissertation's homography
# weight (1.4e3) belongs to its own corner-offset units; ours are pixels, so a weight of the flow's order is used.
TASKS: dict[str, TaskSpec] = {
    "restoration": TaskSpec("restoration", "image", "charbonnier", 0.1,
                            (Metric("psnr", "higher"), Metric("ssim", "higher"))),
    "segmentation": TaskSpec("segmentation", "mask", "bce", 0.2, (Metric("iou", "higher"),)),
    "flow": TaskSpec("flow", "flow", "epe", 0.1, (Metric("epe", "lower"),)),
    "homography": TaskSpec("homography", "homography", "corner", 0.05, (Metric("mace", "lower"),)),
}


def every_task_at_every_scale(name: str, tasks: tuple[str, ...], scales: int = 3) -> SearchSpace:
    """A MOST output space: every task at every scale, the coarsest scale of each task fixed on."""
    specs = tuple(TASKS[t] for t in tasks)
    heads = tuple(head_name(t, s) for t in tasks for s in range(1, scales + 1))
    return SearchSpace(name, scales, specs, heads, tuple(head_name(t, scales) for t in tasks))


_SPACES = {
    "most_net_plus": lambda: every_task_at_every_scale("most_net_plus", ("restoration", "segmentation", "flow")),
    "most_net_pp": lambda: every_task_at_every_scale("most_net_pp", ("restoration", "segmentation", "homography")),
}
DEFAULT_SPACE = "most_net_plus"


def list_spaces() -> list[str]:
    return sorted(_SPACES)


def get_space(name_or_path: str | Path) -> SearchSpace:
    """A preset by name, or a space saved as JSON (a path ending in .json or an existing file)."""
    key = str(name_or_path)
    if key in _SPACES:
        return _SPACES[key]()
    if key.endswith(".json") or Path(key).is_file():
        return SearchSpace.load(key)
    raise SpaceError(f"unknown space {key!r}: choose one of {', '.join(list_spaces())} or give a path to a JSON file")


@dataclass(frozen=True)
class NetworkSize:
    """The paper network (MOST-NET+ / MOST-NET++, `supernet.paper`) with every width divided by `divisor`.

    Only widths are divided, never the structure (depths, layer counts, strides), so every preset keeps the
    paper network's proportions: each head's share of parameters and FLOPs, and therefore what pruning saves.
    """

    name: str
    divisor: int  # every channel count of the paper network is divided by this
    encoder_blocks: int = 5  # residual blocks per encoder scale (the papers' five)
    decoder_blocks: int = 2  # residual blocks per decoder scale (the papers' two)

    def channels(self, paper: int) -> int:
        """A width of the paper network, divided for this preset (at least 1)."""
        return max(1, paper // self.divisor)


_SIZES = {
    "tiny": NetworkSize("tiny", divisor=16),   # tests
    "cpu": NetworkSize("cpu", divisor=8),      # quick runs on a 2-core CPU
    "paper": NetworkSize("paper", divisor=1),  # MOST-NET+ / MOST-NET++ (32/64/128 channels)
}


def list_sizes() -> list[str]:
    return list(_SIZES)


def get_size(name: str) -> NetworkSize:
    if name not in _SIZES:
        raise SpaceError(f"unknown network size {name!r}: choose one of {', '.join(_SIZES)}")
    return _SIZES[name]
