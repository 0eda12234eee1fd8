"""Search-step cost ÷ plain supernet training-step cost, on the same batch, measured in one run.

A plain step is the pretraining step (every head supervised); a search step adds the Gumbel-softmax gates, the
gated composite of refinements and the sparsity penalty. Both include backward and optimizer steps. The two are
interleaved so that machine noise hits both alike; medians are reported. Target: ratio ≤ 1.10.

    python benchmarks/search_overhead.py [--network cpu] [--frame-size 64x64] [--batch-size 4] [--iters 40]
"""
from __future__ import annotations

import torch

from nss.model.step import supervised_loss
from nss.training.balancing import make as make_balancer

from common import median_ms, set_up, step_benchmark_parser


def main() -> None:
    args = step_benchmark_parser(__doc__.splitlines()[0]).parse_args()
    s = set_up(args)
    theta = torch.optim.Adam(s.network.parameters(), lr=1e-4)
    alpha = torch.optim.Adam(s.objective.gates.parameters(), lr=1e-2)
    fixed_weights = make_balancer("ls", s.space.tasks)

    def plain() -> None:
        theta.zero_grad(set_to_none=True)
        supervised_loss(s.space, s.network, s.batch, fixed_weights).loss.backward()
        theta.step()

    def search() -> None:
        theta.zero_grad(set_to_none=True)
        alpha.zero_grad(set_to_none=True)
        s.objective.loss(s.network, s.batch).loss.backward()
        theta.step()
        alpha.step()

    ms = median_ms({"plain": plain, "search": search}, args.iters, s.device)
    print(s.description)
    print(f"plain supernet training step: {ms['plain']:.2f} ms (median)")
    print(f"search step:                  {ms['search']:.2f} ms (median)")
    print(f"search / plain ratio:         {ms['search'] / ms['plain']:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
