"""Run configuration: every option of a run declared once, on its `RunConfig` field, with what the command line,
config files, sweeps, tuning and run folders need to know of it; defaults ← YAML file ← flags, validated here.

This module imports no torch: the command line builds its parsers from it and answers `--help` at once.
"""
from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from search_spaces import SearchSpace, get_space, list_sizes, list_spaces

from .data.synthetic import SCENES
from .errors import NSSError

# Option groups: the sections of a command's --help, and which training commands offer which (COMMAND_GROUPS).
# TARGET has no flag: `nss retrain` takes its architecture as an argument.
TARGET, SPACE, PRETRAIN, SEARCH, RETRAIN, DATA, TRAINING = ("target", "space", "pretrain", "search", "retrain", "data",
                                                            "training")
GROUP_TITLES = {SPACE: "what to train", PRETRAIN: "pretraining", SEARCH: "search", RETRAIN: "retraining",
                DATA: "data", TRAINING: "optimisation and bookkeeping"}
COMMAND_GROUPS = {"pretrain": (SPACE, PRETRAIN, DATA, TRAINING), "search": (SPACE, PRETRAIN, SEARCH, DATA, TRAINING),
                  "retrain": (RETRAIN, DATA, TRAINING)}
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "fp64")
COMPILE_BACKENDS = ("off", "inductor", "aot_eager", "eager")  # torch.compile's own; "eager" traces without compiling
MAX_ENUMERATED_HEADS = 10  # --select oneshot measures 2^heads sub-networks on the validation split
MAX_FRAME_SIDE = 8192  # beyond this a frame is a mistake, not a video (a single 8192² frame is 0.8 GB in float)

Check = Callable[[Any], "str | None"]  # why a value is refused (a phrase), None when it is fine


def option(default: Any, help: str, group: str, *, flags: tuple[str, ...] = (), metavar: str | None = None,
           short: str | None = None, path: bool = False, inherited: bool = False, trial: bool = True,
           choices: tuple[str, ...] | None = None, check: Check | None = None) -> Any:
    """A RunConfig field with its option: `help` and `group`; `flags` (default --<name>; the first one is the one
    errors name, the others are aliases); `short`, its name in trial folders; `path`: a file or folder (made
    absolute where a run is recorded); `inherited`: a search started `--from` a pretraining takes it from there;
    `trial`: an experiment's trials may set it; the allowed `choices` or a `check`."""
    return field(default=default, metadata=dict(help=help, group=group, flags=flags, metavar=metavar, short=short,
                                                path=path, inherited=inherited, trial=trial, choices=choices,
                                                check=check))


# -- checks: each returns why a value is refused -------------------------------------------------------------
def at_least(low: int) -> Check:
    return lambda v: None if v >= low else f"must be >= {low}"


def finite(*, above: float | None = None, at_least: float | None = None, unit: str = "") -> Check:
    """A finite number (of `unit`) > `above`, or >= `at_least`."""
    def check(v: float) -> str | None:
        if math.isfinite(v) and (above is None or v > above) and (at_least is None or v >= at_least):
            return None
        return f"must be a finite number{unit} " + (f"> {above:g}" if above is not None else f">= {at_least:g}")
    return check


def device_name(v: str) -> str | None:
    return None if v in ("auto", "cpu", "cuda") or v.startswith("cuda:") else "must be auto, cpu, cuda or cuda:N"


@dataclass(frozen=True)
class RunConfig:
    # The order of the fields is the order of a trial folder's name parts (tau5-seed0) and of config.yaml.
    space: str = option("most_net_plus", "search space: a preset (most_net_plus, most_net_pp) or a JSON file", SPACE,
                        path=True, inherited=True)
    architecture: str | None = option(None, "the architecture.json a retraining trains (None: the full space)",
                                      TARGET, path=True, trial=False)
    from_run: str | None = option(None, "start the search from this pretrained run folder (skips pretraining)",
                                  SEARCH, flags=("--from",), metavar="RUN", path=True, trial=False)
    # schedule; an epoch form, when set, replaces the step form
    pretrain_steps: int = option(1500, "pretraining steps (all heads on)", PRETRAIN, short="psteps",
                                 check=at_least(0))
    pretrain_epochs: float | None = option(None, "pretraining length in epochs (replaces --pretrain-steps)",
                                           PRETRAIN, short="pepochs", check=finite(above=0))
    search_steps: int = option(1200, "search steps (gates and weights together)", SEARCH, short="steps",
                               check=at_least(1))
    search_epochs: float | None = option(None, "search length in epochs (replaces --search-steps)", SEARCH,
                                         short="epochs", check=finite(above=0))
    # NSS
    tau: float = option(5.0, "Gumbel-softmax temperature τ > 0", SEARCH, check=lambda v: None if math.isfinite(v)
                        and v > 0 else "the temperature must be a finite number > 0")
    hard: bool = option(False, "hard (straight-through) Gumbel samples instead of soft ones", SEARCH)
    sparsity: float = option(1e-4, "weight μ of the sparsity penalty", SEARCH, short="mu", check=finite(at_least=0))
    sparsity_kind: str = option("l1", "sparsity penalty: log (Σ log α, the dissertation's: its pull on a gate's logit "
                                "stays 1 − α as the gate closes), l1 (Σ α: pull α(1 − α), as the loss's) or skip-ce "
                                "(−Σ log(1 − α), AdaShare's: pull α, fading as the gate closes)", SEARCH, short="L0",
                                choices=("log", "l1", "skip-ce"))
    gate_warmup: int = option(0, "first search steps in which the weights learn the gated composite while the gate "
                              "logits stay put", SEARCH, short="warmup", check=at_least(0))
    select: str = option("oneshot", "how the search picks its heads: oneshot (heads dropped at random while the "
                         "supernet trains, then every sub-network's composite measured on validation, the one of "
                         "fewest heads within --min-gain of the best kept), knockout (keep a head whose refinement, "
                         "taken out of the supernet's composite, costs more than --min-gain validation Δ_MTL points) "
                         "or gates (on-probability ≥ --threshold, the dissertation's)", SEARCH,
                         choices=("gates", "knockout", "oneshot"))
    min_gain: float = option(1.0, "knockout: keep a head whose score (validation Δ_MTL points) is above this; "
                             "oneshot: keep the sub-network of fewest heads (lowest predicted latency, with a cost "
                             "table) within this many points of the best", SEARCH, short="gain",
                             check=finite(at_least=0))
    contiguous: bool = option(False, "a finer head only with the next coarser one of its task, in the composite "
                              "(its gate times the coarser one's) and in what is kept", SEARCH)
    contiguous_selection: bool = option(True, "keep a finer head only with the next coarser one of its task (what "
                                        "is kept, and the sub-networks oneshot measures; the composite stays "
                                        "per head unless --contiguous)", SEARCH,
                                        flags=("--no-contiguous-selection",))
    threshold: float = option(0.5, "keep a head when its gate's on-probability is at least this", SEARCH,
                              short="thr", check=lambda v: None if 0 < v < 1 else "must be in (0, 1)")
    margin: float = option(0.15, "report a gate ending within this of the threshold as undecided", SEARCH,
                           short="margin", check=lambda v: None if 0 <= v < 0.5 else "must be in [0, 0.5)")
    relaxation: str = option("gumbel", "gate relaxation: gumbel (NSS), softmax (DARTS), gdas, concrete (SNAS), "
                             "dirichlet (DrNAS)", SEARCH,
                             choices=("gumbel", "softmax", "gdas", "concrete", "dirichlet"))
    bilevel: bool = option(False, "alternate α steps on validation batches with θ steps on training batches "
                           "(first-order DARTS) instead of one step on both", SEARCH)
    # latency-aware search: a per-head cost table, and a weight on E[lat]/lat_full and/or a target
    latency_table: str | None = option(None, "per-head cost table (nss profile SPACE --per-head) for the latency "
                                       "terms", SEARCH, path=True)
    latency_weight: float = option(0.0, "weight β of β·E[lat]/lat_full in the objective", SEARCH,
                                   check=finite(at_least=0))
    latency_target: float | None = option(None, "pull the expected latency towards this many ms, not above (TF-NAS)",
                                          SEARCH, check=finite(above=0, unit=" of milliseconds"))
    latency_target_weight: float = option(1.0, "weight of the --latency-target term", SEARCH,
                                          check=finite(at_least=0))
    gate_lr: float = option(1e-2, "gate-logit learning rate", SEARCH, short="glr", check=finite(above=0))
    # retraining
    retrain_steps: int = option(1500, "retraining steps", RETRAIN, flags=("--retrain-steps", "--steps"),
                                check=at_least(1))
    retrain_epochs: float | None = option(None, "retraining length in epochs (replaces --retrain-steps)", RETRAIN,
                                          flags=("--retrain-epochs", "--epochs"),
                                          check=finite(above=0))
    balancing: str = option("ls", "task balancing (nss.training.balancing)", RETRAIN,
                            choices=("ls", "atb", "dwa", "rlw", "uw"))
    augment: bool = option(True, "flips and colour jitter on the training batches, labels kept consistent", RETRAIN,
                           flags=("--no-augment",))
    val_every: int = option(250, "steps between validations (best.pt keeps the best multi-task score)", RETRAIN,
                            check=at_least(1))
    # what to train it on
    network: str = option("auto", "network size preset: auto (cpu on a CPU, paper on a GPU), tiny, cpu or paper",
                          TRAINING, inherited=True, choices=("auto", *list_sizes()))
    data: str = option("synthetic", "'synthetic' (generated on the fly) or a data folder (see `nss data check`)",
                       DATA, path=True, inherited=True)
    frame_size: str | None = option(None, "synthetic frame size HxW (default 64x64; a data folder's frames are its "
                                    "own)", DATA, short="size", inherited=True)
    clips: int = option(24, "synthetic training clips", DATA, inherited=True, check=at_least(1))
    eval_clips: int | None = option(None, "synthetic validation and test clips, each (default: a quarter of --clips, "
                                    "at least 2; more measure a network with less noise)", DATA, inherited=True,
                                    metavar="CLIPS", check=at_least(1))
    scene: str = option("textured", "what the synthetic clips show: textured (fine texture, large shapes, smooth "
                        "global motion) or thin-fast (smooth texture, thin bars moving fast)", DATA, inherited=True,
                        choices=tuple(SCENES))
    frames: int = option(8, "frames per synthetic clip", DATA, inherited=True,
                         check=lambda v: None if v >= 2 else "a clip needs at least 2 frames")
    data_seed: int | None = option(None, "seed the synthetic clips are drawn with (default: --seed)", DATA,
                                   inherited=True, check=at_least(0))
    batch_size: int = option(4, "samples per step (the global batch)", DATA, short="batch", check=at_least(1))
    workers: int = option(0, "data-loading processes", DATA, trial=False, check=at_least(0))
    # optimisation (dissertation §6.3.2). θ: Adam, cosine-annealed to lr_min; None resolves per network preset:
    # the dissertation's 1e-4 for "paper" (40 epochs of ~49K frames), 1e-3 for the small presets, whose CPU
    # schedules are ~100× shorter.
    lr: float | None = option(None, "weight learning rate (default: 1e-4 for the paper network, 1e-3 for the small "
                              "ones)", TRAINING, check=finite(above=0))
    lr_min: float = option(1e-6, "final weight learning rate of the cosine schedule", TRAINING, check=finite(above=0))
    # bookkeeping
    seed: int = option(0, "random seed (network, data order, Gumbel noise; the synthetic clips unless --data-seed)",
                       TRAINING)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", TRAINING, check=device_name)
    precision: str = option("auto", "training arithmetic: fp32, bf16 or fp16 (autocast; fp16 with a gradient scaler; "
                            "warps, homography geometry and the losses stay fp32); auto: bf16 on a GPU that has it, "
                            "fp32 elsewhere; fp64: double precision throughout, for checking numerics (such as that "
                            "N ranks compute what one process does), slow", TRAINING, short="prec",
                            choices=PRECISIONS)
    compile: str = option("off", "compile the training forward with torch.compile and this backend (off: eager; the "
                          "first steps then take the compile time)", TRAINING, trial=False, choices=COMPILE_BACKENDS)
    threads: int | None = option(None, "CPU threads for torch (default: torch's own; a timing takes the cores other "
                                 "processes leave idle)", TRAINING, trial=False, check=at_least(1))
    log_every: int = option(10, "steps between rows of metrics.csv, gates.csv and deltas.csv", TRAINING,
                            check=at_least(1))
    checkpoint_every: int = option(50, "steps between checkpoints/last.pt", TRAINING, check=at_least(1))
    conflicts_every: int = option(20, "steps between gradient-conflict measurements, conflicts.csv (0: off)",
                                  TRAINING, check=at_least(0))
    tensorboard: bool = option(False, "also log losses, λ, gates and validation metrics for TensorBoard "
                               "(RUN/tensorboard/)", TRAINING)

    def validate(self) -> "RunConfig":
        """Every option within its range, and the combinations that make sense; raises a one-line NSSError."""
        for opt in OPTIONS.values():
            value = getattr(self, opt.name)
            why = opt.problem(value)
            if why:
                raise NSSError(f"{opt.flag}: {why}, got {value!r}")
        if self.hard and self.relaxation not in ("gumbel", "gdas"):
            raise NSSError(f"--hard: only gumbel samples hard or soft (gdas always hard), not {self.relaxation}")
        if (self.latency_weight > 0 or self.latency_target is not None) and not self.latency_table:
            raise NSSError("--latency-weight and --latency-target need --latency-table (from `nss profile SPACE "
                           "--per-head`)")
        space = get_space(self.space)
        check_frame_size(space, *self.frame_height_width, "--frame-size")
        if self.select == "oneshot" and len(space.searchable) > MAX_ENUMERATED_HEADS:
            raise NSSError(f"--select oneshot: measures every sub-network, and {space.name!r} has "
                           f"{len(space.searchable)} searchable heads (2^{len(space.searchable)} sub-networks); it "
                           f"enumerates at most {MAX_ENUMERATED_HEADS} heads")
        return self

    @property
    def keeps_contiguous(self) -> bool:
        """Whether the search keeps a finer head only with its coarser one (--contiguous implies it)."""
        return self.contiguous or self.contiguous_selection

    @property
    def frame_height_width(self) -> tuple[int, int]:
        """The frame size (64x64 unless set)."""
        try:
            return parse_frame_size(self.frame_size or "64x64")
        except NSSError as err:
            raise NSSError(f"--frame-size: {err}") from None

    @property
    def synthetic_seed(self) -> int:
        """The seed the synthetic clips are drawn with."""
        return self.seed if self.data_seed is None else self.data_seed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_absolute_paths(self) -> "RunConfig":
        """Every file and folder option as an absolute path: what a run or a trial records, so that it can be
        used from anywhere."""
        return replace(self, **absolute_paths({o.name: getattr(self, o.name) for o in OPTIONS.values() if o.path}))


@dataclass(frozen=True)
class Option:
    """One RunConfig field as an option (see `option`); `kind` is its type without the None."""

    name: str
    kind: type
    optional: bool
    default: Any
    help: str
    group: str
    flags: tuple[str, ...]
    metavar: str | None
    short: str | None
    path: bool
    inherited: bool
    trial: bool
    choices: tuple[str, ...] | None
    check: Check | None

    @property
    def flag(self) -> str:
        return self.flags[0]

    def problem(self, value: Any) -> str | None:
        """Why `value` is refused, None when it is fine."""
        if value is None:
            return None if self.optional else "must be given"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        return self.check(value) if self.check else None

    def coerce(self, value: Any) -> Any:
        """A value from YAML or the command line converted to the option's type, or a one-line error."""
        if value is None:
            return None
        try:
            if (self.kind is bool) != isinstance(value, bool):  # true is no number, 1 no switch
                raise ValueError
            if self.kind is bool:
                return value
            if self.kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return self.kind(value)
        except (TypeError, ValueError):
            expected = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[self.kind]
            raise NSSError(f"{self.name}: expected {expected}, got {value!r}") from None


def _options() -> dict[str, Option]:
    hints = typing.get_type_hints(RunConfig)
    out = {}
    for f in fields(RunConfig):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        kind = args[0] if args else hints[f.name]
        meta = dict(f.metadata)
        meta["flags"] = meta["flags"] or ("--" + f.name.replace("_", "-"),)
        out[f.name] = Option(f.name, kind, len(args) > 0, f.default, **meta)
    return out


OPTIONS = _options()


def options_of(command: str) -> tuple[str, ...]:
    """The options a training command takes, in field order."""
    return tuple(name for name, o in OPTIONS.items() if o.group in COMMAND_GROUPS[command])


def sweepable() -> tuple[str, ...]:
    """The options a sweep's grid may vary: what `nss search` takes and a trial may set (not --workers, which
    means concurrent trials in an experiment, nor --from: a sweep makes its own pretrainings)."""
    return tuple(name for name in options_of("search") if OPTIONS[name].trial)


def trial_options(*groups: str) -> tuple[str, ...]:
    """The options of `groups` an experiment's trials may set (a sweep's grid, a tuned parameter)."""
    return tuple(name for name, o in OPTIONS.items() if o.group in groups and o.trial)


def inherited_options() -> tuple[str, ...]:
    """What a search started `--from` a pretrained run takes from it: the network and the data must match."""
    return tuple(name for name, o in OPTIONS.items() if o.inherited)


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """The path options among `values` made absolute (a preset space name or "synthetic" stays as it is)."""
    out = dict(values)
    for key, value in values.items():
        if key in OPTIONS and OPTIONS[key].path and value and value not in ("synthetic", *list_spaces()) \
                and (Path(value).exists() or str(value).endswith(".json")):
            out[key] = str(Path(value).absolute())
    return out


def parse_frame_size(text: str) -> tuple[int, int]:
    """"HxW" → (H, W), positive integers."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise NSSError(f"expected HxW such as 64x64, got {text!r}") from None
    if h < 1 or w < 1:
        raise NSSError(f"sides must be positive, got {text!r}")
    if max(h, w) > MAX_FRAME_SIDE:
        raise NSSError(f"sides must be at most {MAX_FRAME_SIDE}, got {text!r}")
    return h, w


def check_frame_size(space: SearchSpace, height: int, width: int, what: str) -> None:
    """Frames a network of `space` can take: both sides multiples of its divisor. `what` starts the message."""
    divisor = space.frame_divisor
    if height % divisor or width % divisor:
        raise NSSError(f"{what} {height}x{width}; with {space.scales} scales both sides must be multiples of "
                       f"{divisor}")


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping; every failure is one line naming the file (`what` it should hold)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NSSError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise NSSError(f"{path}: cannot be read ({err})") from None
    except yaml.YAMLError as err:
        raise NSSError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise NSSError(f"{path}: expected a mapping of option: value")
    return data


def load_config_file(path: str | Path, taken: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Options from a YAML file, keys as the flags (`-` or `_`); a run's own config.yaml is one (its `command`
    says what made it and is not an option). `taken`: the options the command takes; the file may hold others
    (a run's config.yaml holds every option) only at their defaults, since the command would not read them."""
    path, values = Path(path), {}
    for key, value in read_yaml_mapping(path, "config file").items():
        name = str(key).replace("-", "_")
        if name == "command":
            continue
        if name not in OPTIONS:
            raise NSSError(f"{path}: unknown option {key!r} (known: {', '.join(OPTIONS)})")
        try:
            values[name] = OPTIONS[name].coerce(value)
        except NSSError as err:
            raise NSSError(f"{path}: {err}") from None
        if taken is not None and name not in taken and values[name] != OPTIONS[name].default:
            raise NSSError(f"{path}: {name} is {value!r}, but this command takes no {OPTIONS[name].flag} (it would "
                           "be ignored); leave it out")
    return {name: value for name, value in values.items() if taken is None or name in taken}


def resolve_config(file: str | Path | None = None, taken: tuple[str, ...] | None = None,
                   **overrides: Any) -> RunConfig:
    """Defaults ← `file` (YAML; `taken` as load_config_file's) ← `overrides` (None means "not given"); validated."""
    values = load_config_file(file, taken) if file else {}
    values.update({k: OPTIONS[k].coerce(v) for k, v in overrides.items() if v is not None})
    return replace(RunConfig(), **values).validate()


# What a run recorded before an option existed did: a run's config.yaml holds every option of its day, so one it
# lacks is one it predates, and the default of today would not be what it ran with.
PREDATES = {"min_gain": 0.0, "contiguous_selection": False}


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """A run's recorded configuration (config.yaml's mapping)."""
    values = {k: OPTIONS[k].coerce(v) for k, v in data.items() if k in OPTIONS}
    return replace(RunConfig(), **{**{k: v for k, v in PREDATES.items() if k not in data}, **values})
