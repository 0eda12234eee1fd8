"""How NSS's relaxation compares with the ones reviewers ask about: every relaxation (gumbel, softmax, gdas,
concrete, dirichlet) and NSS with bi-level optimisation, three seeds each, on the synthetic data.

One sweep searches every relaxation × seed from one pretraining per seed; the bi-level searches start from the
same pretrainings. The table: the architecture found per seed, how many seeds agree on the most frequent one,
mean search wall time (the search phase only, 1 CPU per trial) and the final gate entropy (mean over heads of the
binary entropy of the on-probability, in bits: 1 = undecided, 0 = certain). Written to OUT/relaxations.csv and
OUT/relaxations.md, beside the runs (OUT/sweep, a sweep folder `nss report` takes, and OUT/bilevel).

    python benchmarks/relaxations.py --out runs/relaxations [--seeds 0,1,2] [--search-steps 600]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

import nss
from nss.config import absolute_paths
from nss.experiments.experiment import Experiment, Trial
from nss.experiments.runner import ListSource, ray_session, run_trials
from nss.model.costs import compact_heads
from nss.runs.folder import RunFolder
from nss.scale_search.gates import RELAXATIONS



def entropy_bits(probabilities: list[float]) -> float:
    def h(p: float) -> float:
        return 0.0 if p <= 0 or p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    return sum(map(h, probabilities)) / len(probabilities)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--search-steps", type=int, default=600)
    parser.add_argument("--network", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    base = nss.resolve_config(network=args.network, search_steps=args.search_steps, device="cpu")
    resources = nss.Resources(workers=args.workers)
    with ray_session(resources):
        sweep = nss.sweep({"relaxation": list(RELAXATIONS), "seed": seeds}, out / "sweep", base=base,
                          resources=resources)
        bilevel = Experiment(out / "bilevel", "sweep")
        bilevel.create({"grid": {"seed": seeds}, "base": base.to_dict(), "pretrain": "shared", "max_trials": 256})
        trials = [Trial(f"bilevel-seed{s}", "search",
                        absolute_paths(dict(base.to_dict(), seed=s, bilevel=True,
                                            from_run=str(out / "sweep" / "trials" / f"pretrain-seed{s}"))),
                        {"seed": s}) for s in seeds]
        run_trials(ListSource(trials), bilevel, resources)
    rows = []
    run_of = sweep.set_index(["relaxation", "seed"])["run"]
    for variant, runs in [(r, [run_of[r, s] for s in seeds]) for r in RELAXATIONS] + [("gumbel, bi-level",
                                                    [str(bilevel.trial_dir(t.name)) for t in trials])]:
        found, walls, steps, entropies = [], [], [], []
        for run in map(Path, runs):
            record = pd.read_json(run / "trial.json", typ="series")
            result = record["result"]
            kept = tuple(h for h in result["heads"] if h in nss.get_space(base.space).searchable)
            found.append(compact_heads(kept) or "fixed heads only")
            metrics = pd.read_csv(run / RunFolder.METRICS)
            walls.append(metrics[metrics["phase"] == "search"]["wall_time"].max())
            steps.append(metrics[metrics["phase"] == "search"]["step"].max())
            entropies.append(entropy_bits(list(result["probabilities"].values())))
        modal = max(set(found), key=found.count)
        rows.append({"variant": variant, **{f"seed {s}": a for s, a in zip(seeds, found)},
                     "agreement": f"{found.count(modal)}/{len(found)}", "modal": modal,
                     "search_wall_s": sum(walls) / len(walls),
                     "ms_per_step": 1e3 * sum(walls) / sum(steps),
                     "gate_entropy_bits": sum(entropies) / len(entropies)})
    table = pd.DataFrame(rows)
    table.to_csv(out / "relaxations.csv", index=False)
    text = table.drop(columns="modal").to_string(index=False, float_format=lambda v: f"{v:.3g}")
    (out / "relaxations.md").write_text("# Relaxations, three seeds each (searchable heads kept)\n\n```\n" + text
                                        + "\n```\n")
    print(text)


if __name__ == "__main__":
    main()
