"""Atomic file writes and output-folder safety (never a half-written file, never an unforced overwrite)."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import NSSError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def refuse_existing(path: Path, force: bool, what: str, alternative: str = "") -> None:
    """An existing, non-empty `path` is only replaced with --force."""
    if path.exists() and not force and (not path.is_dir() or any(path.iterdir())):
        raise NSSError(f"{path}: {what} already exists (use --force to overwrite{alternative})")


def staging_prefix(path: Path) -> str:
    return f".{path.name}.staging-"


@contextmanager
def staged_directory(path: str | Path, force: bool, what: str) -> Iterator[Path]:
    """Build a folder under a temporary name and move it into place only once complete. What a killed earlier
    attempt left under such a name is removed first."""
    path = Path(path)
    refuse_existing(path, force, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    for left in path.parent.glob(staging_prefix(path) + "*"):
        shutil.rmtree(left, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(path), dir=path.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(staging, path)
