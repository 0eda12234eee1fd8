"""The phases of a training command. Each is built once from the run's session (and so its configuration) and
owns what it trains (optimisers, schedules, task weights), the loss of one step, the columns and tables it logs,
and the work that ends it. A command is a list of phases (nss.training.api.COMMANDS); the trainer runs them.

A phase's `stream` numbers its batches and seeds the global RNG at its start (`phase_seed`): a phase added later
takes a stream of its own (VALIDATION_STREAM is the bi-level search's gate batches).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Iterator, Protocol, Sequence

import numpy as np
import torch
import torch.nn as nn

from search_spaces import Architecture

from ..data.augment import augment
from ..deploy.cost_table import measured_on_table_backend
from ..errors import NSSError
from ..evaluation.evaluate import evaluate, finest_per_task
from ..evaluation.metrics import delta_mtl
from ..model.step import StepResult, supervised_loss
from ..runs.folder import RunFolder
from ..scale_search.derive import architecture_table, undecided_heads
from ..scale_search.objective import SearchObjective
from .balancing import make as make_balancer
from .distributed import World
from .selection import select_heads
from .session import Session

VALIDATION_STREAM = 3
log = logging.getLogger("nss")


def phase_seed(seed: int, stream: int) -> int:
    """The global RNG's seed at the start of a phase: seed·3 + stream for the first three streams (how every run
    has been seeded), a hash of both for later ones (seed·3 + stream would meet another seed's)."""
    return seed * 3 + stream if stream < 3 else int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


class Trainer(Protocol):
    """What a phase uses of the trainer that runs it (nss.training.trainer)."""

    run: RunFolder

    def batches(self, stream: int, start: int, steps: int, data: Any = None) -> Iterator[dict]: ...

    def descend(self, phase: "Phase", step: int, result: StepResult, optimizers: Sequence[str],
                measure: bool = False) -> None: ...

    def row_key(self, phase: "Phase", step: int) -> dict[str, Any]: ...

    def log(self, phase: "Phase", step: int, table: str, rows: list[dict[str, Any]]) -> None: ...


class Phase:
    """Every phase has a balancer and an optimiser "theta" of the weights, which it makes here: the trainer ends
    the balancer's epochs and logs theta's learning rate."""

    name: ClassVar[str]  # the `phase` column of every log row and of the checkpoint
    stream: ClassVar[int]

    def __init__(self, session: Session, steps: int, balancing: str):
        c = session.config
        self.session, self.steps, self.network = session, steps, session.network
        self.forward = session.forward  # the network as a training step calls it (compiled, mixed precision)
        self.balancer = make_balancer(balancing, session.space.tasks).to(session.device, session.dtype)
        self.task_weights = GlobalBalancer(self.balancer, session.world)
        # foreach: the same arithmetic as the per-tensor loop (bit for bit), in a few multi-tensor kernels instead of
        # ~10 ops for each of the 300 tensors; a third of Adam's time on the CPU (torch's default there is the loop)
        theta = torch.optim.Adam(list(self.network.parameters()) + list(self.balancer.parameters()), lr=c.lr,
                                 foreach=True)
        self.optimizers: dict[str, torch.optim.Optimizer] = {"theta": theta}
        self.schedulers = {"theta": torch.optim.lr_scheduler.CosineAnnealingLR(theta, T_max=max(steps, 1),
                                                                               eta_min=c.lr_min)}

    def modules(self) -> dict[str, nn.Module]:
        """What besides the network a checkpoint holds and a gradient-conflict measurement covers."""
        return {"balancer": self.balancer}

    def updated(self, step: int) -> tuple[str, ...]:
        """The optimisers a training batch's loss steps at `step`."""
        return tuple(self.optimizers)

    def folder_tag(self) -> str:
        """What the phase adds to a run folder's default name."""
        return ""

    def prepare(self, run: RunFolder) -> None:
        """Write what a new run folder needs for this phase."""

    def start(self, trainer: Trainer, step: int) -> None:
        """Called before the phase's first step, and when a run resumes it at `step`."""

    def loss(self, trainer: Trainer, step: int, batch: dict) -> StepResult:
        raise NotImplementedError

    def logged(self, result: StepResult) -> dict[str, float]:
        """The phase's own columns of metrics.csv."""
        return {}

    def tables(self, key: dict[str, Any], result: StepResult) -> dict[str, list[dict[str, Any]]]:
        """Rows of the phase's own logs (key: the phase, epoch and step columns)."""
        return {}

    def after_step(self, trainer: Trainer, step: int) -> None:
        """Called after every step, once it is logged and before it is checkpointed."""

    def finish(self, trainer: Trainer) -> None:
        """The work that ends the phase (also when a run resumes a phase that had ended)."""

    def state_dict(self) -> dict[str, Any]:
        return {**{name: module.state_dict() for name, module in self.modules().items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state[name])
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        for key, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][key])


class GlobalBalancer:
    """A balancer that weighs the tasks by the global batch's losses (each rank's gradients stay its own, averaged
    with the others' afterwards): what ATB and DWA see does not depend on the number of ranks."""

    def __init__(self, balancer: nn.Module, world: World):
        self.balancer, self.world = balancer, world

    def weights(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.balancer.weights(self.world.globally(losses))

    def regularizer(self) -> torch.Tensor | float:
        return self.balancer.regularizer()


class PretrainPhase(Phase):
    """Every head supervised with the space's fixed λ (LS); leaves checkpoints/pretrained.pt for searches."""

    name, stream = "pretrain", 0

    def __init__(self, session: Session):
        super().__init__(session, session.config.pretrain_steps, "ls")

    def loss(self, trainer: Trainer, step: int, batch: dict) -> StepResult:
        return supervised_loss(self.session.space, self.forward, batch, self.task_weights)

    def finish(self, trainer: Trainer) -> None:
        trainer.run.save_checkpoint(RunFolder.PRETRAINED, {"architecture_id": self.network.architecture.id,
                                                          "network": self.network.state_dict()})


@dataclass(frozen=True)
class SearchResult:
    run_dir: Path
    architecture: Architecture
    probabilities: dict[str, float]
    threshold: float = 0.5
    margin: float = 0.15
    undecided: tuple[str, ...] = ()  # heads whose gate ended within `margin` of `threshold`
    predicted_latency_ms: float | None = None  # with a latency table: base + Σ kept marginals
    measured_latency_ms: float | None = None  # … and measured on the table's backend where it runs here
    latency_note: str | None = None
    select: str = "gates"
    scores: dict[str, float] | None = None  # per searchable head, what `select` ranked it by (SCORE_MEANING)

    def table(self) -> str:
        """Task × scale, each head with its gate's on-probability, or its score where the heads were not
        selected by their gates."""
        return architecture_table(self.architecture, self.probabilities if self.select == "gates" else self.scores,
                                  self.undecided)

    def summary(self) -> dict[str, Any]:
        """What an experiment records of a search."""
        return {"architecture": self.architecture.id, "heads": list(self.architecture.heads),
                "probabilities": self.probabilities, "undecided": list(self.undecided), "select": self.select,
                "scores": self.scores}


class SearchPhase(Phase):
    """Gates and weights together under the NSS objective (nss.scale_search.objective); ends by deriving the
    architecture (architecture.json and `result`)."""

    name, stream = "search", 1

    def __init__(self, session: Session, steps: int | None = None):
        c = session.config
        super().__init__(session, c.search_steps if steps is None else steps, "ls")
        if c.gate_warmup >= self.steps:
            raise NSSError(f"--gate-warmup: {c.gate_warmup} steps leave none of the search's {self.steps} for the "
                           "gates; give fewer warm-up steps or a longer search")
        self.objective = SearchObjective.from_config(c, session.space)
        if self.objective.latency is not None:
            table = self.objective.latency.table
            if (table.network, tuple(table.input_size)) != (c.network, c.frame_height_width):
                log.warning("note: %s was measured on the %s network at %dx%d; this search trains the %s network at "
                            "%s: the latency terms are that network's costs", c.latency_table, table.network,
                            *table.input_size, c.network, "x".join(map(str, c.frame_height_width)))
        self.gates = self.objective.gates.to(session.device, session.dtype)
        self.optimizers["alpha"] = torch.optim.Adam(self.gates.parameters(), lr=c.gate_lr)
        if self.objective.bilevel or c.select != "gates":
            session.validation  # noqa: B018 - opened and checked now, before the run folder is made
        self.alpha_batches: Iterator[dict] | None = None
        self.alpha_loss: float | None = None
        self.result: SearchResult | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {"gates": self.gates, **super().modules()}

    def updated(self, step: int) -> tuple[str, ...]:
        gates_held = self.objective.bilevel or self.objective.random_heads or step <= self.session.config.gate_warmup
        return ("theta",) if gates_held else ("theta", "alpha")

    def folder_tag(self) -> str:
        return f"-tau{self.objective.tau:g}"

    def prepare(self, run: RunFolder) -> None:
        if self.objective.latency is not None:  # the run's own copy: a resumed run reads it, not the file it came from
            run.write_json(RunFolder.COST_TABLE, self.objective.latency.table.raw)

    def start(self, trainer: Trainer, step: int) -> None:
        if self.objective.bilevel and not self.objective.random_heads:  # the α step of step k: validation batch k
            self.alpha_batches = trainer.batches(VALIDATION_STREAM, step, self.steps, self.session.validation)

    def loss(self, trainer: Trainer, step: int, batch: dict) -> StepResult:
        if self.alpha_batches is not None:  # first-order DARTS: the gate logits step first, the weights held
            gate_step = self.objective.loss(self.forward, next(self.alpha_batches))
            trainer.descend(self, step, gate_step, ("alpha",))
            self.alpha_loss = gate_step.loss.item()
        return self.objective.loss(self.forward, batch)

    def logged(self, result: StepResult) -> dict[str, float]:
        row = {"gate_lr": self.optimizers["alpha"].param_groups[0]["lr"], "sparsity": result.sparsity.item()}
        if self.alpha_loss is not None:
            row["alpha_loss"] = self.alpha_loss  # the bi-level α step's objective, on its validation batch
        return row

    def tables(self, key: dict[str, Any], result: StepResult) -> dict[str, list[dict[str, Any]]]:
        c = self.session.config
        probabilities, logits = self.gates.probabilities(), self.gates.on_logits()
        extra = {} if result.expected_latency is None else {"expected_ms": result.expected_latency.item()}
        return {"gates": [dict(key, tau=c.tau, relaxation=c.relaxation, head=h, logit=logits[h], prob=probabilities[h],
                               alpha=result.sample.alphas[h].item(), **extra) for h in self.gates.heads]}

    def finish(self, trainer: Trainer) -> None:
        c = self.session.config
        latency = self.objective.latency
        selection = select_heads(self.session, self.network, self.gates, latency and latency.table,
                                 c.latency_target)
        architecture, probabilities = selection.architecture, self.gates.probabilities()
        undecided = tuple(undecided_heads(probabilities, c.threshold, c.margin)) if c.select == "gates" else ()
        if selection.subnetworks is not None:
            trainer.run.write_csv(RunFolder.SUBNETWORKS, selection.subnetworks)
        provenance = dict(gates=probabilities, threshold=c.threshold, tau=c.tau, margin=c.margin,
                          undecided=list(undecided), relaxation=c.relaxation, select=c.select,
                          contiguous=c.contiguous,
                          contiguous_selection=c.keeps_contiguous, scores=selection.scores)
        trainer.run.save_architecture(architecture, **provenance)
        self.result = SearchResult(trainer.run.path, architecture, probabilities, c.threshold, c.margin, undecided,
                                   select=c.select, scores=selection.scores)
        if self.objective.latency is not None:  # saved again with its latency: the architecture is on disk already
            measure = lambda: measured_on_table_backend(architecture, self.objective.latency.table)  # noqa: E731
            cost = self.session.world.agree(measure)  # timed once, by rank 0, alone
            trainer.run.save_architecture(architecture, **provenance, **cost)
            self.result = replace(self.result, **cost)


class RetrainPhase(Phase):
    """A (derived) network trained from scratch with task balancing and augmentation, validated every
    `val_every` steps; checkpoints/best.pt keeps the weights with the best multi-task score."""

    name, stream = "retrain", 2

    def __init__(self, session: Session):
        c = session.config
        super().__init__(session, c.retrain_steps, c.balancing)
        self.validation = session.validation
        self.best_score = -math.inf

    def folder_tag(self) -> str:
        return f"-{self.session.config.balancing}"

    def prepare(self, run: RunFolder) -> None:
        run.save_architecture(self.network.architecture)  # the network this run trains

    def loss(self, trainer: Trainer, step: int, batch: dict) -> StepResult:
        c = self.session.config
        if c.augment:  # drawn for the global batch, this rank's rows kept: the same on any number of ranks
            batch = augment(batch, c.seed, step, self.session.world.rows(c.batch_size), c.batch_size)
        return supervised_loss(self.session.space, self.forward, batch, self.task_weights)

    def after_step(self, trainer: Trainer, step: int) -> None:
        if step % self.session.config.val_every == 0 or step == self.steps:
            self.validate(trainer, step)

    def validate(self, trainer: Trainer, step: int) -> None:
        """Metrics on the validation split; best.pt keeps the weights with the best multi-task score Δ_MTL
        (against the trivial predictor, on each task's finest head)."""
        s = self.session
        table = evaluate(self.network, s.space, self.validation, s.device, s.config.batch_size, s.world)
        score = delta_mtl(finest_per_task(table), finest_per_task(table, "baseline"), s.space.tasks)
        key = trainer.row_key(self, step)
        rows = table[table["model"] == "network"]
        trainer.log(self, step, "validation", [dict(key, head=r.head, metric=r.metric, value=r.value)
                                               for r in rows.itertuples()]
                    + [dict(key, head="all", metric="delta_mtl", value=score)])
        if score > self.best_score:
            self.best_score = score
            trainer.run.save_checkpoint(RunFolder.BEST, {"architecture_id": self.network.architecture.id,
                                                         "step": step, "delta_mtl": score,
                                                         "network": self.network.state_dict()})

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_score": self.best_score}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.best_score = state["best_score"]
