"""Tasks and search spaces as frozen plain data (no torch), with a JSON round-trip."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class SpaceError(ValueError):
    """A search space, task or architecture description that cannot be used."""


# What a task predicts decides its output shape, its upsampling operator and its losses.
TASK_KINDS = ("image", "mask", "flow", "homography")
MOTION_KINDS = ("flow", "homography")
LOSSES = ("charbonnier", "bce", "epe", "corner")
DIRECTIONS = ("higher", "lower")


def head_name(task: str, scale: int) -> str:
    return f"{task}@{scale}"


def parse_head(head: str) -> tuple[str, int]:
    task, sep, scale = head.partition("@")
    if not sep or not task or not scale.isdigit():
        raise SpaceError(f"head {head!r} is not of the form 'task@scale' (e.g. 'flow@2')")
    return task, int(scale)


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str  # "higher" or "lower" is better

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise SpaceError(f"metric {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    loss: str
    weight: float  # λ_i, the linear-scalarization weight
    metrics: tuple[Metric, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or "@" in self.name:
            raise SpaceError(f"task name {self.name!r} must be non-empty and must not contain '@'")
        if self.kind not in TASK_KINDS:
            raise SpaceError(f"task {self.name!r}: kind must be one of {TASK_KINDS}, got {self.kind!r}")
        if self.loss not in LOSSES:
            raise SpaceError(f"task {self.name!r}: loss must be one of {LOSSES}, got {self.loss!r}")
        if not self.weight > 0:
            raise SpaceError(f"task {self.name!r}: weight must be > 0, got {self.weight!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "loss": self.loss, "weight": self.weight,
                "metrics": [{"name": m.name, "direction": m.direction} for m in self.metrics]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskSpec":
        metrics = tuple(Metric(m["name"], m["direction"]) for m in data.get("metrics", ()))
        return cls(data["name"], data["kind"], data["loss"], float(data["weight"]), metrics)


@dataclass(frozen=True)
class SearchSpace:
    """Tasks × scales; `heads` are the candidate `task@scale` outputs, `fixed` those always kept.

    Scale 1 is full resolution, scale `scales` the coarsest. The coarsest candidate head of every task must be
    fixed: it is the baseline that the finer heads refine (ARCHITECTURE.md, "The NSS objective").
    """

    name: str
    scales: int
    tasks: tuple[TaskSpec, ...]
    heads: tuple[str, ...]
    fixed: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.scales < 1:
            raise SpaceError(f"space {self.name!r}: scales must be >= 1, got {self.scales}")
        names = [t.name for t in self.tasks]
        if not names or len(set(names)) != len(names):
            raise SpaceError(f"space {self.name!r}: task names must be present and unique, got {names}")
        if sum(t.kind in MOTION_KINDS for t in self.tasks) > 1:
            raise SpaceError(f"space {self.name!r}: at most one motion task (flow or homography) is supported")
        for head in self.heads + self.fixed:
            task, scale = parse_head(head)
            if task not in names:
                raise SpaceError(f"space {self.name!r}: head {head!r} names unknown task {task!r}")
            if not 1 <= scale <= self.scales:
                raise SpaceError(f"space {self.name!r}: head {head!r} has scale outside 1..{self.scales}")
        if len(set(self.heads)) != len(self.heads):
            raise SpaceError(f"space {self.name!r}: duplicate heads")
        if not set(self.fixed) <= set(self.heads):
            raise SpaceError(f"space {self.name!r}: fixed heads {sorted(set(self.fixed) - set(self.heads))} "
                             "are not candidate heads")
        for task in names:
            scales = self.scales_of(task)
            if not scales:
                raise SpaceError(f"space {self.name!r}: task {task!r} has no head")
            if head_name(task, scales[-1]) not in self.fixed:
                raise SpaceError(f"space {self.name!r}: the coarsest head of {task!r} "
                                 f"({head_name(task, scales[-1])}) must be fixed")
        # Canonical order: task order, then scale ascending.
        order = {n: i for i, n in enumerate(names)}
        key = lambda h: (order[parse_head(h)[0]], parse_head(h)[1])  # noqa: E731
        object.__setattr__(self, "heads", tuple(sorted(self.heads, key=key)))
        object.__setattr__(self, "fixed", tuple(sorted(self.fixed, key=key)))

    # -- queries -------------------------------------------------------------------------------------------
    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise SpaceError(f"space {self.name!r} has no task {name!r}")

    def scales_of(self, task: str) -> tuple[int, ...]:
        """Candidate scales of `task`, finest first."""
        return tuple(sorted(s for t, s in map(parse_head, self.heads) if t == task))

    @property
    def searchable(self) -> tuple[str, ...]:
        return tuple(h for h in self.heads if h not in self.fixed)

    @property
    def frame_divisor(self) -> int:
        """Frame sides must be multiples of this: the coarsest flow head works at ¼ of the coarsest scale."""
        return 4 * 2 ** (self.scales - 1)

    @property
    def motion_task(self) -> TaskSpec | None:
        return next((t for t in self.tasks if t.kind in MOTION_KINDS), None)

    # -- JSON ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scales": self.scales, "tasks": [t.to_dict() for t in self.tasks],
                "heads": list(self.heads), "fixed": list(self.fixed)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchSpace":
        try:
            tasks = tuple(TaskSpec.from_dict(t) for t in data["tasks"])
            return cls(str(data["name"]), int(data["scales"]), tasks, tuple(data["heads"]),
                       tuple(data.get("fixed", ())))
        except (KeyError, TypeError) as err:
            raise SpaceError(f"malformed search space description: missing or wrong field {err}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> "SearchSpace":
        return load_json_as(path, cls.from_dict)


def read_json(path: str | Path, error: type[Exception] = SpaceError) -> dict[str, Any]:
    """A JSON object from a file; every failure is an `error` naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    return data


def load_json_as(path: str | Path, parse: Callable[[dict[str, Any]], T]) -> T:
    """`parse` applied to a JSON file, its errors prefixed with the file's path."""
    data = read_json(path)
    try:
        return parse(data)
    except SpaceError as err:
        raise SpaceError(f"{path}: {err}") from None
