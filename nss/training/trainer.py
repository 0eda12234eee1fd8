"""The loop every training command runs: its phases in order, each over its batches, with optimisation, logs,
checkpoints and resume. What a phase trains and logs is the phase's (nss.training.phases); nothing here depends
on which phase it is."""
from __future__ import annotations

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


def batch_indices(seed: int, stream: int, step: int, size: int, batch: int) -> list[int]:
    """The samples of a step: a fresh permutation per epoch, a pure function of (seed, stream, step)."""
    per_epoch = size // batch
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, stream, epoch]).permutation(size)
    return order[position * batch:(position + 1) * batch].tolist()


def out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or isinstance(err, RuntimeError) and any(
        text in str(err) for text in ("out of memory", "can't allocate memory"))


class Trainer:
    def __init__(self, session: Session, run: RunFolder, progress: bool = True):
        self.session, self.run, self.progress = session, run, progress
        self.config = session.config
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
        if self.config.tensorboard:
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
        sampler = [batch_indices(c.seed, stream, step, len(data), c.batch_size) for step in range(start, steps)]
        # Its own generator: a DataLoader draws a seed when iterated, which must not move the global RNG that
        # the Gumbel noise and dropout use (a resumed run would otherwise diverge from an uninterrupted one).
        for batch in DataLoader(data, batch_sampler=sampler, num_workers=c.workers,
                                generator=torch.Generator().manual_seed(c.seed)):
            self.batches_seen[split] += 1
            yield batch_to(batch, self.session.device)

    def _run_phase(self, phase: Phase, start: int, elapsed: float) -> None:
        c = self.config
        self.session.network.train()
        phase.start(self, start)
        began = time.perf_counter() - elapsed
        bar = tqdm(total=phase.steps, initial=start, desc=phase.name, unit="step", disable=not self.progress,
                   leave=True)
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
                if step % c.log_every == 0 or step == phase.steps:
                    self._log_step(phase, step, elapsed, result, batch)
                    bar.set_postfix(loss=f"{result.loss.item():.4f}")
                phase.after_step(self, step)
                if step % c.checkpoint_every == 0 or step == phase.steps:
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
        then a step of the phase's `optimizers`."""
        self._require_finite(phase, step, result)
        for optimizer in phase.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        if measure:
            self._backward_measuring_conflicts(phase, step, result)
        else:
            result.loss.backward()
        for key in optimizers:
            phase.optimizers[key].step()

    def _backward_measuring_conflicts(self, phase: Phase, step: int, result: StepResult) -> None:
        """The update's gradients, one task at a time; their pairwise cosines go to conflicts.csv."""
        network = self.session.network
        terms = {task: result.weights[task] * value for task, value in result.task_losses.items()}
        named = list(network.named_parameters()) + [(f"{name}.{n}", p) for name, module in phase.modules().items()
                                                    for n, p in module.named_parameters()]
        per_task = backward_per_task(terms, result.extra, named)
        key = self.row_key(phase, step)
        network_names = {n for n, _ in network.named_parameters()}
        self.log(phase, step, "conflicts", [dict(key, **row) for row in conflict_rows(per_task, network_names)])

    def _require_finite(self, phase: Phase, step: int, result: StepResult) -> None:
        values = dict(result.head_losses or result.task_losses)
        if result.sparsity is not None:
            values["sparsity"] = result.sparsity
        for name, value in values.items():
            if not torch.isfinite(value):
                self.run.flush()
                raise NonFiniteLossError(
                    f"{phase.name} step {step}: the loss of {name} is {value.item()}; stopped. The last good "
                    f"checkpoint ({self.run.checkpoints / RunFolder.LAST}, {phase.name} step {self.last_saved}) is "
                    "left as it was")

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _save(self, phase: Phase, step: int, elapsed: float) -> None:
        self.run.flush()
        self.run.save_checkpoint(RunFolder.LAST, {
            "phase": phase.name, "step": step, "elapsed": elapsed,
            "architecture_id": self.session.network.architecture.id, "network": self.session.network.state_dict(),
            **phase.state_dict(),
            "table_rows": {name: table.rows_written for name, table in self.run.tables.items()},
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.session.device.type == "cuda" else [],
        })
        self.last_saved = step

    def _restore(self, phase: Phase, state: dict) -> tuple[int, float]:
        self.run.load_weights(RunFolder.LAST, self.session.network, state)
        phase.load_state_dict(state)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
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

    def _log_step(self, phase: Phase, step: int, elapsed: float, result: StepResult, batch: dict) -> None:
        key = self.row_key(phase, step)
        row = dict(key, loss=result.loss.item())
        row.update({f"loss/{name}": v.item() for name, v in result.task_losses.items()})
        per_head = result.head_losses
        if per_head is None:  # the composite's loss: every head on its own too, for scale-gain plots
            with torch.no_grad():
                per_head = head_losses(self.session.space, result.full, batch)
        row.update({f"loss/{h}": v.item() for h, v in per_head.items()})
        row.update({f"lambda/{name}": float(w.detach()) for name, w in result.weights.items()})
        row["lr"] = phase.optimizers["theta"].param_groups[0]["lr"]
        row.update(phase.logged(result))
        row["wall_time"] = elapsed
        self.log(phase, step, "metrics", [row])
        self.log(phase, step, "deltas", [dict(key, head=h, value=d.detach().abs().mean().item())
                                         for h, d in result.deltas.items()])
        for table, rows in phase.tables(key, result).items():
            self.log(phase, step, table, rows)
