"""The MOST network (MOST-NET+ style) built from a search space (all heads) or an Architecture (kept heads only)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from search_spaces import Architecture, NetworkSize, SearchSpace, head_name, parse_head

from .alignment import Alignment, cost_volume
from .decoder import DecoderStage
from .encoder import Encoder
from .geometry import motion_to_flow, rescale_output, warp
from .heads import DenseHead, FlowHead, HomographyHead
from .paper import DENSE_HIDDEN, HOMOGRAPHY_DROPOUT, flow_widths, homography_blocks, scale_channels


class MostNet(nn.Module):
    """Two frames in, `{"task@scale": output}` out.

    Only kept heads exist as modules, and only the decoder stages (with their alignment and fusion) from the
    coarsest scale down to the finest kept head: pruning shows up in parameters, FLOPs and latency.
    """

    def __init__(self, architecture: Architecture, size: NetworkSize):
        super().__init__()
        space = architecture.space
        self.architecture, self.size = architecture, size
        self.scales = space.scales
        self.kinds = {t.name: t.kind for t in space.tasks}
        self.motion_task = space.motion_task.name if space.motion_task else None
        self.finest = min(parse_head(h)[1] for h in architecture.heads)
        # the motion task last at every scale: the homography head reads that scale's mask and restored output
        self.task_order = sorted(self.kinds, key=lambda t: t == self.motion_task)
        channels = [size.channels(scale_channels(s)) for s in range(1, self.scales + 1)]
        decoded = range(self.scales, self.finest - 1, -1)  # coarse to fine

        self.encoder = Encoder(channels, size.encoder_blocks, [s for s in decoded if s < self.scales])
        self.alignment = nn.ModuleDict({str(s): Alignment(channels[s - 1]) for s in decoded})
        self.decoder = nn.ModuleDict({
            str(s): DecoderStage(channels[s - 1], channels[s] if s < self.scales else None, size.decoder_blocks)
            for s in decoded})
        self.heads = nn.ModuleDict({head: self._make_head(head, channels, size) for head in architecture.heads})

    def _make_head(self, head: str, channels: list[int], size: NetworkSize) -> nn.Module:
        """The head of `task@scale` with the paper network's widths divided for `size`."""
        task, scale = parse_head(head)
        kind, c = self.kinds[task], channels[scale - 1]
        refines = any(head_name(task, s) in self.architecture.heads for s in range(scale + 1, self.scales + 1))
        if kind == "flow":
            return FlowHead(c, tuple(size.channels(w) for w in flow_widths(scale, self.scales)), refines)
        if kind == "homography":
            peers = set(self.kinds.values())
            return HomographyHead(c, tuple(size.channels(w) for w in homography_blocks(scale)), refines,
                                  gated="mask" in peers, restored="image" in peers, dropout=HOMOGRAPHY_DROPOUT)
        return DenseHead(kind, c, size.channels(round(DENSE_HIDDEN * scale_channels(scale))), refines)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss can reach: encoder, alignment and decoder backbones."""
        return [p for m in (self.encoder, self.alignment, self.decoder) for p in m.parameters()]

    def encode(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Features of frames (B, 3, H, W) at every scale; cache them to stream a video frame by frame."""
        return self.encoder(frames)

    def decode(self, current: list[torch.Tensor], previous: list[torch.Tensor],
               frame: torch.Tensor) -> dict[str, torch.Tensor]:
        images = [frame]
        for _ in range(1, self.scales):
            images.append(F.avg_pool2d(images[-1], 2))
        outputs: dict[str, torch.Tensor] = {}
        latest: dict[str, tuple[int, torch.Tensor]] = {}  # task → (scale, output) of its finest output so far
        g = None
        for s in range(self.scales, self.finest - 1, -1):
            h, w = current[s - 1].shape[-2:]
            flow = None
            if self.motion_task in latest:
                coarse_scale, motion = latest[self.motion_task]
                flow = motion_to_flow(self.kinds[self.motion_task], motion, 2 ** (coarse_scale - s), h, w)
            aligned = previous[s - 1] if flow is None else warp(previous[s - 1], flow)
            g = self.decoder[str(s)](self.alignment[str(s)](current[s - 1], aligned), g)
            for task in self.task_order:
                head = head_name(task, s)
                if head not in self.heads:
                    continue
                peers = {self.kinds[t]: self._at_scale(latest, t, s) for t in latest if t != task} \
                    if task == self.motion_task else {}
                if self.kinds[task] == "flow":  # what a flow head reads besides g: the two frames compared
                    peers["cost"] = cost_volume(current[s - 1], aligned)
                coarser = self._at_scale(latest, task, s) if task in latest else None
                outputs[head] = self.heads[head](g, coarser, images[s - 1], peers)
                latest[task] = (s, outputs[head])
        return outputs

    def _at_scale(self, latest: dict[str, tuple[int, torch.Tensor]], task: str, scale: int) -> torch.Tensor:
        """`task`'s finest output so far (at `scale` or coarser) brought to `scale`."""
        coarse_scale, out = latest[task]
        return rescale_output(self.kinds[task], out, 2 ** (coarse_scale - scale))

    def forward(self, previous: torch.Tensor, current: torch.Tensor) -> dict[str, torch.Tensor]:
        """previous, current: degraded frames (B, 3, H, W) in [0, 1]; H and W divisible by 4·2^(S-1)."""
        features = self.encode(torch.cat((previous, current)))  # both frames share the encoder: one batch
        n = current.shape[0]
        return self.decode([f[n:] for f in features], [f[:n] for f in features], current)


def build_network(target: SearchSpace | Architecture, size: NetworkSize) -> MostNet:
    """The supernet of a space (every head) or the network of an Architecture (its kept heads only)."""
    architecture = target if isinstance(target, Architecture) else Architecture.full(target)
    return MostNet(architecture, size)
