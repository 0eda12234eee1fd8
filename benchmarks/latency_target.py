"""Does a latency target hold? A search with --latency-target at 80% of the supernet's measured latency on ONNX
Runtime (CPU), against the unconstrained NSS search from the same pretraining, both derived networks retrained
with the same budget, in one run.

Reports the constrained network's measured latency ÷ the target (target: 0.9–1.05), the cost table's prediction
of it, and the validation Δ_MTL (against the trivial predictor) of both retrained networks.

    python benchmarks/latency_target.py --out runs/latency-target [--size 256x256] [--retrain-steps 600]
"""
from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch

import nss
from nss.evaluate import finest_per_task
from nss.latency import CostTable, measure_cost_table
from nss.metrics import delta_mtl
from nss.profile import interleaved_times
from search_spaces import get_size, get_space
from supernet import build_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--space", default="most_net_plus")
    parser.add_argument("--network", default="cpu")
    parser.add_argument("--size", default="256x256", help="the deployment size latency is measured at")
    parser.add_argument("--fraction", type=float, default=0.8, help="target ÷ the supernet's latency")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--retrain-steps", type=int, default=600)
    args = parser.parse_args()
    out, (height, width) = Path(args.out), (int(v) for v in args.size.split("x"))
    out.mkdir(parents=True, exist_ok=True)
    space = get_space(args.space)

    table = measure_cost_table(space, size=args.network, height=height, width=width, backend="onnxruntime",
                               iters=args.iters)
    (out / "latency_table.json").write_text(json.dumps(table, indent=2))
    target = args.fraction * table["full"]["latency_ms"]
    base = nss.resolve_config(space=args.space, network=args.network, device="cpu",
                              retrain_steps=args.retrain_steps, val_every=args.retrain_steps)
    pretrained = nss.pretrain(base, out=out / "pretrain", force=True)
    searches = {
        "unconstrained": nss.search(replace(base, from_run=str(pretrained)), out=out / "search", force=True),
        "target": nss.search(replace(base, from_run=str(pretrained), latency_table=str(out / "latency_table.json"),
                                     latency_target=target), out=out / "search-target", force=True)}

    networks = {}
    for name, result in searches.items():
        torch.manual_seed(0)
        networks[name] = build_network(result.architecture, get_size(args.network))
    times = interleaved_times(networks, height, width, backend="onnxruntime", iters=args.iters)
    measured = {name: 1e3 * statistics.median(t) for name, t in times.items()}

    scores = {}
    for name, result in searches.items():
        run = nss.retrain(replace(base, architecture=str(result.run_dir / "architecture.json")),
                          out=out / f"retrain-{name}", force=True)
        evaluation = nss.evaluate_run(run, "val")
        scores[name] = delta_mtl(finest_per_task(evaluation), finest_per_task(evaluation, "baseline"), space.tasks)

    full = table["full"]["latency_ms"]
    print(f"{args.network} network, {height}x{width}, ONNX Runtime CPU: supernet {full:.2f} ms, target "
          f"{args.fraction:.0%} = {target:.2f} ms")
    for name, result in searches.items():
        print(f"{name:>13}: {', '.join(h for h in result.architecture.heads if h not in space.fixed) or '-'}; "
              f"predicted {CostTable.from_dict(table, space, 'the table').predicted(result.architecture):.2f} ms, "
              f"measured {measured[name]:.2f} ms "
              f"({measured[name] / target:.2f} × target); validation Δ_MTL {scores[name]:+.1f}% after "
              f"{args.retrain_steps} retraining steps")
    print(f"measured ÷ target: {measured['target'] / target:.2f} (target 0.9-1.05); Δ_MTL constrained − "
          f"unconstrained: {scores['target'] - scores['unconstrained']:+.1f} points")


if __name__ == "__main__":
    main()
