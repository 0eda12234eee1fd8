"""Cost of measuring gradient conflicts: a measured step ÷ a plain step (target ≤ T, the number of tasks) and the
amortized overhead at the default --conflicts-every K (target ≤ 15%), in one run, for pretraining and search steps.

    python benchmarks/conflict_overhead.py [--network cpu] [--frame-size 64x64] [--batch-size 4] [--iters 40]
"""
from __future__ import annotations

import torch

from nss.config import RunConfig
from nss.model.step import supervised_loss
from nss.training.balancing import make as make_balancer
from nss.training.conflicts import backward_per_task, conflict_rows

from common import median_ms, set_up, step_benchmark_parser


def main() -> None:
    args = step_benchmark_parser(__doc__.splitlines()[0]).parse_args()
    s = set_up(args)
    optimizer = torch.optim.Adam(list(s.network.parameters()) + list(s.objective.gates.parameters()), lr=1e-4)
    balancer = make_balancer("ls", s.space.tasks)
    named = list(s.network.named_parameters()) + [("gates.logits", s.objective.gates.logits)]
    network_names = {n for n, _ in s.network.named_parameters()}
    losses = {
        "pretrain": lambda: supervised_loss(s.space, s.network, s.batch, balancer),
        "search": lambda: s.objective.loss(s.network, s.batch),
    }

    def plain(phase: str) -> None:
        optimizer.zero_grad(set_to_none=True)
        losses[phase]().loss.backward()
        optimizer.step()

    def measured(phase: str) -> None:
        optimizer.zero_grad(set_to_none=True)
        result = losses[phase]()
        terms = {t: result.weights[t] * v for t, v in result.task_losses.items()}
        conflict_rows(backward_per_task(terms, result.extra, named), network_names)
        optimizer.step()

    every, tasks = RunConfig().conflicts_every, len(s.space.tasks)
    print(f"{s.description}; {tasks} tasks, default K = {every}")
    for phase in losses:
        ms = median_ms({"plain": lambda: plain(phase), "measured": lambda: measured(phase)}, args.iters, s.device)
        ratio = ms["measured"] / ms["plain"]
        print(f"{phase:9s} plain {ms['plain']:7.1f} ms, measured {ms['measured']:7.1f} ms: ratio {ratio:.2f} "
              f"(target <= {tasks}); amortized overhead at K={every}: {100 * (ratio - 1) / every:.1f}% "
              f"(target <= 15%)")


if __name__ == "__main__":
    main()
