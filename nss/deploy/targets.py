"""`nss profile`: what a target is (a run's network, an architecture, a space's supernet) and its profile or its
per-head cost table, written beside it."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from search_spaces import Architecture, get_space, is_architecture_file

from ..config import check_frame_size
from ..device import backend_device, busy_note, choose_threads, network_size, using_threads
from ..errors import NSSError
from ..io import atomic_write_text
from ..model.costs import reference_network
from ..runs.folder import RunFolder
from ..runs.trained import TrainedModel
from .cost_table import measure_cost_table
from .profile import check_backend_options, profile_network, resolve_backend

log = logging.getLogger("nss")


def profile_target(target: str | Path, *, backend: str = "auto", fp16: bool = False, device: str = "auto",
                   size: tuple[int, int] | None = None, network: str = "auto", iters: int = 100, warmup: int = 10,
                   out: str | Path | None = None, per_head: bool = False,
                   threads: int | None = None, compile: str = "off") -> tuple[dict, Path, str | None]:
    """`nss profile`: TARGET is a run folder (the network it trained; a search run's derived architecture), an
    architecture.json or a space (name or JSON); `size` defaults to a run's frame size, else 256×256. Returns the
    report, where it was written (profile.json in the run folder, else in the current directory) and a fallback
    note. `compile`: torch.compile's backend for the torch backend's network ("off": eager).

    With `per_head`, the per-head cost table of the target's space (its supernet) instead (nss.deploy.cost_table),
    written to `out` (default latency_table.json beside profile.json)."""
    backend, note = resolve_backend(backend)
    torch_device = backend_device(backend, device)
    if iters < 1 or warmup < 0:
        raise NSSError(f"--iters must be >= 1 and --warmup >= 0, got {iters} and {warmup}")
    if per_head and compile != "off":
        raise NSSError(f"--compile {compile}: times one network; --per-head times dozens, each would compile anew")
    check_backend_options(backend, torch_device, fp16, compile)
    if RunFolder.is_run(target):  # a run folder: the network it trained
        if network != "auto":
            log.warning("note: --network %s: %s is profiled as the network it trained", network, target)
        model = TrainedModel.load(target).deployable()
        architecture, size_name, home = model.network.architecture, model.config.network, Path(target)
        size = size or model.config.frame_height_width
    else:
        architecture = Architecture.load(target) if is_architecture_file(target) else \
            Architecture.full(get_space(str(target)))
        size_name, home = network_size(network, torch_device), Path(".")
    size = size or (256, 256)
    check_frame_size(architecture.space, *size, "--size")
    with using_threads(choose_threads(threads, timing=True)):
        if per_head:
            report = measure_cost_table(architecture.space, size=size_name, height=size[0], width=size[1],
                                        backend=backend, device=str(torch_device), fp16=fp16, iters=iters,
                                        warmup=warmup)
            path = Path(out) if out else home / RunFolder.COST_TABLE_MEASURED
        else:
            report = profile_network(reference_network(architecture, size_name), height=size[0], width=size[1],
                                     backend=backend, device=str(torch_device), fp16=fp16, iters=iters,
                                     warmup=warmup, compile=compile)
            report["network"] = size_name
            path = Path(out) if out else home / RunFolder.PROFILE
    note = "; ".join(n for n in (note, busy_note(report["other_load_cores"], f"the profile of {target}")) if n) or None
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return report, path, note
