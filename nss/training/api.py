"""`pretrain`, `search` and `retrain`: each a list of phases run by the trainer into a run folder.

To add a phase, write its class (nss.training.phases) and add it to its command's list here."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ..config import OPTIONS, RunConfig, inherited_options
from ..device import resolve_device, using_threads
from ..errors import NonFiniteLossError, NSSError
from ..io import refuse_existing
from ..model.forward import resolve_precision
from ..runs.folder import ReplicaFolder, RunFolder
from .distributed import World, require_even_split
from .phases import Phase, PretrainPhase, RetrainPhase, SearchPhase, SearchResult
from .session import Session, check_inputs
from .tensorboard import require_tensorboard
from .trainer import Trainer

# The phases of each training command, in order; a search started `--from` a pretraining skips pretraining.
COMMANDS: dict[str, Callable[[Session], list[Phase]]] = {
    "pretrain": lambda s: [PretrainPhase(s)],
    "search": lambda s: ([] if s.config.from_run else [PretrainPhase(s)]) + [SearchPhase(s)],
    "retrain": lambda s: [RetrainPhase(s)],
}


def default_run_dir(command: str, session: Session, phases: list[Phase]) -> Path:
    """runs/<command>-<what it trains><phase tags>-seed<seed>-<time>, e.g. runs/search-most_net_plus-tau5-seed0-…"""
    c = session.config
    what = session.network.architecture.id if c.architecture else session.space.name
    tags = "".join(p.folder_tag() for p in phases)
    return Path("runs") / f"{command}-{what}{tags}-seed{c.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def resumed_run(out: str | Path | None) -> RunFolder:
    """The run folder `--resume` continues."""
    if out is None:
        raise NSSError("--resume needs --out RUN_FOLDER, the run to continue")
    return RunFolder(out).require_existing()


def open_run(command: str, config: RunConfig | None, out: str | Path | None, force: bool,
             resume: bool) -> tuple[Trainer, list[Phase], dict | None]:
    """Check everything and build the phases, then create (or reopen) the run folder: a bad input never leaves a
    folder behind. On several ranks (torchrun, `--nproc`) each builds its own, and rank 0 alone writes the folder."""
    world = World.from_environment()
    if resume:
        if config is not None:
            raise NSSError("a resumed run keeps its saved configuration: give only --out with --resume")
        run = resumed_run(out)
        made_by, config = run.config()
        if made_by != command:
            raise NSSError(f"{run.path}: made by `nss {made_by}`, not `nss {command}`")
        state = run.load_checkpoint()
        session = Session.open(config, world)
        phases = COMMANDS[command](session)
        if not world.primary:
            run = ReplicaFolder(run.path)
    else:
        config = (config or RunConfig()).validate()
        source = None
        if config.from_run:  # start from a pretraining's weights, on its network and data
            source = RunFolder(config.from_run).require_existing()
            inherited = source.config()[1]
            for name in inherited_options():  # a value given (in a file, say) must be the pretraining's
                given, theirs = getattr(config, name), getattr(inherited, name)
                if given not in (OPTIONS[name].default, theirs):
                    raise NSSError(f"{OPTIONS[name].flag} {given}: the pretrained run given with --from was made "
                                   f"with {theirs}; leave it out")
            config = replace(config, **{k: getattr(inherited, k) for k in inherited_options()}).validate()
        session = Session.open(config, world)
        phases = COMMANDS[command](session)
        if config.tensorboard:
            require_tensorboard()
        if source is not None:
            source.load_weights(RunFolder.PRETRAINED, session.network)

        def create() -> str:
            made = RunFolder(out or default_run_dir(command, session, phases)).create(force)
            made.write_config(command, session.config)
            made.write_json(RunFolder.SPACE, session.space.to_dict())
            for phase in phases:
                phase.prepare(made)
            return str(made.path)
        path = world.agree(create)  # made by rank 0; the others learn its name, or its error
        run = RunFolder(path) if world.primary else ReplicaFolder(path)
        state = None
    return Trainer(session, run), phases, state


def _train(command: str, config: RunConfig | None, out: str | Path | None, force: bool, resume: bool,
           progress: bool) -> tuple[Path, list[Phase]]:
    trainer, phases, state = open_run(command, config, out, force, resume)
    trainer.progress = progress
    try:
        with using_threads(trainer.config.threads):
            trainer.run_phases(phases, state)
    except NonFiniteLossError:
        raise  # what the run had learnt until then is worth keeping
    except Exception:
        if state is None and trainer.world.primary and trainer.run.never_started():  # nothing worth keeping
            shutil.rmtree(trainer.run.path, ignore_errors=True)
        raise
    finally:
        trainer.world.close()
    return trainer.run.path, phases


def check_parallel_run(command: str, config: RunConfig | None, nproc: int, out: str | Path | None, force: bool,
                       resume: bool) -> int:
    """What `nproc` local ranks of a run would refuse, checked before any of them starts: the configuration, the
    devices (a GPU per rank; on a CPU, a core per rank), the precision, how the batch splits, the data and the run
    folder. Returns the CPU threads each rank gets."""
    if resume:
        config = resumed_run(out).config()[1]
    config = (config or RunConfig()).validate()
    device = resolve_device(config.device)
    available = torch.cuda.device_count() if device.type == "cuda" else (os.cpu_count() or 1)
    if nproc > available:
        what = f"{available} GPU(s)" if device.type == "cuda" else f"{available} CPU core(s)"
        raise NSSError(f"--nproc {nproc}: this machine has {what} for --device {config.device}; start at most "
                       f"{available} processes here (torchrun spreads a run over several machines)")
    resolve_precision(config.precision, device)
    require_even_split(config.batch_size, nproc, f"--nproc {nproc}")
    check_inputs(config)
    if not resume and out is not None and Path(out).exists():
        refuse_existing(Path(out), force, "run folder", ", or --resume to continue it")
    if config.threads is not None:
        return config.threads
    return max(1, available // nproc) if device.type == "cpu" else 1


def pretrain(config: RunConfig | None = None, *, out: str | Path | None = None, force: bool = False,
             resume: bool = False, progress: bool = True) -> Path:
    """Phase 1 alone: train the supernet with every head on. Returns the run folder."""
    return _train("pretrain", config, out, force, resume, progress)[0]


def search(config: RunConfig | None = None, *, out: str | Path | None = None, force: bool = False,
           resume: bool = False, progress: bool = True) -> SearchResult:
    """Neural Scale Search: pretrain (unless `config.from_run`), search the gates, derive the architecture."""
    return next(p for p in reversed(_train("search", config, out, force, resume, progress)[1])
                if isinstance(p, SearchPhase)).result


def retrain(config: RunConfig | None = None, *, out: str | Path | None = None, force: bool = False,
            resume: bool = False, progress: bool = True) -> Path:
    """Train `config.architecture` (or the full space) from scratch with task balancing `config.balancing`,
    validating every `config.val_every` steps; `checkpoints/best.pt` holds the best multi-task score."""
    return _train("retrain", config, out, force, resume, progress)[0]
