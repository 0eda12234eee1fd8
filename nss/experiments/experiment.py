"""An experiment folder: many trials, each one or more ordinary run folders under OUT/trials/<name>/, a manifest
that says how the trials were made, and the record each finished trial leaves, from which a killed experiment
resumes. A trial's runs go on from their own checkpoints when the trial was interrupted (`run_in`).

    OUT/<kind>.json            the manifest (sweep.json, tune.json, groundtruth.json): enough to rebuild the trials
    OUT/trials/<name>/         the trial's run folder(s)
    OUT/trials/<name>/trial.json   written once the trial has ended: status done or error, message, result
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import NSSError
from ..io import atomic_write_text, refuse_existing
from ..runs.folder import RunFolder

RECORD = "trial.json"


@dataclass(frozen=True)
class Trial:
    """One unit of work: `job` (a name in nss.experiments.runner.JOBS) run with `config` (RunConfig fields, paths
    absolute)."""

    name: str  # folder under OUT/trials/, unique in the experiment and derived from the settings
    job: str
    config: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)  # what sets this trial apart (grid values, sampled params)
    options: dict[str, Any] = field(default_factory=dict)  # the job's own options

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Trial":
        return cls(**data)


class Experiment:
    def __init__(self, path: str | Path, kind: str):
        self.path, self.kind = Path(path).absolute(), kind
        self.manifest_path = self.path / f"{kind}.json"
        self.trials = self.path / "trials"

    def refuse_existing(self, force: bool) -> None:
        """A new experiment never overwrites an old one without --force."""
        refuse_existing(self.path, force, f"{self.kind} folder", ", or --resume to continue it")

    def create(self, manifest: dict[str, Any]) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.trials.mkdir(parents=True)
        self.write_manifest(manifest)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2) + "\n")

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise NSSError(f"{self.path}: not a {self.kind} folder (no {self.manifest_path.name})") from None
        except json.JSONDecodeError as err:
            raise NSSError(f"{self.manifest_path}: not valid JSON ({err})") from None

    def trial_dir(self, name: str) -> Path:
        return self.trials / name

    def record(self, name: str) -> dict[str, Any] | None:
        """What a finished trial left (trial.json), None while it has not finished."""
        path = self.trial_dir(name) / RECORD
        return json.loads(path.read_text()) if path.is_file() else None

    def finished(self) -> list[dict[str, Any]]:
        """The records of the trials that ended done, in the order of their names (`name`: the trial's folder)."""
        records = (dict(json.loads(path.read_text()), name=path.parent.name)
                   for path in sorted(self.trials.glob(f"*/{RECORD}")))
        return [record for record in records if record["status"] == "done"]

    def write_record(self, name: str, record: dict[str, Any]) -> None:
        atomic_write_text(self.trial_dir(name) / RECORD, json.dumps(record, indent=2, default=str) + "\n")

    def write_error(self, trial: "Trial", message: str) -> dict[str, Any]:
        """The record of a trial that ended without running its job to the end."""
        record = {"name": trial.name, "job": trial.job, "settings": trial.settings, "status": "error",
                  "message": message, "result": {}, "wall_time_s": 0.0}
        self.trial_dir(trial.name).mkdir(parents=True, exist_ok=True)
        self.write_record(trial.name, record)
        return record


def is_experiment(path: str | Path) -> str | None:
    """The kind of experiment folder `path` is (sweep, tune, groundtruth), None if it is none."""
    for kind in ("sweep", "tune", "groundtruth"):
        if (Path(path) / f"{kind}.json").is_file():
            return kind
    return None


def run_in(folder: Path, command: Callable, config: Any) -> Any:
    """Run a training command (nss.pretrain, search, retrain) into a trial's run folder, continuing it where a
    checkpoint is there."""
    if (RunFolder(folder).checkpoints / RunFolder.LAST).is_file():
        return command(out=folder, resume=True, progress=False)
    return command(config, out=folder, force=True, progress=False)  # force: a folder killed before its first checkpoint
