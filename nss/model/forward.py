"""How a network's forward is run: compiled (`--compile`) and in mixed precision (`--precision`; fp64 keeps
everything in double precision, for checking numerics).

Under bf16 or fp16 the network runs in autocast and its outputs come back in fp32, so that the upsampling to full
resolution, the composites and the losses are fp32; the geometry inside the network (warps, homography corners)
leaves autocast by itself (supernet.geometry). fp16 needs a gradient scaler (the trainer's) and a GPU."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..errors import NSSError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}
Forward = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]  # (previous, current) → outputs


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto`: bf16 on a GPU that has it, fp32 elsewhere; a precision the device cannot train in is refused."""
    bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "auto":
        return "bf16" if bf16_gpu else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise NSSError(f"--precision fp16: needs a CUDA GPU (fp16 autocast with a gradient scaler), this run is on "
                       f"{device}; use --precision bf16 or fp32 there")
    if name == "bf16" and device.type == "cuda" and not bf16_gpu:
        raise NSSError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp16 or fp32")
    return name


def parameter_dtype(precision: str) -> torch.dtype:
    """What the weights are kept in: float64 for fp64, float32 otherwise (autocast computes in bf16/fp16)."""
    return torch.float64 if precision == "fp64" else torch.float32


def compiled(function: Callable, backend: str) -> Callable:
    """`function` (a network or one of its methods), compiled by torch.compile with `backend` ("off": as it is).
    Compiling happens at the first call."""
    if backend == "off":
        return function
    if backend not in torch._dynamo.list_backends(exclude_tags=()):
        raise NSSError(f"--compile {backend}: not a torch.compile backend of torch {torch.__version__} (it has "
                       f"{', '.join(torch._dynamo.list_backends())})")
    return torch.compile(function, backend=backend)


class Autocast:
    """A forward under autocast in `precision`, its outputs back in fp32."""

    def __init__(self, forward: Forward, precision: str, device: torch.device):
        self.forward, self.dtype, self.device_type = forward, DTYPES[precision], device.type

    def __call__(self, previous: torch.Tensor, current: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device_type, dtype=self.dtype):
            outputs = self.forward(previous, current)
        return {head: value.float() for head, value in outputs.items()}


def training_forward(network: nn.Module, precision: str, device: torch.device, backend: str = "off") -> Forward:
    """What a training step calls: `network` compiled with `backend`, under autocast unless fp32."""
    if backend != "off":
        # the conflict measurement takes one backward per task through the same graph (retain_graph), which a
        # compiled backward that reuses ("donates") its saved buffers refuses
        import torch._functorch.config as functorch_config
        functorch_config.donated_buffer = False
    forward = compiled(network, backend)
    return forward if precision in ("fp32", "fp64") else Autocast(forward, precision, device)
