"""Does a latency target hold? Searches with --latency-target at 80% (and any other `--fraction`) of the
supernet's measured latency on ONNX Runtime (CPU), against the unconstrained NSS search from the same pretraining,
every derived network retrained with the same budget, in one run.

Reports each constrained network's measured latency ÷ its target (target: 0.9–1.05; the supernet is timed again
with the derived networks and the target scaled by its drift since the table), the cost table's prediction of
it, and the validation Δ_MTL (against the trivial predictor) of every retrained network; writes
latency_target.csv and the cost table to --out.

    python benchmarks/latency_target.py --out runs/latency-target [--fraction 0.8,0.6] [--size 256x256]
"""
from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import pandas as pd

import nss
from nss.deploy.cost_table import measure_cost_table
from nss.deploy.profile import interleaved_times
from nss.evaluation.evaluate import finest_per_task
from nss.evaluation.metrics import delta_mtl
from nss.model.costs import reference_network
from nss.runs.folder import RunFolder
from nss.scale_search.latency import CostTable
from search_spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--space", default="most_net_plus")
    parser.add_argument("--network", default="cpu")
    parser.add_argument("--size", default="256x256", help="the deployment size latency is measured at")
    parser.add_argument("--fraction", default="0.8", help="target ÷ the supernet's latency; several, comma-"
                                                           "separated, share the pretraining and the unconstrained run")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--retrain-steps", type=int, default=600)
    args = parser.parse_args()
    out, (height, width) = Path(args.out), (int(v) for v in args.size.split("x"))
    out.mkdir(parents=True, exist_ok=True)
    space = get_space(args.space)

    table = measure_cost_table(space, size=args.network, height=height, width=width, backend="onnxruntime",
                               iters=args.iters)
    (out / "latency_table.json").write_text(json.dumps(table, indent=2))
    predicting = CostTable.from_dict(table, space, "the table")
    full = table["full"]["latency_ms"]
    targets = {f"target-{f}": float(f) * full for f in args.fraction.split(",")}
    base = nss.resolve_config(space=args.space, network=args.network, device="cpu",
                              retrain_steps=args.retrain_steps, val_every=args.retrain_steps)
    pretrained = nss.pretrain(base, out=out / "pretrain", force=True)
    searches = {"unconstrained": nss.search(replace(base, from_run=str(pretrained)), out=out / "search", force=True)}
    for name, target in targets.items():
        constrained = replace(base, from_run=str(pretrained), latency_table=str(out / "latency_table.json"),
                              latency_target=target)
        searches[name] = nss.search(constrained, out=out / f"search-{name}", force=True)

    # the supernet is timed again beside the derived networks: a CPU that has sped up or slowed down since the
    # table was measured moves them all alike, and the ratio to the target is taken at today's speed
    networks = {"supernet": reference_network(space, args.network)}
    networks.update({name: reference_network(result.architecture, args.network) for name, result in searches.items()})
    times = interleaved_times(networks, height, width, backend="onnxruntime", iters=args.iters)
    measured = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    drift = measured["supernet"] / full

    rows = []
    for name, result in searches.items():
        run = nss.retrain(replace(base, architecture=str(result.run_dir / RunFolder.ARCHITECTURE)),
                          out=out / f"retrain-{name}", force=True)
        evaluation = nss.evaluate_run(run, "val")
        rows.append({"search": name, "target_ms": targets.get(name),
                     "heads": " ".join(result.architecture.searchable_kept) or "-",
                     "predicted_ms": predicting.predicted(result.architecture), "measured_ms": measured[name],
                     "delta_mtl": delta_mtl(finest_per_task(evaluation), finest_per_task(evaluation, "baseline"),
                                            space.tasks)})
    results = pd.DataFrame(rows)
    results["measured_over_target"] = results["measured_ms"] / (results["target_ms"] * drift)
    results.to_csv(out / "latency_target.csv", index=False)

    print(f"{args.network} network, {height}x{width}, ONNX Runtime CPU: supernet {full:.2f} ms in the table, "
          f"{measured['supernet']:.2f} ms beside the derived networks (targets scaled by {drift:.3f})")
    unconstrained = results.iloc[0]
    for row in results.itertuples():
        goal = f", {row.measured_over_target:.2f} × the {row.target_ms:.2f} ms target" if pd.notna(row.target_ms) \
            else ""
        print(f"{row.search:>13}: {row.heads}; predicted {row.predicted_ms:.2f} ms, measured "
              f"{row.measured_ms:.2f} ms{goal}; validation Δ_MTL {row.delta_mtl:+.1f}% after {args.retrain_steps} "
              "retraining steps")
    for row in results.iloc[1:].itertuples():
        print(f"{row.search}: measured ÷ target {row.measured_over_target:.2f} (target 0.9-1.05); Δ_MTL "
              f"constrained − unconstrained {row.delta_mtl - unconstrained.delta_mtl:+.1f} points")


if __name__ == "__main__":
    main()
