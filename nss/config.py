"""Run configuration: defaults ← YAML file ← command-line flags, validated in one place."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from search_spaces import get_space, list_sizes
from supernet import required_divisor

from .balancing import list_balancers
from .errors import NSSError
from .gates import RELAXATIONS


@dataclass(frozen=True)
class RunConfig:
    # what to train: a space (its supernet) or, for retraining, an architecture.json (None: the full space)
    space: str = "most_net_plus"
    architecture: str | None = None
    network: str = "auto"  # width/depth preset (search_spaces.list_sizes()); auto: "cpu" on a CPU, "paper" on a GPU
    # data
    data: str = "synthetic"  # "synthetic" (generated on the fly) or a data folder
    frame_size: str = "64x64"  # synthetic data only
    clips: int = 24  # synthetic training clips
    eval_clips: int | None = None  # synthetic validation and test clips each; None: a quarter of `clips`, >= 2
    frames: int = 8  # frames per synthetic clip
    data_seed: int | None = None  # draws the synthetic clips; None: `seed` (retraining seeds on the same clips: set it)
    batch_size: int = 4
    workers: int = 0  # data-loading processes
    # schedule; an epoch form, when set, replaces the step form
    pretrain_steps: int = 1500
    pretrain_epochs: float | None = None
    search_steps: int = 1200  # long enough that every gate ends decided on the synthetic data (runs/reference-sweep)
    search_epochs: float | None = None
    # NSS
    tau: float = 5.0
    hard: bool = False  # straight-through hard Gumbel samples instead of soft ones
    sparsity: float = 1e-4  # μ: a head stays when λ_i·(its loss gain) outweighs it
    sparsity_kind: str = "log"  # "log" (Σ log α, the dissertation's) or "l1" (Σ α)
    threshold: float = 0.5  # keep a searchable head when its on-probability ≥ threshold
    margin: float = 0.15  # a gate ending within this of the threshold is reported as undecided
    relaxation: str = "gumbel"  # how gates are sampled: nss.gates.RELAXATIONS
    bilevel: bool = False  # DARTS' first-order alternation: α on validation batches, θ on training batches
    # latency-aware search (nss.latency): a per-head cost table, and a weight on E[lat]/lat_full and/or a target
    latency_table: str | None = None
    latency_weight: float = 0.0
    latency_target: float | None = None  # ms
    latency_target_weight: float = 1.0  # λ of the target term
    # retraining
    retrain_steps: int = 1500
    retrain_epochs: float | None = None
    balancing: str = "ls"  # nss.balancing.list_balancers()
    augment: bool = True  # flips and colour jitter, labels kept consistent
    val_every: int = 250  # steps between validations (best checkpoint on the multi-task score)
    # optimisation (dissertation §6.3.2)
    # θ: Adam, cosine-annealed to lr_min. None resolves per network preset: the dissertation's 1e-4 for "paper"
    # (40 epochs of ~49K frames); 1e-3 for the small presets, whose CPU schedules are ~100× shorter.
    lr: float | None = None
    lr_min: float = 1e-6
    gate_lr: float = 1e-2
    # bookkeeping
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    conflicts_every: int = 20  # steps between gradient-conflict measurements (0: off)
    checkpoint_every: int = 50
    from_run: str | None = None  # start the search from this pretrained run

    def validate(self) -> "RunConfig":
        def bad(name: str, why: str) -> NSSError:
            return NSSError(f"--{name.replace('_', '-')}: {why}, got {getattr(self, name)!r}")

        if not (math.isfinite(self.tau) and self.tau > 0):
            raise bad("tau", "the temperature must be a finite number > 0")
        if not 0 < self.threshold < 1:
            raise bad("threshold", "must be in (0, 1)")
        if not 0 <= self.margin < 0.5:
            raise bad("margin", "must be in [0, 0.5)")
        if self.relaxation not in RELAXATIONS:
            raise bad("relaxation", f"must be one of {', '.join(RELAXATIONS)}")
        if self.hard and self.relaxation not in ("gumbel", "gdas"):
            raise bad("hard", f"only gumbel samples hard or soft (gdas always hard), not {self.relaxation}")
        for name in ("latency_weight", "latency_target_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise bad(name, "must be a finite number >= 0")
        if self.latency_target is not None and not (math.isfinite(self.latency_target) and self.latency_target > 0):
            raise bad("latency_target", "must be a finite number of milliseconds > 0")
        if (self.latency_weight > 0 or self.latency_target is not None) and not self.latency_table:
            raise NSSError("--latency-weight and --latency-target need --latency-table (from `nss profile SPACE "
                           "--per-head`)")
        if not (math.isfinite(self.sparsity) and self.sparsity >= 0):
            raise bad("sparsity", "must be a finite number >= 0")
        if self.sparsity_kind not in ("log", "l1"):
            raise bad("sparsity_kind", "must be 'log' or 'l1'")
        for name in ("lr", "lr_min", "gate_lr"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise bad(name, "must be a finite number > 0")
        for name in ("batch_size", "clips", "log_every", "checkpoint_every", "val_every", "retrain_steps"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        if self.eval_clips is not None and self.eval_clips < 1:
            raise bad("eval_clips", "must be >= 1")
        if self.data_seed is not None and self.data_seed < 0:
            raise bad("data_seed", "must be >= 0")
        if self.frames < 2:
            raise bad("frames", "a clip needs at least 2 frames")
        for name in ("pretrain_steps", "workers", "conflicts_every"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        if self.balancing not in list_balancers():
            raise bad("balancing", f"must be one of {', '.join(list_balancers())}")
        for name in ("pretrain_epochs", "search_epochs", "retrain_epochs"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise bad(name, "must be > 0")
        if self.search_steps < 1:
            raise bad("search_steps", "must be >= 1")
        if self.network != "auto" and self.network not in list_sizes():
            raise bad("network", f"must be auto or one of {', '.join(list_sizes())}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise bad("device", "must be auto, cpu, cuda or cuda:N")
        space = get_space(self.space)
        height, width = self.frame_height_width
        divisor = required_divisor(space.scales)
        if height % divisor or width % divisor:
            raise bad("frame_size", f"height and width must be multiples of {divisor} for {space.scales} scales")
        return self

    @property
    def frame_height_width(self) -> tuple[int, int]:
        try:
            return parse_frame_size(self.frame_size)
        except NSSError as err:
            raise NSSError(f"--frame-size: {err}") from None

    @property
    def synthetic_seed(self) -> int:
        """The seed the synthetic clips are drawn with."""
        return self.seed if self.data_seed is None else self.data_seed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS = {f.name: f for f in fields(RunConfig)}

# Which options each command takes (the CLI's flags; the sweep's grid axes).
TRAINING_OPTIONS = ("network", "data", "frame_size", "clips", "eval_clips", "frames", "data_seed", "batch_size",
                    "workers", "lr", "lr_min", "seed", "device", "log_every", "checkpoint_every", "conflicts_every")
# What only the search phase reads: searches that differ only in these can share one pretraining.
SEARCH_ONLY = ("search_steps", "search_epochs", "tau", "hard", "sparsity", "sparsity_kind", "threshold", "margin",
               "relaxation", "bilevel", "latency_table", "latency_weight", "latency_target", "latency_target_weight",
               "gate_lr")
RETRAIN_ONLY = ("retrain_steps", "retrain_epochs", "balancing", "augment", "val_every")
OPTIONS_OF = {
    "pretrain": ("space", "pretrain_steps", "pretrain_epochs") + TRAINING_OPTIONS,
    "search": ("space", "pretrain_steps", "pretrain_epochs") + SEARCH_ONLY + ("from_run",) + TRAINING_OPTIONS,
    "retrain": RETRAIN_ONLY + TRAINING_OPTIONS,
}


def parse_frame_size(text: str) -> tuple[int, int]:
    """"HxW" → (H, W), positive integers."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise NSSError(f"expected HxW such as 64x64, got {text!r}") from None
    if h < 1 or w < 1:
        raise NSSError(f"sides must be positive, got {text!r}")
    return h, w


def coerce(name: str, value: Any) -> Any:
    """A value from YAML or the command line converted to the field's type, or a one-line error."""
    # Annotations are strings here (postponed evaluation): "float | None" → float.
    kind = {"int": int, "float": float, "str": str, "bool": bool}[FIELDS[name].type.split(" |")[0]]
    if value is None:
        return None
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        expected = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[kind]
        raise NSSError(f"{name}: expected {expected}, got {value!r}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NSSError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise NSSError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    data = data or {}
    if not isinstance(data, dict):
        raise NSSError(f"{path}: expected a mapping of option: value")
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            raise NSSError(f"{path}: unknown option {key!r} (known: {', '.join(FIELDS)})")
        try:
            values[name] = coerce(name, value)
        except NSSError as err:
            raise NSSError(f"{path}: {err}") from None
    return values


def resolve_config(file: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Defaults ← `file` (YAML) ← `overrides` (None means "not given"); validated."""
    values = load_config_file(file) if file else {}
    values.update({k: coerce(k, v) for k, v in overrides.items() if v is not None})
    return replace(RunConfig(), **values).validate()


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    return replace(RunConfig(), **{k: coerce(k, v) for k, v in data.items() if k in FIELDS})
