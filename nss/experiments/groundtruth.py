"""`nss groundtruth`: every architecture of a space (or a uniform sample) retrained from scratch under one budget,
evaluated on the validation and test splits and profiled, as trials. The ranking it writes is what a search is
judged against (`nss rank`)."""
from __future__ import annotations

import csv
import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from search_spaces import Architecture, SearchSpace, get_space

from ..config import RunConfig, resolve_config
from ..deploy.profile import measurement_options, timed
from ..device import size_of
from ..errors import NSSError
from ..evaluation.marginals import marginal_values as head_marginal_values
from ..evaluation.metrics import delta_mtl, pareto_mask
from ..evaluation.runs import evaluate_splits
from ..io import atomic_write, atomic_write_text
from ..model.costs import network_costs, reference_network
from ..scale_search.derive import save_architecture, with_fixed_heads
from ..training.api import retrain
from .experiment import Experiment, Trial, run_in
from .runner import ListSource, Resources, job, ray_session, run_trials

SPLITS = ("val", "test")
# Validation and test clips of a ground truth's synthetic data unless --eval-clips says otherwise: the training
# default (a quarter of the 24 training clips) measures a network on 6 clips, too few for two retrainings' order to
# hold between the validation and the test split (runs/reference-groundtruth/README.md measures it).
GROUNDTRUTH_EVAL_CLIPS = 48
GROUNDTRUTH_JOB = "groundtruth"


@job(GROUNDTRUTH_JOB)
def groundtruth_job(trial: Trial, folder: Path) -> dict[str, Any]:
    """Retrain one architecture from scratch, evaluate it on validation and test, count its cost (its latency is
    measured afterwards, every architecture in turn on a quiet machine)."""
    config = resolve_config(**trial.config)
    run_in(folder, retrain, config)
    splits = evaluate_splits(folder, list(SPLITS))
    height, width = trial.options["size"]
    size = size_of(config)
    return dict(delta_mtl=splits["test"]["delta_mtl"], splits=splits,
                **network_costs(Architecture.load(config.architecture), size, height, width))


def enumerate_architectures(space: SearchSpace, sample: int | None = None, seed: int = 0) -> list[Architecture]:
    """All 2^k architectures of a space's k searchable heads (the fixed heads always kept), minimal first and full
    last; or `sample` of them drawn uniformly without replacement, the minimal and the full network always in."""
    heads = space.searchable
    every = [Architecture(space, space.fixed + tuple(h for i, h in enumerate(heads) if mask >> i & 1))
             for mask in range(2 ** len(heads))]
    if sample is None:
        return every
    if not 2 <= sample <= len(every):
        raise NSSError(f"--sample: {space.name!r} has {len(every)} architectures; a sample holds 2 (the minimal and "
                       f"the full network) to {len(every)}, got {sample}")
    middle = every[1:-1]
    picked = np.random.default_rng(seed).choice(len(middle), sample - 2, replace=False)
    return [every[0]] + [middle[i] for i in sorted(picked)] + [every[-1]]


def read_architectures(path: str | Path, space: SearchSpace) -> list[Architecture]:
    """The architectures a file lists, in its order, each once: a CSV with a `heads` column (as ranking.csv), or
    one comma-separated heads list per line ('-' or an empty list: the fixed heads alone; '#' starts a comment).
    The space's fixed heads are kept whether listed or not."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise NSSError(f"--architectures: {path} cannot be read ({err.strerror})") from None
    lines = text.splitlines()
    if lines and "heads" in next(csv.reader(lines[:1])):
        heads_column = pd.read_csv(path, dtype={"heads": str}, keep_default_na=False)["heads"]
        listed = [(number, value) for number, value in enumerate(heads_column, start=2)]
    else:
        listed = [(number, line.split("#")[0].strip()) for number, line in enumerate(lines, start=1)]
        listed = [(number, value) for number, value in listed if value]
    architectures: dict[str, Architecture] = {}
    for number, value in listed:
        heads = [h.strip() for h in value.split(",") if h.strip() not in ("", "-")]
        unknown = [h for h in heads if h not in space.heads]
        if unknown:
            raise NSSError(f"--architectures: {path} line {number}: {unknown[0]!r} is not a head of {space.name!r} "
                           f"(its searchable heads: {', '.join(space.searchable)})")
        architecture = with_fixed_heads(space, heads)
        architectures.setdefault(architecture.id, architecture)
    if not architectures:
        raise NSSError(f"--architectures: {path} lists no architecture")
    return list(architectures.values())


def extended(manifest: dict[str, Any], seeds: Sequence[int], architectures: str | Path | None) -> dict[str, Any]:
    """A ground truth's manifest with retrainings added: each of `seeds` for the architectures the file lists (of
    those the ground truth holds; default all of them). A seed that retrains only some architectures is listed in
    the manifest's `only` ({seed: ids})."""
    space = SearchSpace.from_dict(manifest["space"])
    held = set(manifest["architectures"])
    ids = [a.id for a in read_architectures(architectures, space)] if architectures is not None else sorted(held)
    missing = [i for i in ids if i not in held]
    if missing:
        raise NSSError(f"--architectures: {architectures} lists {len(missing)} architecture(s) this ground truth does "
                       f"not hold (e.g. {missing[0]}): add them in a ground truth of their own")
    only = dict(manifest.get("only", {}))
    for seed in seeds:
        if seed in manifest["seeds"] and str(seed) not in only:
            continue  # every architecture is retrained at this seed already
        planned = set(only.get(str(seed), [])) | set(ids)
        if planned >= held:
            only.pop(str(seed), None)
        else:
            only[str(seed)] = sorted(planned)
    return dict(manifest, seeds=sorted(set(manifest["seeds"]) | set(seeds)), only=only)


def groundtruth_base(base: RunConfig) -> RunConfig:
    """A ground truth's retraining settings: every retraining seed on the clips of `base`'s data seed (the spread
    between seeds is then the retraining's alone), measured on GROUNDTRUTH_EVAL_CLIPS clips unless `base` says."""
    eval_clips = GROUNDTRUTH_EVAL_CLIPS if base.eval_clips is None else base.eval_clips
    return replace(base, data_seed=base.synthetic_seed, eval_clips=eval_clips)


def _metrics_of(row: Any, space: SearchSpace) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from a ranking row's `task/metric` columns."""
    return {t.name: {m.name: row[f"{t.name}/{m.name}"] for m in t.metrics} for t in space.tasks}


def ranking_table(experiment: Experiment, architectures: list[Architecture], seeds: Sequence[int],
                  latency: dict[str, float], split: str = "test") -> pd.DataFrame:
    """One row per architecture, means (and spread, ddof = 1) over its retraining seeds: every metric of each
    task's finest kept head on `split`, Δ_MTL against the trivial predictor (both splits) and against the full
    network's retraining, cost (`latency`: architecture id → ms), Pareto membership (Δ_MTL against latency and
    against parameters), rank, percentile, and whether it is tied with the best within the noise."""
    space = architectures[0].space
    columns = [(t.name, m.name) for t in space.tasks for m in t.metrics]
    rows, full_metrics = [], None
    for architecture in architectures:
        records = [experiment.record(f"{architecture.id}-seed{s}") for s in seeds]
        finished = [r for r in records if r]
        done = [r["result"] for r in finished if r["status"] == "done"
                and math.isfinite(r["result"]["splits"][split]["delta_mtl"])]
        errors = [r["message"] or "a non-finite Δ_MTL" for r in finished if r["result"] not in done]
        row: dict[str, Any] = {"architecture": architecture.id, "heads": ",".join(architecture.searchable_kept),
                               "kept": len(architecture.searchable_kept), "seeds_done": len(done),
                               "status": "done" if done else ("error" if errors else "not run"),
                               "message": errors[0] if errors and not done else "",
                               "wall_time_s": sum(r["wall_time_s"] for r in finished)}
        if done:
            for task, metric in columns:
                values = [d["splits"][split]["metrics"][task][metric] for d in done]
                row[f"{task}/{metric}"], row[f"{task}/{metric}_std"] = np.mean(values), _spread(values)
            for s in SPLITS:
                values = [d["splits"][s]["delta_mtl"] for d in done]
                suffix = "" if s == split else f"_{s}"
                row[f"delta_mtl{suffix}"], row[f"delta_mtl{suffix}_std"] = np.mean(values), _spread(values)
            row.update(params=done[0]["params"], flops=done[0]["flops"], latency_ms=latency.get(architecture.id))
            if architecture.heads == space.heads:
                full_metrics = _metrics_of(row, space)
        rows.append(row)
    table = pd.DataFrame(rows)
    done = table["status"] == "done"
    if full_metrics is not None:
        table.loc[done, "delta_mtl_vs_full"] = [delta_mtl(_metrics_of(r, space), full_metrics, space.tasks)
                                                for _, r in table[done].iterrows()]
    if not done.any():
        return table
    for cost, name in (("latency_ms", "pareto_latency"), ("params", "pareto_params")):
        timed = done & table[cost].notna()  # (no latency until the trials are over)
        table[name] = False
        table.loc[timed, name] = pareto_mask(table.loc[timed, cost], table.loc[timed, "delta_mtl"])
    scores = table.loc[done, "delta_mtl"]
    table.loc[done, "rank"] = scores.rank(ascending=False, method="min").astype(int)
    n = int(done.sum())
    table.loc[done, "percentile"] = 100 * (n - table.loc[done, "rank"]) / max(n - 1, 1)
    # each against the best, over the seeds each has so far (NaN margins: a single seed tells no noise)
    margin = tie_margin(table, table["seeds_done"], table.loc[scores.idxmax(), "seeds_done"])
    if margin.notna().any():
        table["tied_with_best"] = done & (scores.max() - table["delta_mtl"] <= margin)
    return table.sort_values("rank", kind="stable").reset_index(drop=True)


def _spread(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def noise_floor(ranking: pd.DataFrame) -> float:
    """The spread of Δ_MTL between retraining seeds of one architecture (median over architectures). NaN with a
    single seed."""
    spread = ranking.get("delta_mtl_std")
    if spread is None or ranking["seeds_done"].max() < 2:
        return float("nan")
    return float(spread[ranking["seeds_done"] >= 2].median())


def tie_margin(ranking: pd.DataFrame, seeds: Any = None, against: Any = None) -> Any:
    """Two architectures whose mean Δ_MTL over `seeds` and `against` retrainings (numbers or Series; default: the
    ranking's most, `against` as `seeds`) differ by less than twice the spread of their difference (noise floor ·
    √(1/seeds + 1/against)) are tied."""
    seeds = ranking["seeds_done"].max() if seeds is None else seeds
    against = seeds if against is None else against
    return 2 * noise_floor(ranking) * np.sqrt(1 / seeds + 1 / against)


def marginal_values(ranking: pd.DataFrame, space: SearchSpace, column: str = "delta_mtl") -> pd.Series:
    """Per searchable head: mean `column` of the architectures that keep it minus that of those that do not."""
    done = ranking[ranking["status"] == "done"]
    kept = done["heads"].fillna("").str.split(",").tolist()
    return pd.Series(head_marginal_values(kept, done[column], space.searchable), name=f"marginal_{column}")


def groundtruth(space: str | None = None, out: str | Path = "runs/groundtruth", *,
                base: RunConfig | None = None, seeds: Sequence[int] | None = None, sample: int | None = None,
                architectures: str | Path | None = None, backend: str = "torch", size: tuple[int, int] | None = None, iters: int = 30,
                resources: Resources = Resources(), force: bool = False, resume: bool = False,
                progress: bool = True) -> pd.DataFrame:
    """Retrain every architecture of `space` (default most_net_plus; or `sample` of them, drawn with `base.seed`) once
    per seed of `seeds` (default: `base.seed`) with `base`'s retraining settings, every seed on the clips of
    `base.synthetic_seed`, and evaluate it on validation and test (GROUNDTRUTH_EVAL_CLIPS clips each unless
    `base.eval_clips` is set); or only those the file `architectures` lists (`read_architectures`); then
    time every architecture in turn on `backend` (at `size`, default the frame size), on the machine alone.
    Returns ranking.csv's table. With `resume`, the ground truth in `out` goes on; `seeds` (and `architectures`)
    with it add retrainings at those seeds (of the architectures listed) to it (`extended`)."""
    experiment = Experiment(out, "groundtruth")
    resources.validate()
    if resume:
        if any(given is not None for given in (base, sample, space)) or (architectures is not None and not seeds):
            raise NSSError("a resumed ground truth keeps its settings: give only --out (and resources) with --resume, "
                           "or --seeds (and --architectures) to add retrainings to it")
        manifest = experiment.manifest()
        if seeds:
            manifest = extended(manifest, seeds, architectures)
            experiment.write_manifest(manifest)
    else:
        space = space or "most_net_plus"
        base_config = groundtruth_base(replace(base or RunConfig(), space=space).validate())
        the_space = get_space(space)
        if architectures is not None and sample is not None:
            raise NSSError("--architectures and --sample: give the architectures to retrain one way")
        chosen = read_architectures(architectures, the_space) if architectures is not None else \
            enumerate_architectures(the_space, sample, base_config.seed)
        seeds = list(seeds) if seeds is not None else [base_config.seed]
        if not seeds or len(set(seeds)) < len(seeds):
            raise NSSError(f"--seeds: give distinct seeds, got {seeds}")
        experiment.refuse_existing(force)
        manifest = {"space": the_space.to_dict(), "base": base_config.with_absolute_paths().to_dict(),
                    "seeds": seeds, "sample": sample, "architectures": [a.id for a in chosen],
                    "options": measurement_options(backend, base_config.device, iters,
                                                   size or base_config.frame_height_width)}
    the_space = SearchSpace.from_dict(manifest["space"])
    architectures = [a for a in enumerate_architectures(the_space) if a.id in set(manifest["architectures"])]
    with ray_session(resources):
        if not resume:
            experiment.create(manifest)
        pending = [t for t in groundtruth_trials(experiment, architectures) if experiment.record(t.name) is None]

        def publish(trial: Trial, record: dict[str, Any]) -> None:
            """The ranking so far; one not written costs the trial nothing (the final one is written below)."""
            try:
                write_ranking(experiment, architectures, manifest["seeds"], known_latencies(experiment))
            except Exception as err:  # noqa: BLE001 - a Tune callback's error would be taken for the trial's
                warnings.warn(f"{experiment.path / 'ranking.csv'}: not rewritten after {trial.name} ({err})")

        run_trials(ListSource(pending, on_complete=publish), experiment, resources, progress=progress,
                   describe=_describe)
    latency = measure_latencies(experiment, architectures, RunConfig(**manifest["base"]), manifest["options"])
    return write_ranking(experiment, architectures, manifest["seeds"], latency)


def write_ranking(experiment: Experiment, architectures: list[Architecture], seeds: Sequence[int],
                  latency: dict[str, float]) -> pd.DataFrame:
    """ranking.csv and summary.txt of the trials finished so far: rewritten as each one ends, so that a ground
    truth of hours can be read (pandas, `nss rank`) while it runs; latencies come once the trials are over."""
    ranking = ranking_table(experiment, architectures, seeds, latency)
    atomic_write(experiment.path / "ranking.csv", lambda tmp: ranking.to_csv(tmp, index=False))
    atomic_write_text(experiment.path / "summary.txt", summary(ranking, architectures[0].space) + "\n")
    return ranking


def groundtruth_trials(experiment: Experiment, architectures: list[Architecture]) -> list[Trial]:
    """The trials of a ground truth's manifest in the order they run: a whole seed before the next, and in each
    seed the minimal and the full network first, then the others in an order drawn with the base seed, so that
    the trials a ground truth stopped part way had started are those two and a uniform draw of the others at one
    seed. Each architecture's file is written under OUT/architectures/ (again on resume: a kill may have come
    before they were all written)."""
    manifest = experiment.manifest()
    paths = {}
    for architecture in architectures:
        paths[architecture.id] = experiment.path / "architectures" / f"{architecture.id}.json"
        save_architecture(paths[architecture.id], architecture)
    ends, middle = architectures[:1] + architectures[1:][-1:], architectures[1:-1]  # (a space of one: one end)
    order = ends + [middle[i] for i in np.random.default_rng(manifest["base"]["seed"]).permutation(len(middle))]
    only = manifest.get("only", {})
    return [Trial(f"{a.id}-seed{seed}", GROUNDTRUTH_JOB, dict(manifest["base"], seed=seed, architecture=str(paths[a.id])),
                  {"architecture": a.id, "heads": ",".join(a.searchable_kept), "seed": seed}, manifest["options"])
            for seed in manifest["seeds"] for a in order if str(seed) not in only or a.id in only[str(seed)]]


def measure_latencies(experiment: Experiment, architectures: list[Architecture], base: RunConfig,
                      options: dict[str, Any]) -> dict[str, float]:
    """Median batch-1 latency (ms) of every architecture, all timed in turns once the trials are over (none of
    them competing with a training for the machine); kept in latency.csv, so a resumed ground truth times only
    what it has not."""
    known = known_latencies(experiment)
    missing = [a for a in architectures if a.id not in known]
    if missing:
        networks = {architecture.id: reference_network(architecture, size_of(base)) for architecture in missing}
        times = timed(networks, options)
        known.update({name: 1e3 * float(np.median(t)) for name, t in times.items()})
        frame = pd.DataFrame(sorted(known.items()), columns=["architecture", "latency_ms"])
        atomic_write(experiment.path / "latency.csv", lambda tmp: frame.to_csv(tmp, index=False))
    return known


def known_latencies(experiment: Experiment) -> dict[str, float]:
    """Architecture id → latency (ms) of those already timed (latency.csv)."""
    path = experiment.path / "latency.csv"
    return dict(pd.read_csv(path, dtype={"architecture": str}).values) if path.is_file() else {}


def summary(ranking: pd.DataFrame, space: SearchSpace) -> str:
    """A few lines on a ground truth: how many architectures, failures, noise floor, best, marginal values."""
    done = ranking[ranking["status"] == "done"]
    failed, not_run = (int((ranking["status"] == status).sum()) for status in ("error", "not run"))
    lines = [f"{len(ranking)} architectures of {space.name}: {len(done)} retrained, {failed} failed"
             + (f", {not_run} not run yet" if not_run else "")]
    if len(done):
        best = done.iloc[0]
        floor = noise_floor(ranking)
        lines.append(f"best Δ_MTL {best['delta_mtl']:+.2f}% ({best['heads'] or 'fixed heads only'}); noise floor "
                     + ("n/a (no architecture with two seeds)" if math.isnan(floor) else
                        f"{floor:.2f} points (median over the {int((ranking['seeds_done'] >= 2).sum())} architectures "
                        "with two seeds or more)"))
        marginal = marginal_values(ranking, space)
        lines.append("marginal value of each head (Δ_MTL points with − without): "
                     + ", ".join(f"{h} {v:+.2f}" for h, v in marginal.items()))
    return "\n".join(lines)


def _describe(record: dict[str, Any]) -> str:
    result = record.get("result") or {}
    if "splits" not in result:
        return ""
    return (f"{record['settings']['heads'] or 'fixed heads only'}: test Δ_MTL {result['splits']['test']['delta_mtl']:+.1f}%"
            f", {result['params'] / 1e6:.2f} M params")

