"""Derivation: the architecture whose gates are on, and how it is shown and saved."""
from __future__ import annotations

import json
from pathlib import Path

from search_spaces import Architecture, SearchSpace, head_name

from ..io import atomic_write_text


def derive_architecture(space: SearchSpace, probabilities: dict[str, float], threshold: float = 0.5,
                        contiguous: bool = False) -> Architecture:
    """Keep every fixed head and every searchable head whose on-probability is ≥ threshold (`contiguous`: and whose
    next coarser head is kept)."""
    kept = [h for h in space.searchable if probabilities[h] >= threshold]
    return with_fixed_heads(space, contiguous_heads(space, kept) if contiguous else kept)


def contiguous_heads(space: SearchSpace, heads: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The searchable `heads` that have every coarser head of their task in the space kept too (fixed or listed):
    a finer head only with the next coarser one."""
    kept = set(heads) | set(space.fixed)
    out = []
    for task in space.tasks:
        for scale in reversed(space.scales_of(task.name)):  # coarse to fine: a dropped head ends the task's chain
            head = head_name(task.name, scale)
            if head not in kept:
                break
            if head not in space.fixed:
                out.append(head)
    return tuple(h for h in space.searchable if h in out)


def undecided_heads(probabilities: dict[str, float], threshold: float, margin: float) -> list[str]:
    """Heads whose on-probability ended within `margin` of the threshold: kept or dropped by a hair."""
    return [h for h, p in probabilities.items() if abs(p - threshold) < margin]


def with_fixed_heads(space: SearchSpace, heads: tuple[str, ...] | list[str]) -> Architecture:
    """The architecture keeping `heads` and, whether listed or not, the space's fixed heads."""
    return Architecture(space, tuple(dict.fromkeys(space.fixed + tuple(heads))))


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
