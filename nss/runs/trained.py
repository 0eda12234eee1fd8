"""A trained run as a model: the network it trained, with its weights and a search's gates, opened from the run
folder alone (nothing of its training data); and `derive`, an architecture from a search run's gates or a list of
heads."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from search_spaces import Architecture, SearchSpace, get_space
from supernet import MostNet

from ..config import OPTIONS, RunConfig
from ..device import resolve_device
from ..errors import NSSError
from ..io import refuse_existing
from ..model.costs import reference_network
from ..scale_search.derive import derive_architecture, save_architecture, with_fixed_heads
from ..scale_search.gates import Gates
from .folder import RunFolder

log = logging.getLogger("nss")


def trained_architecture(config: RunConfig) -> Architecture:
    """The network a configuration trains: its architecture (retraining), else its space's supernet."""
    return Architecture.load(config.architecture) if config.architecture else Architecture.full(get_space(config.space))


def searched_gates(config: RunConfig, last: dict) -> Gates | None:
    """The gates of a search run as its last checkpoint holds them, with the run's own relaxation (which says what
    a logit's on-probability is); None where the run has not searched."""
    if last.get("phase") != "search":
        return None
    gates = Gates(get_space(config.space).searchable, config.relaxation)
    gates.load_state_dict(last["gates"])
    return gates


@dataclass
class TrainedModel:
    """A run's trained network (best.pt where validation chose one, else last.pt) and, for a search run, its gates."""

    folder: RunFolder
    command: str
    config: RunConfig
    network: MostNet
    checkpoint: str
    gates: Gates | None

    @classmethod
    def load(cls, run: str | Path, device: str | None = None) -> "TrainedModel":
        """Open a run on `device` (default: the run's own where it exists here, else the CPU). The weights are
        loaded with weights_only; the global RNG is left as it was."""
        folder = RunFolder(run).require_existing()
        command, config = folder.config()
        if device is None:
            device = config.device if config.device == "cpu" or torch.cuda.is_available() else "cpu"
        network = reference_network(trained_architecture(config), config.network)  # its weights are overwritten
        checkpoint = folder.trained_checkpoint()
        state = folder.load_weights(checkpoint, network)
        last = state if checkpoint == RunFolder.LAST else folder.load_checkpoint(RunFolder.LAST)
        network = network.to(resolve_device(device)).eval()
        return cls(folder, command, config, network, checkpoint, searched_gates(config, last))

    @property
    def space(self) -> SearchSpace:
        return self.network.architecture.space

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def deployable(self) -> "TrainedModel":
        """What to profile, export or run on videos: a finished search's derived architecture (architecture.json)
        with the supernet's weights for the modules it keeps, said in a note; any other run's own network."""
        path = self.folder / RunFolder.ARCHITECTURE
        if self.gates is None:
            return self
        if not path.is_file():
            log.warning("note: %s is a search run without a derived architecture yet (stopped before it ended): "
                        "using its whole supernet", self.folder.path)
            return self
        architecture = Architecture.load(path)
        log.warning("note: %s is a search run: using its derived architecture (%d of %d heads) with the supernet's "
                    "weights; `nss retrain %s` trains it", self.folder.path, len(architecture.heads),
                    len(architecture.space.heads), path)
        derived = reference_network(architecture, self.config.network)
        inherited = self.network.state_dict()
        derived.load_state_dict({name: inherited[name] for name in derived.state_dict()})
        return replace(self, network=derived.to(self.device).eval())


def derive(out: str | Path, *, run: str | Path | None = None, threshold: float = 0.5,
           space: SearchSpace | None = None, heads: tuple[str, ...] | None = None,
           force: bool = False) -> Architecture:
    """Write architecture.json from a search run's gates (`run`, `threshold`: the search's own derivation at that
    threshold) or from a space and a list of heads (the space's fixed heads are always kept)."""
    if (run is None) == (space is None):
        raise NSSError("derive from either a search run or a space with --heads, not both")
    refuse_existing(Path(out), force, "architecture file")
    if run is not None:
        why = OPTIONS["threshold"].problem(threshold)
        if why:
            raise NSSError(f"--threshold: {why}, got {threshold}")
        folder = RunFolder(run).require_existing()
        last, config = folder.load_checkpoint(), folder.config()[1]
        gates = searched_gates(config, last)
        if gates is None:
            raise NSSError(f"{folder.path}: has no searched gates (its last checkpoint is from {last.get('phase')!r})")
        if config.select != "gates":
            raise NSSError(f"{folder.path}: picked its heads by {config.select} (--select), not by a threshold on its "
                           f"gates: its architecture.json is its pick")
        probabilities = gates.probabilities()
        architecture = derive_architecture(get_space(config.space), probabilities, threshold, config.keeps_contiguous)
        save_architecture(out, architecture, gates=probabilities, threshold=threshold, contiguous=config.contiguous,
                          contiguous_selection=config.keeps_contiguous, source=str(run))
    else:
        architecture = with_fixed_heads(space, heads or ())
        save_architecture(out, architecture, source="hand-made")
    return architecture
