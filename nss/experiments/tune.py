"""`nss tune`: Optuna over NSS settings, each trial a search from a shared pretraining, then retraining of the
derived architecture, validation and profiling, run as trials (on Ray Tune).

Optuna's ask/tell drives Ray Tune: the searcher asks the study for a trial whenever a worker is free and tells it
the objectives when the trial ends. The SQLite study (OUT/study.db) is the durable record: `optuna.load_study`
and optuna-dashboard read it, and a resumed tune re-runs the trials it holds as running (each continuing from
its own checkpoints) before asking for new ones.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
import pandas as pd

from search_spaces import get_space

from ..config import OPTIONS, RETRAIN, SEARCH, RunConfig, read_yaml_mapping, resolve_config, trial_options
from ..deploy.profile import latency_against_reference, measurement_options, reference_latency
from ..device import size_of
from ..errors import NSSError
from ..evaluation.runs import evaluate_splits
from ..io import atomic_write
from ..model.costs import network_costs
from ..runs.folder import RunFolder
from ..training.api import retrain, search
from . import OBJECTIVES, STUDY_NAME
from .experiment import Experiment, Trial, run_in
from .runner import ListSource, Resources, job, ray_session, run_trials
from .sweep import PRETRAIN_JOB

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "tau": {"low": 0.5, "high": 10.0, "log": True},
    "sparsity": {"low": 1e-6, "high": 1e-2, "log": True},
    "sparsity_kind": {"choices": list(OPTIONS["sparsity_kind"].choices)},
    "threshold": {"low": 0.3, "high": 0.7},
}
# What a trial may set without changing the shared pretraining.
TUNABLE = trial_options(SEARCH, RETRAIN)
TUNE_JOB = "tune"


@job(TUNE_JOB)
def tune_job(trial: Trial, folder: Path) -> dict[str, Any]:
    """Search from the shared pretraining, retrain the derived architecture, evaluate it on validation, time it
    against the supernet."""
    config = resolve_config(**trial.config)
    found = run_in(folder / "search", search, config)
    architecture = str(folder / "search" / RunFolder.ARCHITECTURE)
    run_in(folder / "retrain", retrain, replace(config, architecture=architecture, from_run=None).validate())
    splits = evaluate_splits(folder / "retrain", ["val"])
    height, width, size = *trial.options["size"], size_of(config)
    return dict(found.summary(), delta_mtl=splits["val"]["delta_mtl"], splits=splits,
                latency_ms=latency_against_reference(found.architecture, size, trial.options),
                **network_costs(found.architecture, size, height, width))


def load_params(path: str | Path) -> dict[str, dict[str, Any]]:
    """The parameter space from a YAML file: `name: {low, high[, log, step]}` or `name: {choices: [...]}`."""
    data = read_yaml_mapping(path, "parameter file")
    if not data:
        raise NSSError(f"{path}: expected a mapping of option: {{low, high}} or {{choices: [...]}}")
    try:
        distributions(data)
    except NSSError as err:
        raise NSSError(f"{path}: {err}") from None
    return data


def distributions(params: Mapping[str, Mapping[str, Any]]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions of a parameter space, every bound and choice of its option's type."""
    out = {}
    for name, spec in params.items():
        if name not in TUNABLE:
            raise NSSError(f"{name!r}: not a tunable option (choose from {', '.join(TUNABLE)})")
        if not isinstance(spec, Mapping):
            raise NSSError(f"{name}: expected {{low, high}} or {{choices: [...]}}, got {spec!r}")
        if "choices" in spec:
            choices = [OPTIONS[name].coerce(c) for c in spec["choices"]]
            if not choices:
                raise NSSError(f"{name}: no choices")
            out[name] = optuna.distributions.CategoricalDistribution(choices)
            continue
        kind = OPTIONS[name].kind.__name__
        if kind not in ("int", "float") or "low" not in spec or "high" not in spec:
            raise NSSError(f"{name}: a {kind} option takes {{choices: [...]}}" if kind not in ("int", "float")
                           else f"{name}: needs low and high")
        low, high = OPTIONS[name].coerce(spec["low"]), OPTIONS[name].coerce(spec["high"])
        if not low < high or (spec.get("log") and low <= 0):
            raise NSSError(f"{name}: needs low < high (and low > 0 with log), got {low} and {high}")
        distribution = optuna.distributions.IntDistribution if kind == "int" else \
            optuna.distributions.FloatDistribution
        extra = {"step": OPTIONS[name].coerce(spec["step"])} if spec.get("step") is not None else {}
        try:
            out[name] = distribution(low, high, log=bool(spec.get("log", False)), **extra)
        except (TypeError, ValueError) as err:  # e.g. a step with log
            raise NSSError(f"{name}: {err}") from None
    return out


def _sampler(objectives: Sequence[str], trials: int, seed: int) -> optuna.samplers.BaseSampler:
    """TPE for one objective, NSGA-II for several; both start from random trials, about a third of the budget."""
    if len(objectives) == 1:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, trials // 3)))
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 3)))


def open_study(path: Path, objectives: Sequence[str], trials: int, seed: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name=STUDY_NAME, load_if_exists=True,
                                directions=[OBJECTIVES[o][0] for o in objectives])
    # seeded by the trials so far: a resumed study must not draw its first trials' parameters again
    study.sampler = _sampler(objectives, trials, seed + len(study.trials))
    study.set_user_attr("sampler", type(study.sampler).__name__)  # the storage keeps no sampler: say which
    with warnings.catch_warnings():  # experimental in Optuna 3–5, and what optuna-dashboard labels its axes with
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(objectives))
    return study


@dataclass
class StudySource:
    """Trials from the study: first those an interrupted tune left running (same parameters, same folder), then
    new ones until the study holds `total` finished trials."""

    study: optuna.Study
    space: dict[str, optuna.distributions.BaseDistribution]
    objectives: tuple[str, ...]
    base: dict[str, Any]
    options: dict[str, Any]
    total: int
    experiment: Experiment

    def __post_init__(self) -> None:
        states = optuna.trial.TrialState
        self.resumed = []
        for left in self.study.get_trials(deepcopy=False, states=(states.RUNNING, states.WAITING)):
            record = self.experiment.record(f"t{left.number:03d}")
            if record is None:
                self.resumed.append(left)  # interrupted: its trial continues from its checkpoints
            else:  # it ended, but the tune was killed before telling the study
                self.complete(self._trial(left.number, left.params), record)
        finished = len(self.study.get_trials(deepcopy=False, states=(states.COMPLETE, states.FAIL, states.PRUNED)))
        self.new = max(0, self.total - finished - len(self.resumed))
        self.count = len(self.resumed) + self.new

    def __len__(self) -> int:
        return self.count

    def next_trial(self) -> Trial | None:
        if self.resumed:
            number, params = self.resumed[0].number, self.resumed.pop(0).params
        elif self.new:
            self.new -= 1
            asked = self.study.ask(self.space)
            number, params = asked.number, asked.params
        else:
            return None
        return self._trial(number, params)

    def _trial(self, number: int, params: dict[str, Any]) -> Trial:
        return Trial(f"t{number:03d}", TUNE_JOB, dict(self.base, **params), {"number": number, **params}, self.options)

    def complete(self, trial: Trial, record: dict[str, Any]) -> None:
        number = trial.settings["number"]
        result = record.get("result") or {}
        values = [result.get(OBJECTIVES[o][1]) for o in self.objectives]
        if record["status"] == "done" and all(v is not None and math.isfinite(v) for v in values):
            self.study.tell(number, values, skip_if_finished=True)
        else:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def trials_table(study: optuna.Study, experiment: Experiment, objectives: Sequence[str]) -> pd.DataFrame:
    """One row per study trial: its parameters, status, objectives, architecture; `pareto` marks best_trials."""
    states = optuna.trial.TrialState
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (states.COMPLETE, states.FAIL)]
    best = {t.number for t in study.best_trials} if any(t.state == states.COMPLETE for t in finished) else set()
    rows = []
    for t in finished:
        record = experiment.record(f"t{t.number:03d}") or {"status": "error", "message": "no record", "result": {}}
        result = record.get("result") or {}
        rows.append({"number": t.number, "trial": f"t{t.number:03d}", "status": record["status"],
                     "message": record.get("message", ""), **t.params,
                     **{OBJECTIVES[o][1]: result.get(OBJECTIVES[o][1]) for o in OBJECTIVES},
                     "architecture": result.get("architecture"), "heads": ",".join(result.get("heads", [])),
                     "wall_time_s": record.get("wall_time_s"), "pareto": t.number in best})
    return pd.DataFrame(rows)


def _describe(record: dict[str, Any]) -> str:
    result = record.get("result") or {}
    if "delta_mtl" not in result:
        return ""
    return (f"Δ_MTL {result['delta_mtl']:+.1f}%, {result['latency_ms']:.1f} ms, {result['params'] / 1e6:.2f} M params, "
            f"architecture {result['architecture']}")


def tune(out: str | Path = "runs/tune", *, trials: int | None = None,
         objectives: Sequence[str] = ("delta_mtl", "latency"), params: Mapping[str, Mapping] | None = None,
         base: RunConfig | None = None, backend: str = "torch", size: tuple[int, int] | None = None,
         iters: int = 30, resources: Resources = Resources(), force: bool = False, resume: bool = False,
         progress: bool = True) -> pd.DataFrame:
    """Tune NSS settings with Optuna (`params`: option → {low, high[, log]} or {choices}); every trial searches
    from one shared pretraining, retrains `base.retrain_steps`, is evaluated on validation and profiled on
    `backend`. Returns the trials.csv table; OUT/study.db holds the study, OUT/pareto.csv its best trials.

    With `resume`, the study in `out` goes on (`trials`, if given, is the new total)."""
    experiment = Experiment(out, "tune")
    resources.validate()
    if resume:
        if params is not None or base is not None:
            raise NSSError("a resumed tune keeps its parameters and options: give only --out, --trials and "
                           "resources with --resume")
        manifest = experiment.manifest()
        trials = trials or manifest["trials"]
        objectives, params, base_dict, options = (manifest["objectives"], manifest["params"], manifest["base"],
                                                  manifest["options"])
    else:
        objectives = tuple(objectives)
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if not objectives or unknown or len(set(objectives)) < len(objectives):
            raise NSSError(f"--objectives: choose distinct ones from {', '.join(OBJECTIVES)}, got {list(objectives)}")
        trials = 24 if trials is None else trials
        params = dict(params or DEFAULT_PARAMS)
        base_config = (base or RunConfig()).validate()
        base_dict = base_config.with_absolute_paths().to_dict()
        options = measurement_options(backend, base_config.device, iters, size or base_config.frame_height_width)
        experiment.refuse_existing(force)
    if trials < 1:
        raise NSSError(f"--trials: must be >= 1, got {trials}")
    space = distributions(params)
    with ray_session(resources):
        if not resume:
            experiment.create({"trials": trials, "objectives": list(objectives), "params": params, "base": base_dict,
                               "options": options})
        else:
            experiment.write_manifest(dict(manifest, trials=trials))
        pretraining = Trial("pretrain", PRETRAIN_JOB, base_dict)
        if experiment.record(pretraining.name) is None:
            run_trials(ListSource([pretraining]), experiment, resources, progress=progress)
        made = experiment.record(pretraining.name)
        if made["status"] != "done":
            raise NSSError(f"the shared pretraining failed: {made['message']}")
        if "reference_ms" not in options:  # measured once, while nothing else runs; kept for resumed tunes
            config = RunConfig(**base_dict)
            options["reference_ms"] = reference_latency(get_space(config.space), size_of(config), options)
            experiment.write_manifest(dict(experiment.manifest(), options=options))
        study = open_study(experiment.path / "study.db", objectives, trials, base_dict["seed"])
        searched = dict(base_dict, from_run=str(experiment.trial_dir(pretraining.name)))
        source = StudySource(study, space, tuple(objectives), searched, options, trials, experiment)
        run_trials(source, experiment, resources, progress=progress, describe=_describe)
    table = trials_table(study, experiment, objectives)
    atomic_write(experiment.path / "trials.csv", lambda tmp: table.to_csv(tmp, index=False))
    pareto = table[table["pareto"]] if len(table) else table
    atomic_write(experiment.path / "pareto.csv", lambda tmp: pareto.to_csv(tmp, index=False))
    return table
