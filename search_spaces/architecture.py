"""A derived architecture: a search space plus the set of heads it keeps."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .space import SearchSpace, SpaceError, load_json_as, read_json


@dataclass(frozen=True)
class Architecture:
    space: SearchSpace
    heads: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = set(self.heads) - set(self.space.heads)
        if unknown:
            raise SpaceError(f"architecture keeps heads {sorted(unknown)} that space {self.space.name!r} does not have")
        missing = set(self.space.fixed) - set(self.heads)
        if missing:
            raise SpaceError(f"architecture drops fixed heads {sorted(missing)} of space {self.space.name!r}")
        object.__setattr__(self, "heads", tuple(h for h in self.space.heads if h in set(self.heads)))

    @classmethod
    def full(cls, space: SearchSpace) -> "Architecture":
        """Every candidate head kept: the supernet."""
        return cls(space, space.heads)

    @property
    def searchable_kept(self) -> tuple[str, ...]:
        """The searchable heads it keeps (the fixed ones are in every architecture)."""
        return tuple(h for h in self.heads if h not in self.space.fixed)

    @property
    def dropped(self) -> tuple[str, ...]:
        return tuple(h for h in self.space.heads if h not in self.heads)

    @property
    def id(self) -> str:
        canonical = json.dumps({"space": self.space.to_dict(), "heads": list(self.heads)}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "space": self.space.to_dict(), "heads": list(self.heads)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Architecture":
        if "space" not in data or "heads" not in data:
            raise SpaceError("malformed architecture: needs 'space' and 'heads'")
        arch = cls(SearchSpace.from_dict(data["space"]), tuple(data["heads"]))
        if "id" in data and data["id"] != arch.id:
            raise SpaceError(f"architecture id {data['id']!r} does not match its content ({arch.id!r})")
        return arch

    @classmethod
    def load(cls, path: str | Path) -> "Architecture":
        return load_json_as(path, cls.from_dict)


def is_architecture_file(path: str | Path) -> bool:
    """Whether `path` is an architecture.json (rather than a space's JSON or a preset name)."""
    return str(path).endswith(".json") and Path(path).is_file() and {"space", "heads"} <= set(read_json(path))
