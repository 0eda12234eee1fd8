"""A published ground truth as a folder `nss rank` reads and `nss groundtruth --resume` extends: its manifest
(groundtruth.json) and one trial record per retraining, rebuilt from its ranking.csv (and trials.csv for wall
times), without checkpoints.

Only architectures retrained at one seed are rebuilt (their ranking row is that seed's values); an architecture
with more seeds is planned again at those seeds (the manifest's `only`), for `--resume` to retrain, since its
ranking row holds only their mean. The base configuration is the one the ground truth's command gave.

    python benchmarks/groundtruth_from_ranking.py runs/reference-groundtruth/gt-4000-64/ranking.csv \\
        --trials runs/reference-groundtruth/gt-4000-64/trials.csv --network tiny --retrain-steps 4000 \\
        --conflicts-every 0 --out runs/reference-groundtruth/gt-4000-64
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from nss.config import resolve_config
from nss.deploy.profile import measurement_options
from nss.experiments.experiment import Experiment
from nss.experiments.groundtruth import (GROUNDTRUTH_JOB, enumerate_architectures, groundtruth_base,
                                        known_latencies, write_ranking)
from nss.io import atomic_write
from search_spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ranking")
    parser.add_argument("--trials", help="trials.csv of the ground truth (trial, wall_time_s)")
    parser.add_argument("--space", default="most_net_plus")
    parser.add_argument("--network", default="tiny")
    parser.add_argument("--retrain-steps", type=int, default=4000)
    parser.add_argument("--conflicts-every", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="the seed of the one-seed rows")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ranking = pd.read_csv(args.ranking, dtype={"heads": str, "architecture": str}, keep_default_na=False,
                          na_values=[""])
    ranking["heads"] = ranking["heads"].fillna("")
    space = get_space(args.space)
    base = groundtruth_base(resolve_config(space=args.space, network=args.network, retrain_steps=args.retrain_steps,
                                           conflicts_every=args.conflicts_every, seed=args.seed))
    every = {a.id: a for a in enumerate_architectures(space)}
    unknown = set(ranking["architecture"]) - set(every)
    if unknown:
        raise SystemExit(f"{args.ranking}: architectures not of {args.space}: {sorted(unknown)[:3]}")
    walls = {}
    if args.trials:
        trials = pd.read_csv(args.trials, dtype={"architecture": str})
        walls = dict(zip(trials["trial"], trials["wall_time_s"]))
    several = ranking[ranking["seeds_done"] > 1]
    experiment = Experiment(args.out, "groundtruth")
    manifest = {"space": space.to_dict(), "base": base.with_absolute_paths().to_dict(), "seeds": [args.seed],
                "sample": None, "architectures": list(ranking["architecture"]),
                "options": measurement_options("torch", base.device, 30, base.frame_height_width),
                "only": {}, "rebuilt_from": Path(args.ranking).name}
    experiment.path.mkdir(parents=True, exist_ok=True)
    experiment.write_manifest(manifest)
    tasks = [(t.name, m.name) for t in space.tasks for m in t.metrics]
    for row in ranking[ranking["seeds_done"] == 1].to_dict("records"):
        name = f"{row['architecture']}-seed{args.seed}"
        metrics: dict[str, dict[str, float]] = {}
        for task, metric in tasks:
            metrics.setdefault(task, {})[metric] = float(row[f"{task}/{metric}"])
        result = {"delta_mtl": float(row["delta_mtl"]),
                  "splits": {"test": {"delta_mtl": float(row["delta_mtl"]), "metrics": metrics},
                             "val": {"delta_mtl": float(row["delta_mtl_val"])}},
                  "params": int(row["params"]), "flops": int(row["flops"])}
        wall = walls.get(name, row["wall_time_s"])
        experiment.write_record(name, {"name": name, "job": GROUNDTRUTH_JOB,
                                       "settings": {"architecture": row["architecture"], "heads": row["heads"],
                                                    "seed": args.seed},
                                       "wall_time_s": float(wall), "status": "done", "message": "",
                                       "rebuilt_from": Path(args.ranking).name, "result": result})
    latency = ranking[["architecture", "latency_ms"]].dropna()
    atomic_write(experiment.path / "latency.csv", lambda tmp: latency.to_csv(tmp, index=False))
    if len(several):  # their per-seed values are not in the ranking: retrained again by --resume
        manifest["only"] = {str(s): sorted(several["architecture"]) for s in range(1, int(several["seeds_done"].max()))}
        manifest["seeds"] = [args.seed] + [int(s) for s in manifest["only"]]
        experiment.write_manifest(manifest)
        (experiment.path / "trials").mkdir(exist_ok=True)
    write_ranking(experiment, [every[i] for i in every if i in set(manifest["architectures"])], manifest["seeds"],
                  known_latencies(experiment))
    print(f"{experiment.path}: {int((ranking['seeds_done'] == 1).sum())} retrainings rebuilt; "
          f"{len(several)} architecture(s) with several seeds ({', '.join(several['heads'].replace('', '-'))}) left "
          f"for `nss groundtruth --out {args.out} --resume` at seeds {manifest['seeds']}")


if __name__ == "__main__":
    main()
