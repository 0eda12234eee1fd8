"""Where work runs: the torch device of a run or a backend, the size preset `auto` stands for there, and how many
CPU threads torch uses, measured against what other processes leave free."""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Iterator

import torch

from .config import RunConfig, device_name
from .errors import NSSError

log = logging.getLogger("nss")


def resolve_device(name: str) -> torch.device:
    why = device_name(name)
    if why:
        raise NSSError(f"--device: {why}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NSSError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    return torch.device(name)


def backend_device(backend: str, device: str = "auto") -> torch.device:
    """The device a backend runs on: TensorRT on CUDA, ONNX Runtime (as used here) on the CPU, torch on `device`."""
    return resolve_device({"tensorrt": "cuda", "onnxruntime": "cpu"}.get(backend, device))


def network_size(name: str, device: torch.device) -> str:
    """A width/depth preset name; "auto" is the CPU-sized network on a CPU and the paper's on a GPU."""
    return name if name != "auto" else ("cpu" if device.type == "cpu" else "paper")


def size_of(config: RunConfig) -> str:
    """The size preset a configuration trains (auto resolved for its device)."""
    return network_size(config.network, resolve_device(config.device))


def _busy_seconds() -> tuple[float, float] | None:
    """(CPU seconds every process has used, of which this process and its children), None off Linux."""
    try:
        with open("/proc/stat") as stat:
            jiffies = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0)  # idle and iowait
    own = os.times()
    return (sum(jiffies[:8]) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system + own.children_user + \
        own.children_system


class OtherLoad:
    """How many cores other processes kept busy while a block ran (`cores`; None where it cannot be told)."""

    def __init__(self) -> None:
        self.cores: float | None = None

    @contextmanager
    def measuring(self) -> Iterator["OtherLoad"]:
        before, began = _busy_seconds(), time.perf_counter()
        yield self
        after, wall = _busy_seconds(), time.perf_counter() - began
        if before is not None and after is not None and wall > 0:
            self.cores = max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / wall)



def busy_note(cores: float | None, what: str) -> str | None:
    """A line saying the machine was busy while `what` was timed, when other processes took half a core or more."""
    if cores is None or cores < 0.5:
        return None
    return (f"{what}: other processes kept {cores:.1f} of {os.cpu_count()} cores busy while it was timed; its "
            "latencies are slower than on a quiet machine")


def other_load(seconds: float = 0.1) -> float | None:
    """Cores other processes keep busy now, over a short window."""
    load = OtherLoad()
    with load.measuring():
        time.sleep(seconds)
    return load.cores


def choose_threads(requested: int | None, *, timing: bool = False) -> int:
    """How many CPU threads torch is to use: `requested`, else as many as it uses now (its default,
    OMP_NUM_THREADS, or what the caller set). For timing (`timing`), where threads competing with other processes
    for the cores make a figure meaningless, the default is the cores left idle (at least one); training keeps its
    threads, whose numbers do not depend on what else runs."""
    threads = torch.get_num_threads() if requested is None else requested
    if requested is None:
        busy = other_load()
        idle = max(1, round((os.cpu_count() or 1) - busy)) if busy is not None else threads
        if timing and idle < threads:
            log.warning("note: other processes keep %.1f cores busy: timing with %d torch thread(s) instead of %d "
                        "(--threads sets it)", busy, idle, threads)
            threads = idle
        elif idle < threads:
            log.info("note: other processes keep %.1f cores busy; training with %d torch threads competes with "
                     "them (--threads sets how many)", busy, threads)
    return threads


@contextmanager
def using_threads(threads: int) -> Iterator[int]:
    """torch on `threads` CPU threads for the length of the block, then as before."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
