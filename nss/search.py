"""The public entry points `pretrain` and `search` (the CLI's `nss pretrain` and `nss search`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from search_spaces import Architecture, get_space

from .config import RunConfig, config_from_dict
from .derive import architecture_table, derive_architecture, save_architecture
from .errors import NSSError
from .runfolder import PHASES, RunFolder
from .train import Session, Trainer, require_same_network

# Options a search started with `from_run` takes from the pretrained run: the network and data must match.
INHERITED = ("space", "network", "data", "frame_size", "clips", "frames")


@dataclass(frozen=True)
class SearchResult:
    run_dir: Path
    architecture: Architecture
    probabilities: dict[str, float]

    def table(self) -> str:
        return architecture_table(self.architecture, self.probabilities)


def default_run_dir(command: str, config: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tau = f"-tau{config.tau:g}" if command == "search" else ""
    return Path("runs") / f"{command}-{get_space(config.space).name}{tau}-seed{config.seed}-{stamp}"


def _open_run(command: str, config: RunConfig | None, out: str | Path | None, force: bool,
              resume: bool) -> tuple[Trainer, tuple[str, ...], dict | None]:
    """Validate everything, then create (or reopen) the run folder: a bad input never leaves a folder behind."""
    if resume:
        if out is None:
            raise NSSError("--resume needs --out RUN_FOLDER, the run to continue")
        if config is not None:
            raise NSSError("a resumed run keeps its saved configuration: give only --out with --resume")
        run = RunFolder(out).require_existing()
        saved = run.read_yaml("config.yaml")
        if saved.get("command") != command:
            raise NSSError(f"{run.path}: made by `nss {saved.get('command')}`, not `nss {command}`")
        # the run's own space.json, so that a resumed run needs no file outside its folder
        config = replace(config_from_dict(saved), space=str(run.path / "space.json")).validate()
        state = run.load_checkpoint()
        session = Session.open(config)
    else:
        config = (config or RunConfig()).validate()
        pretrained = None
        if command == "search" and config.from_run:
            source = RunFolder(config.from_run).require_existing()
            inherited = replace(config_from_dict(source.read_yaml("config.yaml")), space=str(source.path / "space.json"))
            config = replace(config, **{k: getattr(inherited, k) for k in INHERITED}).validate()
            pretrained = source.load_checkpoint("pretrained.pt")
        session = Session.open(config)
        if pretrained is not None:
            require_same_network(pretrained, session.network, source.checkpoints / "pretrained.pt")
            session.network.load_state_dict(pretrained["network"])
        run = RunFolder(out or default_run_dir(command, config)).create(force)
        run.write_yaml("config.yaml", dict(command=command, **session.config.to_dict()))
        run.write_json("space.json", session.space.to_dict())
        state = None
    if command == "pretrain":
        phases = ("pretrain",)
    else:
        phases = ("search",) if session.config.from_run else PHASES
    return Trainer(session, run), phases, state


def pretrain(config: RunConfig | None = None, *, out: str | Path | None = None, force: bool = False,
             resume: bool = False, progress: bool = True) -> Path:
    """Phase 1 alone: train the supernet with every head on. Returns the run folder."""
    trainer, phases, state = _open_run("pretrain", config, out, force, resume)
    trainer.progress = progress
    trainer.run_phases(phases, state)
    return trainer.run.path


def search(config: RunConfig | None = None, *, out: str | Path | None = None, force: bool = False,
           resume: bool = False, progress: bool = True) -> SearchResult:
    """Neural Scale Search: pretrain (unless `config.from_run`), search the gates, derive the architecture."""
    trainer, phases, state = _open_run("search", config, out, force, resume)
    trainer.progress = progress
    trainer.run_phases(phases, state)
    session = trainer.session
    probabilities = session.gates.probabilities()
    architecture = derive_architecture(session.space, probabilities, session.config.threshold)
    save_architecture(trainer.run.path / "architecture.json", architecture, gates=probabilities,
                      threshold=session.config.threshold, tau=session.config.tau)
    return SearchResult(trainer.run.path, architecture, probabilities)
