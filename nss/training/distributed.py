"""Data-parallel training: one run over N processes (ranks, launched by torchrun or `--nproc`), each on its share of
every global batch, with what keeps them computing what one process with the whole batch computes:

- the batch: step k's global batch (nss.training.trainer.batch_indices, a permutation per epoch, as one process
  draws it) split in N contiguous shares, one per rank: no two ranks see the same sample, every epoch is reshuffled
  (what a DistributedSampler with set_epoch gives), and the samples of a step do not depend on N, so a run resumed
  on another number of ranks goes on with the same data;
- the gradients of every trained parameter (weights, gate logits, balancer parameters) averaged over the ranks in
  one all-reduce per update, as DDP does;
- batch norm over the global batch (`GlobalBatchNorm`): one process normalises its whole batch, so N ranks must too;
- one architecture sample per step: the global RNG that draws the Gumbel noise is seeded alike on every rank and
  moves alike, and `require_equal` checks the gates at every checkpoint;
- logged losses, the balancers' inputs and validation metrics are the global batch's (`mean`; the metric sums
  added over the ranks by nss.evaluation.evaluate.MetricSums).

A process started without torchrun is the world of one, where all of this costs nothing.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

from ..errors import NSSError

T = TypeVar("T")
TIMEOUT_S = float(os.environ.get("NSS_DIST_TIMEOUT", 300))  # a collective waiting longer than this is an error


def require_even_split(batch_size: int, ranks: int, named: str) -> None:
    """The global batch must split evenly over the ranks (`named`, as the error calls them)."""
    if batch_size % ranks:
        raise NSSError(f"--batch-size {batch_size}: the global batch must split evenly over {named}")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "World":
        """The world torchrun (or `--nproc`) started this process in: RANK, WORLD_SIZE, LOCAL_RANK."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def primary(self) -> bool:
        """Rank 0: the one that writes the run folder and speaks for the run."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """A rank's own GPU (cuda:LOCAL_RANK) where the run is on CUDA; the CPU is shared."""
        if device.type != "cuda" or not self.parallel:
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise NSSError(f"rank {self.rank}: local rank {self.local_rank} has no GPU of its own (this machine has "
                           f"{torch.cuda.device_count()}); start at most that many processes per machine")
        return torch.device("cuda", self.local_rank)

    def join(self, device: torch.device) -> None:
        """Join the process group (NCCL on GPUs, gloo on CPUs), once per process."""
        if not self.parallel or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=self.rank, world_size=self.size,
                                timeout=datetime.timedelta(seconds=TIMEOUT_S))

    def share(self, indices: Sequence[int]) -> list[int]:
        """This rank's contiguous share of a global batch's sample indices."""
        return list(indices[self.rows(len(indices))])

    def rows(self, global_batch: int) -> slice:
        """Which rows of the global batch this rank's share is (per-sample randomness is drawn for the whole batch
        and sliced, so that it does not depend on the number of ranks)."""
        per_rank = global_batch // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def average_gradients(self, parameters: Sequence[nn.Parameter]) -> None:
        """Every rank's `.grad` replaced by the mean over the ranks, in one all-reduce of them all flattened."""
        if not self.parallel:
            return
        for p in parameters:  # a parameter this rank's share did not reach: zeros, so every rank's vector lines up
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in parameters]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scalars averaged over the ranks (the global batch's, for equal shares), detached."""
        if not self.parallel or not values:
            return {k: v.detach() for k, v in values.items()}
        # float64: an fp64 run's logged losses and balancer inputs keep their digits (a few scalars: no cost)
        stacked = torch.stack([v.detach().double().reshape(()) for v in values.values()])
        dist.all_reduce(stacked)
        return dict(zip(values, (stacked / self.size).unbind()))

    def globally(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses whose value is the global batch's and whose gradient is this rank's own (averaged with the
        others' afterwards): what a balancer that reads loss values (ATB, DWA) must see."""
        if not self.parallel:
            return losses
        means = self.mean(losses)
        return {k: v + (means[k].to(v) - v.detach()) for k, v in losses.items()}

    def gather(self, value: T) -> list[T]:
        """Every rank's `value` (any picklable object), in rank order."""
        if not self.parallel:
            return [value]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def from_primary(self, value: T) -> T:
        """Rank 0's `value` on every rank."""
        if not self.parallel:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, make: Any) -> Any:
        """Rank 0 calls `make()` and every rank gets its result, or raises the NSSError it raised: the other ranks
        neither wait for a rank that stopped nor repeat work that writes."""
        if not self.parallel:
            return make()
        outcome: tuple[str, Any]
        if self.primary:
            try:
                outcome = ("ok", make())
            except NSSError as err:
                outcome = ("error", str(err))
            except Exception as err:
                outcome = ("error", f"rank 0 failed: {type(err).__name__}: {err}")
                self.from_primary(outcome)
                raise
        outcome = self.from_primary(outcome if self.primary else None)
        if outcome[0] == "error":
            raise NSSError(outcome[1])
        return outcome[1]

    def require_equal(self, states: dict[str, dict[str, torch.Tensor]], where: str) -> None:
        """Every rank holds the same `states` (module name → state dict), or a clear error naming the rank that
        left lockstep: a run whose ranks disagree would save one rank's gates as the run's."""
        if not self.parallel:
            return
        mine = {f"{name}.{k}": v.detach().double().cpu() for name, state in states.items() for k, v in state.items()
                if torch.is_tensor(v) and v.is_floating_point()}
        reference = self.from_primary(mine)
        worst = {name: (reference[name] - value).abs().max().item() for name, value in mine.items() if value.numel()}
        differs = {name: d for name, d in worst.items() if d > 0}
        verdicts = self.gather(differs)
        for rank, bad in enumerate(verdicts):
            if bad:
                name, diff = max(bad.items(), key=lambda kv: kv[1])
                raise NSSError(f"{where}: rank {rank}'s {name} differs from rank 0's by {diff:.3g}; the ranks no "
                               "longer compute one run (a different torch, data or code on one of them?)")

    def close(self) -> None:
        if self.parallel and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = World()


class _GlobalBatchNormFunction(torch.autograd.Function):
    """Batch norm's training forward and backward over the global batch, in one collective each way (a layer
    makes two per step, where differentiating through summed statistics would make four).

    Forward: every rank's per-channel (mean, M2 about its own mean) gathered and combined by Chan et al.'s
    formula, M2 = Σ M2_r + n Σ (mean_r − mean)² for equal shares of n values: as stable as a two-pass variance
    (E[x²] − E[x]² would lose digits to cancellation). Backward: with x̂ = (x − mean)/σ and dy this rank's output
    gradient, dx = γ/σ (dy − Σdy/N − x̂ Σ(dy·x̂)/N), the two sums over all N values of the global batch in one
    all-reduce; γ's and β's gradients are this rank's own sums (averaged with the other parameters' after)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        ranks = dist.get_world_size()
        n = x.numel() // x.shape[1]  # values per channel in this rank's share, alike on every rank
        mean_r = x.mean((0, 2, 3))
        deviation = x - mean_r[None, :, None, None]
        local = torch.stack([mean_r, (deviation * deviation).sum((0, 2, 3))])  # (2, C)
        gathered = [torch.empty_like(local) for _ in range(ranks)]
        dist.all_gather(gathered, local)
        means, m2s = torch.stack(gathered).unbind(1)  # each (ranks, C)
        mean = means.mean(0)
        var = (m2s.sum(0) + n * ((means - mean) ** 2).sum(0)) / (n * ranks)  # biased, as normalisation uses
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, mean, invstd, weight)
        ctx.count = n * ranks
        ctx.mark_non_differentiable(mean, var)
        out = (x - mean[None, :, None, None]) * (invstd * weight)[None, :, None, None] + bias[None, :, None, None]
        return out, mean, var

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _mean: torch.Tensor, _var: torch.Tensor):
        x, mean, invstd, weight = ctx.saved_tensors
        normalised = (x - mean[None, :, None, None]) * invstd[None, :, None, None]
        local = torch.stack([grad.sum((0, 2, 3)), (grad * normalised).sum((0, 2, 3))])  # (2, C): dβ, dγ here
        total = local.clone()
        dist.all_reduce(total)
        total /= ctx.count
        dx = (weight * invstd)[None, :, None, None] * (
            grad - total[0][None, :, None, None] - normalised * total[1][None, :, None, None])
        return dx, local[1], local[0], None


class GlobalBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics are the global batch's, so N ranks normalise as one process with the
    whole batch does (torch's SyncBatchNorm does this on GPUs only). Evaluation uses the running statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        # statistics in the parameters' precision (an autocast bf16 activation is widened, as batch norm does)
        out, mean, var = _GlobalBatchNormFunction.apply(x.to(self.weight.dtype), self.weight, self.bias, self.eps)
        count = x.numel() / x.shape[1] * dist.get_world_size()
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / (count - 1), self.momentum)
        return out


def global_batch_norm(network: nn.Module, world: World) -> nn.Module:
    """`network` with every BatchNorm2d normalising over the global batch (in place; same parameters and buffers,
    so checkpoints are the same either way). torch's own SyncBatchNorm on GPUs, ours on CPUs."""
    if not world.parallel:
        return network
    on_gpu = next(network.parameters()).device.type == "cuda"
    if on_gpu:
        return nn.SyncBatchNorm.convert_sync_batchnorm(network)
    for module in network.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GlobalBatchNorm
    return network

