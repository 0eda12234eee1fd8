"""What a training run is made of, opened once from its configuration and checked before anything is written:
the ranks it runs on, the device, the network and the forward a step calls (compiled, mixed precision), the
training data and, when a phase asks for it, the validation split."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import torch
from torch.utils.data import Dataset

from search_spaces import SearchSpace, get_size
from supernet import MostNet, build_network

from ..config import RunConfig, check_frame_size
from ..data import open_split, require_usable_folder
from ..data.folder import read_meta
from ..device import choose_threads, network_size, resolve_device
from ..errors import DataError
from ..model.forward import Forward, parameter_dtype, resolve_precision, training_forward
from ..runs.trained import trained_architecture
from ..scale_search.objective import SearchObjective
from .distributed import SINGLE, World, global_batch_norm, require_even_split


@dataclass
class Session:
    config: RunConfig  # resolved: network size, device, learning rate, threads, steps, a data folder's frame size
    space: SearchSpace
    device: torch.device
    network: MostNet
    data: Dataset
    world: World = SINGLE
    forward: Forward | None = field(default=None, repr=False)  # what a training step calls (default: the network)

    def __post_init__(self) -> None:
        if self.forward is None:
            self.forward = self.network

    @classmethod
    def open(cls, config: RunConfig, world: World = SINGLE) -> "Session":
        """`config` resolved and checked on `world`'s ranks (each on its own GPU where the run is on CUDA)."""
        device = world.device(resolve_device(config.device))
        precision = resolve_precision(config.precision, device)
        require_even_split(config.batch_size, world.size, f"the {world.size} ranks")
        size_name = network_size(config.network, device)
        architecture = trained_architecture(config)
        space = architecture.space
        data = open_split(config, "train")
        missing = [t.name for t in space.tasks if t.kind not in data.kinds]
        if missing:
            raise DataError(f"{config.data}: no labels for task(s) {missing} of space {space.name!r}")
        unlabelled = {t: why for t, why in data.unlabelled_tasks().items() if t in {task.name for task in space.tasks}}
        if unlabelled:  # a declared task with nothing to learn from: refuse, do not train it silently on nothing
            task, why = next(iter(unlabelled.items()))
            raise DataError(f"{config.data}: task {task!r} of the training split has {why}")
        frame_size = folder_frame_size(config, space) if config.data != "synthetic" else \
            "x".join(map(str, config.frame_height_width))
        config = replace(config, frame_size=frame_size)
        if len(data) < config.batch_size:
            raise DataError(f"{config.data}: {len(data)} training pairs, fewer than the batch size {config.batch_size}")
        threads = choose_threads(config.threads)
        torch.manual_seed(config.seed)  # every rank builds the same network
        network = build_network(architecture, get_size(size_name)).to(device, parameter_dtype(precision))
        network = global_batch_norm(network, world)
        per_epoch = len(data) // config.batch_size
        lr = config.lr if config.lr is not None else (1e-4 if size_name == "paper" else 1e-3)
        config = replace(config, network=size_name, device=str(device), lr=lr, threads=threads, precision=precision,
                         pretrain_steps=_steps(config.pretrain_steps, config.pretrain_epochs, per_epoch),
                         search_steps=_steps(config.search_steps, config.search_epochs, per_epoch),
                         retrain_steps=_steps(config.retrain_steps, config.retrain_epochs, per_epoch))
        world.join(device)
        return cls(config, space, device, network, data, world,
                   training_forward(network, precision, device, config.compile))

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data) // self.config.batch_size

    @property
    def dtype(self) -> torch.dtype:
        """The weights' and the batches' dtype: float64 with --precision fp64, else float32 (autocast or not)."""
        return parameter_dtype(self.config.precision)

    @cached_property
    def validation(self) -> Dataset:
        """The validation split, opened and checked by the first phase that needs it (retraining's validation,
        bi-level's gate steps): phases are made before the run folder, so a bad split is refused before any work."""
        data = open_split(self.config, "val")
        if len(data) < self.config.batch_size:
            raise DataError(f"{self.config.data}: {len(data)} validation pairs, fewer than the batch size "
                            f"{self.config.batch_size}")
        unscored = [t.name for t in self.space.tasks if t.name in data.unlabelled_tasks()]
        if unscored:  # Δ_MTL (best.pt, bi-level's α steps) would leave the task out, or compare unlike scores
            raise DataError(f"{self.config.data}: the validation split has no labels for {', '.join(unscored)}; "
                            "validation scores every task")
        return data


def folder_frame_size(config: RunConfig, space: SearchSpace) -> str:
    """A data folder's frame size, once the folder is known to be usable to the end and its frames fit `space`."""
    require_usable_folder(config.data)
    h, w = read_meta(Path(config.data))["frame_size"]
    check_frame_size(space, h, w, f"{config.data}: frames are")
    if config.frame_size is not None and config.frame_size != f"{h}x{w}":
        raise DataError(f"--frame-size {config.frame_size}: {config.data} has {h}x{w} frames (a data folder's frames "
                        "are its own size; leave --frame-size out)")
    return f"{h}x{w}"


def check_inputs(config: RunConfig) -> None:
    """What a run of `config` would refuse at its start, checked without building anything: its data folder (whole,
    its frames against the space and --frame-size) and its cost table (against the space and --latency-target)."""
    space = trained_architecture(config).space
    if config.data != "synthetic":
        folder_frame_size(config, space)
    if config.latency_table:
        SearchObjective.from_config(config, space)


def _steps(steps: int, epochs: float | None, steps_per_epoch: int) -> int:
    return steps if epochs is None else max(1, math.ceil(epochs * steps_per_epoch))
