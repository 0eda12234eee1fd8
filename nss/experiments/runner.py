"""Trials on Ray Tune: a local Ray by default (`ray.init(address="local")`), an existing cluster with `address`,
or one after another in this process (`inline`: no Ray at all).

A trial's job is a function registered under its name (`@job("search")`) by the module of the command it belongs
to, and run by `execute`, which never raises: a failure is the trial's record. Trials come from a source (a fixed
list for sweeps, Optuna's ask for tuning) through a Ray Tune searcher, run as Ray Tune trials with their CPU/GPU
share, and report back through a callback that records them, prints a line per finished trial and moves the
overall bar. The durable record is the experiment folder, not Ray's state: a resumed experiment starts a new Ray
Tune run with the trials that have no record yet, and each of those continues from its own checkpoints.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from tqdm import tqdm

from search_spaces import SpaceError

from ..device import using_threads
from ..errors import NSSError
from .experiment import Experiment, Trial

Job = Callable[[Trial, Path], dict[str, Any]]  # (trial, its folder) → the result its record keeps
JOBS: dict[str, Job] = {}


def job(name: str) -> Callable[[Job], Job]:
    """Register a trial's job under `name` (what Trial.job says)."""
    def register(function: Job) -> Job:
        JOBS[name] = function
        return function
    return register


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(err, (NSSError, SpaceError)) else f"{type(err).__name__}: {message}"


def execute(trial: Trial, experiment: Experiment, threads: int | None = None) -> dict[str, Any]:
    """Run a trial (its runs with `threads` torch threads) and write its record (trial.json). Never raises: a
    failure is a record with status "error", its one-line message, and the traceback in error.txt beside it."""
    folder = experiment.trial_dir(trial.name)
    folder.mkdir(parents=True, exist_ok=True)
    started_at, began = time.time(), time.perf_counter()
    trial = replace(trial, config=dict(trial.config, threads=threads)) if threads else trial
    try:
        record = {"status": "done", "message": "", "result": JOBS[trial.job](trial, folder)}
    except Exception as err:  # noqa: BLE001 - a trial's failure is data, whatever its kind
        (folder / "error.txt").write_text(traceback.format_exc())
        record = {"status": "error", "message": one_line(err), "result": {}}
    record = dict(name=trial.name, job=trial.job, settings=trial.settings, wall_time_s=time.perf_counter() - began,
                  started_at=started_at, ended_at=time.time(), **record)
    experiment.write_record(trial.name, record)
    return record


@dataclass(frozen=True)
class Resources:
    """Where and how many trials run: `workers` at a time, each with its CPU and GPU share; `inline`: one after
    another in this process, without Ray."""

    workers: int | None = None  # None: as many as the machine's CPUs allow (local Ray)
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    address: str | None = None  # None: a local Ray on this machine; else an existing cluster (host:port, ray://…)
    inline: bool = False

    def validate(self) -> "Resources":
        if self.inline and (self.address is not None or (self.workers or 1) > 1):
            raise NSSError("--inline runs one trial at a time in this process: leave out --address and --workers")
        if self.workers is not None and self.workers < 1:
            raise NSSError(f"--workers: must be >= 1, got {self.workers}")
        if self.cpus_per_trial < 1:
            raise NSSError(f"--cpus-per-trial: must be >= 1, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise NSSError(f"--gpus-per-trial: must be >= 0, got {self.gpus_per_trial}")
        return self

    @property
    def concurrent(self) -> int:
        """Trials at a time: --workers, else as many as the CPUs allow (the cluster's, once Ray is up)."""
        if self.workers or self.inline:
            return self.workers or 1
        import ray
        cpus = ray.cluster_resources().get("CPU", 1) if ray.is_initialized() else (os.cpu_count() or 1)
        return max(1, int(cpus) // self.cpus_per_trial)


WAIT = "wait"  # what a source's next_trial says when no trial is ready until a running one has ended


class TrialSource(Protocol):
    """Where trials come from: `next_trial` until None (or WAIT for now), `complete` with each one's record."""

    def __len__(self) -> int: ...  # how many trials it will give at most (the bar's total)

    def next_trial(self) -> Trial | str | None: ...

    def complete(self, trial: Trial, record: dict[str, Any]) -> None: ...


class ListSource:
    """A fixed list of trials; `on_complete(trial, record)`, if given, is called as each one ends."""

    def __init__(self, trials: list[Trial], on_complete: Callable[[Trial, dict[str, Any]], None] | None = None):
        self.pending = list(trials)
        self.total = len(trials)
        self.on_complete = on_complete

    def __len__(self) -> int:
        return self.total

    def next_trial(self) -> Trial | None:
        return self.pending.pop(0) if self.pending else None

    def complete(self, trial: Trial, record: dict[str, Any]) -> None:
        if self.on_complete:
            self.on_complete(trial, record)


def _reachable(address: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to host:port (the GCS or the Ray Client server) opens: ray.init waits minutes on
    an address where nothing listens."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


@contextmanager
def ray_session(resources: Resources) -> Iterator[None]:
    """Ray for the length of the block: the caller's session if one is up, else a local one or the cluster at
    `resources.address` (shut down afterwards); nothing for inline trials."""
    if resources.inline:
        yield
        return
    import ray
    address = resources.address
    if address is not None and address != "auto" and not _reachable(address):
        raise NSSError(f"--address {address}: no Ray cluster answers there (start one with `ray start --head`, or "
                       "leave --address out for a local Ray)")
    if ray.is_initialized():
        yield
        return
    # Trials see absolute paths and keep their working directory (a worker reads this, so a cluster's workers get
    # it through the runtime environment); Ray Tune's console tables stay off (the driver reads that).
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    try:
        if address is None:
            import torch
            gpus = torch.cuda.device_count() if resources.gpus_per_trial else 0
            ray.init(address="local", num_cpus=resources.concurrent * resources.cpus_per_trial, num_gpus=gpus,
                     include_dashboard=False, **quiet)
        else:  # every node must have nss installed (pip install); the trials' folders must be on shared storage
            ray.init(address=address, runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}}, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise NSSError(f"--address {address}: cannot join the Ray cluster ({str(err).splitlines()[0]})") from None
    try:
        yield
    finally:
        ray.shutdown()


def _trainable(config: dict[str, Any]) -> None:
    """A Ray Tune trial: one nss trial with torch using the trial's CPU share; its record goes back to the driver
    with the result (and is in the trial's folder, trial.json)."""
    import torch
    from ray import tune
    torch.set_num_threads(config["threads"])
    importlib.import_module(config["module"])  # where the job registers itself
    record = execute(Trial.from_dict(config["trial"]), Experiment(config["root"], config["kind"]), config["threads"])
    tune.report({"status": record["status"], "record": json.dumps(record, default=str)})


def progress_bar(total: int, kind: str, progress: bool) -> tqdm:
    """The overall bar of an experiment, shared by its stages (pretrainings, then searches)."""
    return tqdm(total=total, desc=kind, unit="trial", disable=not progress, leave=False)


def run_trials(source: TrialSource, experiment: Experiment, resources: Resources, *, progress: bool = True,
               describe: Callable[[dict[str, Any]], str] = lambda record: "",
               bar: tqdm | None = None) -> list[dict[str, Any]]:
    """Run every trial `source` gives (inside `ray_session`), on Ray Tune or inline; returns their records in the
    order they finished. `describe(record)` is what the progress line says of a finished trial; `bar` the overall
    bar to move (default: one of its own).

    On Ray, a trial whose process dies (out of memory, a lost node) is run once more, continuing from its
    checkpoints; if it dies again it is recorded as an error."""
    records: list[dict[str, Any]] = []
    if len(source) == 0:
        return records
    own_bar = bar is None
    bar = progress_bar(len(source), experiment.kind, progress) if own_bar else bar

    def finished(trial: Trial, record: dict[str, Any]) -> None:
        records.append(record)
        bar.update()
        if progress:
            what = record["message"] or describe(record)
            bar.write(f"[{bar.n}/{bar.total}] {trial.name}  {record['status']}"
                      f"{'  ' + what if what else ''}  ({record['wall_time_s']:.1f} s)")
        source.complete(trial, record)

    (_run_inline if resources.inline else _run_on_ray)(source, experiment, resources, finished)
    if own_bar:
        bar.close()
    return records


def _run_inline(source: TrialSource, experiment: Experiment, resources: Resources,
                finished: Callable[[Trial, dict[str, Any]], None]) -> None:
    """One trial after another in this process, each with `cpus_per_trial` torch threads."""
    with using_threads(resources.cpus_per_trial):
        while (trial := source.next_trial()) is not None:
            if trial == WAIT:  # nothing runs beside this one, so nothing could release a trial
                raise NSSError(f"{experiment.path}: the trials left wait for one another")
            finished(trial, execute(trial, experiment, resources.cpus_per_trial))


def _run_on_ray(source: TrialSource, experiment: Experiment, resources: Resources,
                finished: Callable[[Trial, dict[str, Any]], None]) -> None:
    from ray import tune
    from ray.tune.search import Searcher

    running: dict[str, Trial] = {}

    class Unpickled:
        def __reduce__(self):  # Tune pickles its state for a restore we never use (resume is ours), and what these
            return object, ()  # close over (an Optuna study, a progress bar) may hold locks

    class Feed(Unpickled, Searcher):
        def suggest(self, trial_id: str) -> dict | None:
            trial = source.next_trial()
            if trial is None:
                return Searcher.FINISHED
            if trial == WAIT:
                return None  # Tune asks again later
            running[trial.name] = trial
            return {"trial": trial.to_dict(), "root": str(experiment.path), "kind": experiment.kind,
                    "threads": resources.cpus_per_trial, "module": JOBS[trial.job].__module__}

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            pass  # recorded by the callback below, which also sees the errors of trials that crashed

    class Report(Unpickled, tune.Callback):
        def _finish(self, tune_trial, error: str | None) -> None:
            trial = running.pop(tune_trial.config["trial"]["name"], None)
            if trial is None:
                return  # Tune has already told of this trial's end (it may tell twice: complete, then an error)
            reported = (tune_trial.last_result or {}).get("record")
            record = json.loads(reported) if reported else experiment.record(trial.name)
            if record is None:  # its process died twice before it could write its record
                record = experiment.write_error(trial, f"the trial's process failed ({error or 'no record written'})")
            finished(trial, record)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._finish(trial, None)

        def on_trial_error(self, iteration, trials, trial, **info):
            lines = str(trial.get_error() or "").strip().splitlines()
            self._finish(trial, lines[-1] if lines else None)

    for name in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # failures are our records, not Tune's tracebacks
    name = f"{experiment.kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"  # one per call, never shared
    tuner = tune.Tuner(
        tune.with_resources(_trainable, {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}),
        tune_config=tune.TuneConfig(search_alg=Feed(), num_samples=len(source),
                                    max_concurrent_trials=resources.concurrent, reuse_actors=True,
                                    trial_name_creator=lambda t: t.config["trial"]["name"],
                                    trial_dirname_creator=lambda t: t.config["trial"]["name"]),
        run_config=tune.RunConfig(name=name, storage_path=str(experiment.path / ".tune"), verbose=0, callbacks=[Report()],
                                  failure_config=tune.FailureConfig(max_failures=1)))
    tuner.fit()
