"""The loop every training command runs: its phases in order, each over its batches, with optimisation, logs,
checkpoints and resume, on one process or as one rank of several (nss.training.distributed: the trainer takes its
share of each batch, averages the gradients, logs the global batch's losses, and only rank 0 writes). What a phase
trains and logs is the phase's (nss.training.phases); nothing here depends on which phase it is.

A step does not wait for the GPU: there, losses are checked for non-finite values on the device and read back
only on logging and checkpoint steps, which also read the logged values (on a CPU, every step, before its update)."""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..errors import NonFiniteLossError, NSSError
from ..model.losses import head_losses
from ..model.step import StepResult, batch_to
from ..runs.folder import RunFolder
from .conflicts import backward_per_task, conflict_rows
from .phases import Phase, phase_seed
from .session import Session
from .tensorboard import TensorBoardLog

log = logging.getLogger("nss")


def batch_indices(seed: int, stream: int, step: int, size: int, batch: int) -> list[int]:
    """The samples of a step: a fresh permutation per epoch, a pure function of (seed, stream, step)."""
    per_epoch = size // batch
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, stream, epoch]).permutation(size)
    return order[position * batch:(position + 1) * batch].tolist()


class FiniteWatch:
    """Which losses of which step first went non-finite, kept on the device (no host synchronisation per step)
    and read by `check` before anything is logged or saved."""

    def __init__(self, device: torch.device):
        self.first_step = torch.zeros((), dtype=torch.long, device=device)  # 0: none yet
        self.values: torch.Tensor | None = None
        self.names: list[str] = []

    def observe(self, step: int, values: dict[str, torch.Tensor]) -> None:
        stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()])
        if self.values is None or self.values.shape != stacked.shape:
            self.values = torch.zeros_like(stacked)
        self.names = list(values)  # the same within a phase, and a phase ends checked
        new = ~torch.isfinite(stacked).all() & (self.first_step == 0)
        self.first_step = torch.where(new, step, self.first_step)
        self.values = torch.where(new, stacked, self.values)

    def first_bad(self) -> tuple[int, str, float] | None:
        """(step, loss name, value) of the first non-finite loss seen, None if every one was finite."""
        step = int(self.first_step)
        if not step:
            return None
        values = self.values.tolist()
        index = next(i for i, v in enumerate(values) if not math.isfinite(v))
        return step, self.names[index], values[index]


def out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or isinstance(err, RuntimeError) and any(
        text in str(err) for text in ("out of memory", "can't allocate memory"))


class Trainer:
    def __init__(self, session: Session, run: RunFolder, progress: bool = True):
        self.session, self.run, self.progress = session, run, progress
        self.config, self.world = session.config, session.world
        # fp16 needs its gradients scaled (bf16 has fp32's range); a disabled scaler passes everything through
        self.scaler = torch.amp.GradScaler(session.device.type, enabled=self.config.precision == "fp16")
        self.finite = FiniteWatch(session.device)
        self.batches_seen = {"train": 0, "val": 0}
        self.last_saved = 0
        self.board: TensorBoardLog | None = None
        self.offset = 0  # steps of the command's earlier phases: TensorBoard's step axis runs across phases

    # -- the loop ------------------------------------------------------------------------------------------
    def run_phases(self, phases: Sequence[Phase], resume: dict | None = None) -> None:
        """Run `phases` in order; `resume` is a checkpoint to continue from (it names its phase and step)."""
        names = [p.name for p in phases]
        if resume is not None and resume["phase"] not in names:
            raise NSSError(f"{self.run.checkpoints / RunFolder.LAST}: a checkpoint of phase {resume['phase']!r}, "
                           f"which this command ({', '.join(names)}) does not run")
        first = names.index(resume["phase"]) if resume is not None else 0
        offsets = np.cumsum([0] + [p.steps for p in phases]).tolist()
        if self.config.tensorboard and self.world.primary:
            self.board = TensorBoardLog(self.run / RunFolder.TENSORBOARD,
                                        offsets[first] + resume["step"] if resume is not None else None)
        try:
            for index in range(first, len(phases)):
                phase, self.offset = phases[index], offsets[index]
                if resume is not None and index == first:
                    start, elapsed = self._restore(phase, resume)
                else:
                    torch.manual_seed(phase_seed(self.config.seed, phase.stream))
                    start, elapsed = 0, 0.0
                    self._save(phase, 0, 0.0)  # resumable from its very start
                self.last_saved = start
                self._run_phase(phase, start, elapsed)
                phase.finish(self)
        finally:
            if self.board is not None:
                self.board.close()

    def batches(self, stream: int, start: int, steps: int, data: Dataset | None = None) -> Iterator[dict]:
        """The batches of steps start+1 … steps of a stream, from the training data or `data`, on the device."""
        c, data = self.config, data if data is not None else self.session.data
        split = "train" if data is self.session.data else "val"
        # this rank's share of each global batch (all of it on one process)
        sampler = [self.world.share(batch_indices(c.seed, stream, step, len(data), c.batch_size))
                   for step in range(start, steps)]
        on_gpu = self.session.device.type == "cuda"
        # Its own generator: a DataLoader draws a seed when iterated, which must not move the global RNG that
        # the Gumbel noise and dropout use (a resumed run would otherwise diverge from an uninterrupted one).
        for batch in DataLoader(data, batch_sampler=sampler, num_workers=c.workers, pin_memory=on_gpu,
                                persistent_workers=False, generator=torch.Generator().manual_seed(c.seed)):
            self.batches_seen[split] += 1
            yield batch_to(batch, self.session.device, non_blocking=on_gpu, dtype=self.session.dtype)

    def _run_phase(self, phase: Phase, start: int, elapsed: float) -> None:
        c = self.config
        self.session.network.train()
        phase.start(self, start)
        began = time.perf_counter() - elapsed
        bar = tqdm(total=phase.steps, initial=start, desc=phase.name, unit="step",
                   disable=not (self.progress and self.world.primary), leave=True)
        done = start
        try:
            for step, batch in enumerate(self.batches(phase.stream, start, phase.steps), start=start + 1):
                result = phase.loss(self, step, batch)
                self.descend(phase, step, result, phase.updated(step),
                             measure=bool(c.conflicts_every) and step % c.conflicts_every == 0)
                for scheduler in phase.schedulers.values():
                    scheduler.step()
                if step % self.session.steps_per_epoch == 0:
                    phase.balancer.end_epoch()
                bar.update()
                elapsed = time.perf_counter() - began
                saving = step % c.checkpoint_every == 0 or step == phase.steps
                if step % c.log_every == 0 or step == phase.steps:
                    self._require_finite(phase)
                    loss = self._log_step(phase, step, elapsed, result, batch)
                    bar.set_postfix(loss=f"{loss:.4f}")
                phase.after_step(self, step)
                if saving:
                    self._require_finite(phase)
                    self._save(phase, step, elapsed)
                done = step
        except Exception as err:
            if not out_of_memory(err):
                raise
            h, w = c.frame_height_width
            raise NSSError(f"{phase.name} step {done + 1}: out of memory on {self.session.device} ({c.network} "
                           f"network, batch {c.batch_size} of {h}x{w}); a smaller --batch-size, --frame-size or "
                           "--network fits") from None
        finally:
            bar.close()

    def descend(self, phase: Phase, step: int, result: StepResult, optimizers: Sequence[str],
                measure: bool = False) -> None:
        """One update: the gradients of `result.loss` (`measure`: one task at a time, their conflicts logged),
        averaged over the ranks, then a step of the phase's `optimizers`."""
        values = dict(result.head_losses or result.task_losses)
        if result.sparsity is not None:
            values["sparsity"] = result.sparsity
        self.finite.observe(step, values)
        if self.session.device.type != "cuda":  # reading it back costs nothing here; on a GPU it waits for the step
            self._require_finite(phase)
        for optimizer in phase.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        if measure:
            self._backward_measuring_conflicts(phase, step, result)
        else:
            self.scaler.scale(result.loss).backward()
        self.world.average_gradients([p for o in phase.optimizers.values() for group in o.param_groups
                                      for p in group["params"]])
        for key in optimizers:
            self.scaler.step(phase.optimizers[key])
        self.scaler.update()

    def _backward_measuring_conflicts(self, phase: Phase, step: int, result: StepResult) -> None:
        """The update's gradients, one task at a time; their pairwise cosines go to conflicts.csv."""
        network = self.session.network
        scale = self.scaler.scale  # fp16: every term scaled alike, which leaves the cosines as they are
        terms = {task: scale(result.weights[task] * value) for task, value in result.task_losses.items()}
        named = list(network.named_parameters()) + [(f"{name}.{n}", p) for name, module in phase.modules().items()
                                                    for n, p in module.named_parameters()]
        per_task = backward_per_task(terms, None if result.extra is None else scale(result.extra), named)
        if self.world.primary:  # on rank 0's share of the batch
            key = self.row_key(phase, step)
            network_names = {n for n, _ in network.named_parameters()}
            self.log(phase, step, "conflicts", [dict(key, **row) for row in conflict_rows(per_task, network_names)])

    def _require_finite(self, phase: Phase) -> None:
        bad = self.finite.first_bad()
        if bad is not None:
            step, name, value = bad
            self.run.flush()
            raise NonFiniteLossError(
                f"{phase.name} step {step}: the loss of {name} is {value}; stopped. The last good checkpoint "
                f"({self.run.checkpoints / RunFolder.LAST}, {phase.name} step {self.last_saved}) is left as it was")

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _save(self, phase: Phase, step: int, elapsed: float) -> None:
        self.world.require_equal({name: m.state_dict() for name, m in phase.modules().items()},
                                 f"{phase.name} step {step}")
        self.run.flush()
        self.run.save_checkpoint(RunFolder.LAST, {
            "phase": phase.name, "step": step, "elapsed": elapsed,
            "architecture_id": self.session.network.architecture.id, "network": self.session.network.state_dict(),
            **phase.state_dict(),
            "table_rows": {name: table.rows_written for name, table in self.run.tables.items()},
            "torch_rng": torch.get_rng_state(),
            # the generator of this rank's GPU (every rank's moves alike)
            "cuda_rng": [torch.cuda.get_rng_state(self.session.device)] if self.session.device.type == "cuda" else [],
            "scaler": self.scaler.state_dict(), "ranks": self.world.size,
        })
        self.last_saved = step

    def _restore(self, phase: Phase, state: dict) -> tuple[int, float]:
        self.run.load_weights(RunFolder.LAST, self.session.network, state)
        phase.load_state_dict(state)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and self.session.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"][0], self.session.device)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        saved_on = state.get("ranks", 1)
        if saved_on != self.world.size and self.world.primary:
            log.warning("note: resumed on %d rank(s), saved on %d: each step's global batch is the same, split "
                        "%d ways; batch norm and the gradients stay the global batch's", self.world.size, saved_on,
                        self.world.size)
        for name, table in self.run.tables.items():
            table.cut_back(state["table_rows"][name])
        return state["step"], state["elapsed"]

    # -- logs ----------------------------------------------------------------------------------------------
    def row_key(self, phase: Phase, step: int) -> dict[str, Any]:
        """The columns every logged row starts with."""
        return {"phase": phase.name, "epoch": (step - 1) // self.session.steps_per_epoch, "step": step}

    def log(self, phase: Phase, step: int, table: str, rows: list[dict[str, Any]]) -> None:
        """Rows of one of the run's logs (and of TensorBoard's, with --tensorboard)."""
        self.run.tables[table].extend(rows)
        if self.board is not None:
            self.board.add(table, rows, self.offset + step)

    def _log_step(self, phase: Phase, step: int, elapsed: float, result: StepResult, batch: dict) -> float:
        """The step's rows of the logs, with the global batch's losses; returns its loss."""
        key = self.row_key(phase, step)
        per_head = result.head_losses
        if per_head is None:  # the composite's loss: every head on its own too, for scale-gain plots
            with torch.no_grad():
                per_head = head_losses(self.session.space, result.full, batch)
        means = self.world.mean({"loss": result.loss, **{f"loss/{name}": v for name, v in result.task_losses.items()},
                                 **{f"loss/{h}": v for h, v in per_head.items()}})
        row = dict(key, **{name: v.item() for name, v in means.items()})
        row.update({f"lambda/{name}": float(w.detach()) for name, w in result.weights.items()})
        row["lr"] = phase.optimizers["theta"].param_groups[0]["lr"]
        row.update(phase.logged(result))
        row["wall_time"] = elapsed
        self.log(phase, step, "metrics", [row])
        self.log(phase, step, "deltas", [dict(key, head=h, value=d.detach().abs().mean().item())
                                         for h, d in result.deltas.items()])
        for table, rows in phase.tables(key, result).items():
            self.log(phase, step, table, rows)
        return row["loss"]
