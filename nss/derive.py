"""Derivation: the architecture whose gates are on, and how it is shown and saved."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from search_spaces import Architecture, SearchSpace, head_name

from .errors import NSSError
from .io import atomic_write_text, refuse_existing
from .runfolder import RunFolder


def derive_architecture(space: SearchSpace, probabilities: dict[str, float], threshold: float = 0.5) -> Architecture:
    """Keep every fixed head and every searchable head whose on-probability is ≥ threshold."""
    kept = [h for h in space.heads if h in space.fixed or probabilities[h] >= threshold]
    return Architecture(space, tuple(kept))


def undecided_heads(probabilities: dict[str, float], threshold: float, margin: float) -> list[str]:
    """Heads whose on-probability ended within `margin` of the threshold: kept or dropped by a hair."""
    return [h for h, p in probabilities.items() if abs(p - threshold) < margin]


def gate_probabilities(run: str | Path) -> tuple[SearchSpace, dict[str, float]]:
    """The space of a search run and the on-probabilities of its gates in `checkpoints/last.pt`."""
    folder = RunFolder(run).require_existing()
    state = folder.load_checkpoint()
    if state.get("phase") != "search":
        raise NSSError(f"{folder.path}: has no searched gates (its last checkpoint is from {state.get('phase')!r})")
    space = SearchSpace.load(folder.path / "space.json")
    probs = torch.softmax(state["gates"]["logits"], dim=-1)[:, 0].tolist()
    return space, dict(zip(space.searchable, probs))


def derive(out: str | Path, *, run: str | Path | None = None, threshold: float = 0.5,
           space: SearchSpace | None = None, heads: tuple[str, ...] | None = None,
           force: bool = False) -> Architecture:
    """Write architecture.json from a search run's gates (`run`, `threshold`) or from a space and a list of heads
    (the fixed heads are added; dropping one is an error)."""
    if (run is None) == (space is None):
        raise NSSError("derive from either a search run or a space with --heads, not both")
    refuse_existing(Path(out), force, "architecture file")
    if run is not None:
        if not 0 < threshold < 1:
            raise NSSError(f"--threshold: must be in (0, 1), got {threshold}")
        space, probabilities = gate_probabilities(run)
        architecture = derive_architecture(space, probabilities, threshold)
        save_architecture(out, architecture, gates=probabilities, threshold=threshold, source=str(run))
    else:
        architecture = Architecture(space, tuple(heads or ()))
        save_architecture(out, architecture, source="hand-made")
    return architecture


def save_architecture(path: str | Path, architecture: Architecture, **provenance) -> None:
    """architecture.json: id, space and kept heads, plus where it came from (gates, threshold, τ …)."""
    atomic_write_text(path, json.dumps(dict(architecture.to_dict(), **provenance), indent=2) + "\n")


def architecture_table(architecture: Architecture, probabilities: dict[str, float] | None = None,
                       undecided: list[str] | tuple[str, ...] = ()) -> str:
    """Task × scale grid: kept / dropped with the final on-probability, 'fixed' for heads always kept, and
    'undecided' beside a gate that ended near the threshold."""
    space, probabilities = architecture.space, probabilities or {}
    columns = [f"scale {s}" for s in range(1, space.scales + 1)]
    rows = []
    for task in space.tasks:
        cells = []
        for s in range(1, space.scales + 1):
            head = head_name(task.name, s)
            if head not in space.heads:
                cells.append("-")
            elif head in space.fixed:
                cells.append("kept (fixed)")
            else:
                state = "kept" if head in architecture.heads else "dropped"
                if head in probabilities:
                    state += f" ({probabilities[head]:.2f}{', undecided' if head in undecided else ''})"
                cells.append(state)
        rows.append([task.name] + cells)
    header = ["task"] + columns
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
