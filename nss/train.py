"""The training loop shared by pretraining, search and retraining: batches, optimisation, logs, validation,
checkpoints and resume."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from search_spaces import Architecture, SearchSpace, get_size, get_space
from supernet import MostNet, build_network, required_divisor

from .balancing import Balancer, make as make_balancer
from .config import RunConfig
from .conflicts import backward_per_task, conflict_rows
from .data import SyntheticSpec, open_dataset
from .data.augment import augment
from .errors import DataError, NonFiniteLossError, NSSError
from .evaluate import evaluate, finest_per_task
from .gates import Gates
from .latency import CostTable
from .metrics import delta_mtl
from .objective import head_losses
from .runfolder import PHASES, RunFolder
from .steps import StepResult, batch_to, search_loss, supervised_loss


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NSSError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    return torch.device(name)


def resolve_network_size(name: str, device: torch.device) -> str:
    """A width/depth preset name; "auto" is the CPU-sized network on a CPU and the paper's on a GPU."""
    return name if name != "auto" else ("cpu" if device.type == "cpu" else "paper")


def trained_architecture(config: RunConfig) -> Architecture:
    """The network a configuration trains: its architecture (retraining), else its space's supernet."""
    return Architecture.load(config.architecture) if config.architecture else Architecture.full(get_space(config.space))


@dataclass
class Session:
    """What a run is made of, built once from its configuration."""

    config: RunConfig
    space: SearchSpace
    device: torch.device
    data: Dataset
    network: MostNet
    gates: Gates
    validation: Dataset | None = None  # opened at the start when the run needs it: an error comes before any work
    latency: CostTable | None = None

    @classmethod
    def open(cls, config: RunConfig, validation: bool = False) -> "Session":
        device = resolve_device(config.device)
        size_name = resolve_network_size(config.network, device)
        architecture = trained_architecture(config)
        space = architecture.space
        data = open_dataset(config.data, "train", cls.synthetic_spec(config))
        missing = [t.name for t in space.tasks if t.kind not in data.kinds]
        if missing:
            raise DataError(f"{config.data}: no labels for task(s) {missing} of space {space.name!r}")
        unlabelled = {t: why for t, why in data.unlabelled_tasks().items() if t in {task.name for task in space.tasks}}
        if unlabelled:  # a declared task with nothing to learn from: refuse, do not train it silently on nothing
            task, why = next(iter(unlabelled.items()))
            raise DataError(f"{config.data}: task {task!r} of the training split has {why}")
        if config.data != "synthetic":
            h, w = data.frame_size
            divisor = required_divisor(space.scales)
            if h % divisor or w % divisor:
                raise DataError(f"{config.data}: frames are {h}x{w}; with {space.scales} scales both sides must be "
                                f"multiples of {divisor}")
            config = replace(config, frame_size=f"{h}x{w}")
        if len(data) < config.batch_size:
            raise DataError(f"{config.data}: {len(data)} training pairs, fewer than the batch size {config.batch_size}")
        validation_data = open_dataset(config.data, "val", cls.synthetic_spec(config)) if validation else None
        if validation_data is not None:
            if len(validation_data) < config.batch_size:
                raise DataError(f"{config.data}: {len(validation_data)} validation pairs, fewer than the batch size "
                                f"{config.batch_size}")
            unscored = [t.name for t in space.tasks if t.name in validation_data.unlabelled_tasks()]
            if unscored:  # Δ_MTL (best.pt, bi-level's α steps) would leave the task out, or compare unlike scores
                raise DataError(f"{config.data}: the validation split has no labels for {', '.join(unscored)}; "
                                "validation scores every task")
        latency = CostTable.load(config.latency_table, space) if config.latency_table else None
        if latency is not None and config.latency_target is not None and config.latency_target < latency.base:
            raise NSSError(f"--latency-target: {config.latency_target:g} ms cannot be met: the fixed heads alone take "
                           f"{latency.base:.2f} ms on the table's {latency.backend}")
        torch.manual_seed(config.seed)
        network = build_network(architecture, get_size(size_name)).to(device)
        gates = Gates(space.searchable, config.relaxation).to(device)
        per_epoch = len(data) // config.batch_size
        lr = config.lr if config.lr is not None else (1e-4 if size_name == "paper" else 1e-3)
        config = replace(config, network=size_name, device=str(device), lr=lr,
                         pretrain_steps=_steps(config.pretrain_steps, config.pretrain_epochs, per_epoch),
                         search_steps=_steps(config.search_steps, config.search_epochs, per_epoch),
                         retrain_steps=_steps(config.retrain_steps, config.retrain_epochs, per_epoch))
        return cls(config, space, device, data, network, gates, validation_data, latency)

    @staticmethod
    def synthetic_spec(config: RunConfig) -> SyntheticSpec:
        height, width = config.frame_height_width
        return SyntheticSpec(config.clips, config.frames, height, width, config.synthetic_seed,
                             eval_clips=config.eval_clips)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data) // self.config.batch_size

    def total_steps(self, phase: str) -> int:
        return getattr(self.config, f"{phase}_steps")


def _steps(steps: int, epochs: float | None, steps_per_epoch: int) -> int:
    return steps if epochs is None else max(1, math.ceil(epochs * steps_per_epoch))


def batch_indices(seed: int, stream: int, step: int, size: int, batch: int) -> list[int]:
    """The samples of a step: a fresh permutation per epoch, a pure function of (seed, stream, step); a stream is
    a phase's training batches or the bi-level search's validation batches."""
    per_epoch = size // batch
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, stream, epoch]).permutation(size)
    return order[position * batch:(position + 1) * batch].tolist()


VALIDATION_STREAM = len(PHASES)  # the bi-level search's α batches


def require_same_network(state: dict, network: MostNet, source: str | Path) -> None:
    """A checkpoint's weights only load into the network (architecture) they were trained for."""
    if state.get("architecture_id") != network.architecture.id:
        raise NSSError(f"{source}: checkpoint was made for another network (architecture "
                       f"{state.get('architecture_id')}, this one is {network.architecture.id})")


class Trainer:
    def __init__(self, session: Session, run: RunFolder, progress: bool = True):
        self.session, self.run, self.progress = session, run, progress
        self.config = session.config
        self.best_score = -math.inf
        self.batches_seen = {"train": 0, "val": 0}

    # -- per phase: optimisers and task weights ------------------------------------------------------------
    def _prepare(self, phase: str) -> tuple[dict, dict, Balancer]:
        c, total, session = self.config, self.session.total_steps(phase), self.session
        # pretraining supervises every head with the space's fixed λ (LS); retraining balances as asked
        balancer = make_balancer(c.balancing if phase == "retrain" else "ls", session.space.tasks).to(session.device)
        theta = torch.optim.Adam(list(session.network.parameters()) + list(balancer.parameters()), lr=c.lr)
        optimizers = {"theta": theta}
        schedulers = {"theta": torch.optim.lr_scheduler.CosineAnnealingLR(theta, T_max=max(total, 1), eta_min=c.lr_min)}
        if phase == "search":
            optimizers["alpha"] = torch.optim.Adam(session.gates.parameters(), lr=c.gate_lr)
        return optimizers, schedulers, balancer

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _save(self, phase: str, step: int, elapsed: float, optimizers: dict, schedulers: dict,
              balancer: Balancer) -> None:
        self.run.flush()
        self.run.save_checkpoint("last.pt", {
            "phase": phase, "step": step, "elapsed": elapsed, "best_score": self.best_score,
            "architecture_id": self.session.network.architecture.id,
            "network": self.session.network.state_dict(), "gates": self.session.gates.state_dict(),
            "balancer": balancer.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "table_rows": {name: table.rows_written for name, table in self.run.tables.items()},
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.session.device.type == "cuda" else [],
        })
        self.last_saved = step

    def _restore(self, state: dict, optimizers: dict, schedulers: dict, balancer: Balancer) -> tuple[int, float]:
        require_same_network(state, self.session.network, self.run.checkpoints / "last.pt")
        self.session.network.load_state_dict(state["network"])
        self.session.gates.load_state_dict(state["gates"])
        balancer.load_state_dict(state["balancer"])
        for key, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        for key, scheduler in schedulers.items():
            scheduler.load_state_dict(state["schedulers"][key])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.best_score = state["best_score"]
        return state["step"], state["elapsed"]

    # -- the loop ------------------------------------------------------------------------------------------
    def run_phases(self, phases: tuple[str, ...], resume: dict | None = None) -> None:
        """Run `phases` in order; `resume` is a checkpoint to continue from (it names its phase and step)."""
        for phase in phases:
            if resume is not None and PHASES.index(resume["phase"]) > PHASES.index(phase):
                continue  # finished before the interruption
            optimizers, schedulers, balancer = self._prepare(phase)
            start, elapsed = 0, 0.0
            if resume is not None and resume["phase"] == phase:
                start, elapsed = self._restore(resume, optimizers, schedulers, balancer)
                for name, table in self.run.tables.items():
                    table.cut_back(resume.get("table_rows", {}).get(name), phase, start)
            else:
                torch.manual_seed(self.config.seed * len(PHASES) + PHASES.index(phase))
                self._save(phase, 0, 0.0, optimizers, schedulers, balancer)  # resumable from its very start
            self.last_saved = start
            self._run_phase(phase, start, elapsed, optimizers, schedulers, balancer)
            if phase == "pretrain":
                self.run.save_checkpoint("pretrained.pt", {
                    "architecture_id": self.session.network.architecture.id,
                    "network": self.session.network.state_dict()})
            resume = None

    def _loader(self, phase: str, start: int, data: Dataset | None = None, stream: int | None = None) -> DataLoader:
        """The batches of steps start+1 … of a phase, from the training data or (bi-level α steps) `data`."""
        c, data = self.config, data if data is not None else self.session.data
        stream = PHASES.index(phase) if stream is None else stream
        steps = [batch_indices(c.seed, stream, step, len(data), c.batch_size)
                 for step in range(start, self.session.total_steps(phase))]
        # Its own generator: a DataLoader draws a seed when iterated, which must not move the global RNG that
        # the Gumbel noise and dropout use (a resumed run would otherwise diverge from an uninterrupted one).
        return DataLoader(data, batch_sampler=steps, num_workers=c.workers,
                          generator=torch.Generator().manual_seed(c.seed))

    def _step(self, phase: str, step: int, batch: dict, balancer: Balancer) -> StepResult:
        s, c = self.session, self.config
        if phase == "search":
            return search_loss(s.space, s.network, s.gates, batch, tau=c.tau, hard=c.hard, sparsity=c.sparsity,
                               sparsity_kind=c.sparsity_kind, latency=s.latency, latency_weight=c.latency_weight,
                               latency_target=c.latency_target, latency_target_weight=c.latency_target_weight)
        if phase == "retrain" and c.augment:
            batch = augment(batch, c.seed, step)
        return supervised_loss(s.space, s.network, batch, balancer)

    def _run_phase(self, phase: str, start: int, elapsed: float, optimizers: dict, schedulers: dict,
                   balancer: Balancer) -> None:
        total, session, c = self.session.total_steps(phase), self.session, self.config
        session.network.train()
        bilevel = phase == "search" and c.bilevel
        # bi-level: the α step of step k is taken on validation batch k first, then θ's on training batch k
        alpha_batches = iter(self._loader(phase, start, session.validation, VALIDATION_STREAM)) if bilevel else None
        updated = {k: o for k, o in optimizers.items() if not (bilevel and k == "alpha")}
        began = time.perf_counter() - elapsed
        bar = tqdm(total=total, initial=start, desc=phase, unit="step", disable=not self.progress, leave=True)
        for step, batch in enumerate(self._loader(phase, start), start=start + 1):
            alpha_loss = self._alpha_step(phase, step, next(alpha_batches), optimizers, balancer) if bilevel else None
            batch = batch_to(batch, session.device)
            self.batches_seen["train"] += 1
            result = self._step(phase, step, batch, balancer)
            self._require_finite(phase, step, result)
            for optimizer in optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            if c.conflicts_every and step % c.conflicts_every == 0:
                self._backward_measuring_conflicts(phase, step, result, balancer)
            else:
                result.loss.backward()
            for optimizer in updated.values():
                optimizer.step()
            for scheduler in schedulers.values():
                scheduler.step()
            if step % session.steps_per_epoch == 0:
                balancer.end_epoch()
            bar.update()
            elapsed = time.perf_counter() - began
            if step % c.log_every == 0 or step == total:
                self._log(phase, step, elapsed, result, batch, optimizers, alpha_loss)
                bar.set_postfix(loss=f"{result.loss.item():.4f}")
            if phase == "retrain" and (step % c.val_every == 0 or step == total):
                self._validate(phase, step)
            if step % c.checkpoint_every == 0 or step == total:
                self._save(phase, step, elapsed, optimizers, schedulers, balancer)
        bar.close()

    def _alpha_step(self, phase: str, step: int, batch: dict, optimizers: dict, balancer: Balancer) -> float:
        """First-order DARTS: one step of the gate logits on a validation batch, the weights held."""
        batch = batch_to(batch, self.session.device)
        self.batches_seen["val"] += 1
        result = self._step(phase, step, batch, balancer)
        self._require_finite(phase, step, result)
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        optimizers["alpha"].step()
        return result.loss.item()

    def _backward_measuring_conflicts(self, phase: str, step: int, result: StepResult, balancer: Balancer) -> None:
        """The update's gradients, one task at a time; their pairwise cosines go to conflicts.csv."""
        s = self.session
        terms = {task: result.weights[task] * value for task, value in result.task_losses.items()}
        named = (list(s.network.named_parameters()) + [(f"gates.{n}", p) for n, p in s.gates.named_parameters()]
                 + [(f"balancer.{n}", p) for n, p in balancer.named_parameters()])
        per_task = backward_per_task(terms, result.extra, named)
        key = self._row_key(phase, step)
        network_names = {n for n, _ in s.network.named_parameters()}
        self.run.tables["conflicts"].extend([dict(key, **row) for row in conflict_rows(per_task, network_names)])

    def _require_finite(self, phase: str, step: int, result: StepResult) -> None:
        values = dict(result.head_losses or result.task_losses)
        if result.sparsity is not None:
            values["sparsity"] = result.sparsity
        for name, value in values.items():
            if not torch.isfinite(value):
                self.run.flush()
                raise NonFiniteLossError(
                    f"{phase} step {step}: the loss of {name} is {value.item()}; stopped. The last good checkpoint "
                    f"({self.run.checkpoints / 'last.pt'}, {phase} step {self.last_saved}) is left as it was")

    def _row_key(self, phase: str, step: int) -> dict:
        """The columns every logged row starts with."""
        return {"phase": phase, "epoch": (step - 1) // self.session.steps_per_epoch, "step": step}

    # -- validation ----------------------------------------------------------------------------------------
    def _validate(self, phase: str, step: int) -> None:
        """Metrics on the validation split; best.pt keeps the weights with the best multi-task score Δ_MTL
        (against the trivial predictor, on each task's finest head)."""
        s, c = self.session, self.config
        table = evaluate(s.network, s.space, s.validation, s.device, c.batch_size)
        score = delta_mtl(finest_per_task(table), finest_per_task(table, "baseline"), s.space.tasks)
        key = self._row_key(phase, step)
        rows = table[table["model"] == "network"]
        self.run.tables["validation"].extend(
            [dict(key, head=r.head, metric=r.metric, value=r.value) for r in rows.itertuples()]
            + [dict(key, head="all", metric="delta_mtl", value=score)])
        if score > self.best_score:
            self.best_score = score
            self.run.save_checkpoint("best.pt", {"architecture_id": s.network.architecture.id, "step": step,
                                                 "delta_mtl": score, "network": s.network.state_dict()})

    # -- logs ----------------------------------------------------------------------------------------------
    def _log(self, phase: str, step: int, elapsed: float, result: StepResult, batch: dict, optimizers: dict,
             alpha_loss: float | None = None) -> None:
        s = self.session
        key = self._row_key(phase, step)
        row = dict(key, loss=result.loss.item())
        row.update({f"loss/{name}": v.item() for name, v in result.task_losses.items()})
        per_head = result.head_losses
        if per_head is None:  # search: every head on its own too, as in pretraining, for scale-gain plots
            with torch.no_grad():
                per_head = head_losses(s.space, result.full, batch)
        row.update({f"loss/{h}": v.item() for h, v in per_head.items()})
        row.update({f"lambda/{name}": float(w.detach()) for name, w in result.weights.items()})
        row["lr"] = optimizers["theta"].param_groups[0]["lr"]
        if phase == "search":
            row["gate_lr"] = optimizers["alpha"].param_groups[0]["lr"]
            row["sparsity"] = result.sparsity.item()
            if alpha_loss is not None:
                row["alpha_loss"] = alpha_loss  # the bi-level α step's objective, on its validation batch
        row["wall_time"] = elapsed
        self.run.tables["metrics"].extend([row])
        self.run.tables["deltas"].extend([dict(key, head=h, value=d.detach().abs().mean().item())
                                          for h, d in result.deltas.items()])
        if phase == "search":
            probs, logits = s.gates.probabilities(), s.gates.on_logits()
            extra = {} if result.expected_latency is None else {"expected_ms": result.expected_latency.item()}
            self.run.tables["gates"].extend([dict(key, tau=self.config.tau, relaxation=self.config.relaxation,
                                                  head=h, logit=logits[h], prob=probs[h],
                                                  alpha=result.alphas[h].item(), **extra) for h in s.gates.heads])
