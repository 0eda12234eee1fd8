"""The public entry points on run folders: `pretrain`, `search`, `retrain`, `evaluate_run`, `export_run` and
`profile_target`."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import json

import pandas as pd
import torch

from search_spaces import Architecture, SpaceError, get_size, get_space, is_architecture_file
from supernet import build_network, required_divisor

from .config import RunConfig, config_from_dict
from .data import open_dataset
from .derive import architecture_table, derive_architecture, save_architecture, undecided_heads
from .errors import NSSError
from .evaluate import evaluate, finest_per_task
from .export import DEFAULT_OPSET, export_with_report
from .io import atomic_write, atomic_write_text, refuse_existing
from .latency import CostTable, measure_cost_table
from .metrics import delta_mtl
from .profile import profile_network, resolve_backend, tensorrt_available
from .runfolder import RunFolder
from .train import (Session, Trainer, require_same_network, resolve_device, resolve_network_size,
                    trained_architecture)

# Options a search started with `from_run` takes from the pretrained run: the network and data must match.
INHERITED = ("space", "network", "data", "frame_size", "clips", "eval_clips", "frames", "data_seed")
LATENCY_TABLE = "latency.json"  # a latency-aware run's copy of its cost table
PHASES_OF = {"pretrain": ("pretrain",), "search": ("pretrain", "search"), "retrain": ("retrain",)}


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

    def table(self) -> str:
        return architecture_table(self.architecture, self.probabilities, self.undecided)


def default_run_dir(command: str, config: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if command == "retrain":
        what = Architecture.load(config.architecture).id if config.architecture else get_space(config.space).name
        return Path("runs") / f"retrain-{what}-{config.balancing}-seed{config.seed}-{stamp}"
    tau = f"-tau{config.tau:g}" if command == "search" else ""
    return Path("runs") / f"{command}-{get_space(config.space).name}{tau}-seed{config.seed}-{stamp}"


def load_run_config(run: RunFolder) -> tuple[str, RunConfig]:
    """The command and configuration a run was made with, pointing at the run's own space and architecture
    files so that nothing outside the folder is needed."""
    saved = run.read_yaml("config.yaml")
    command = saved.get("command")
    config = replace(config_from_dict(saved), space=str(run.path / "space.json"))
    if command == "retrain":
        config = replace(config, architecture=str(run.path / "architecture.json"))
    if config.latency_table:
        config = replace(config, latency_table=str(run.path / LATENCY_TABLE))
    return command, config.validate()


def _needs_validation(command: str, config: RunConfig) -> bool:
    """Retraining validates, a bi-level search takes its α steps on validation batches: the split must exist."""
    return command == "retrain" or (command == "search" and config.bilevel)


def _open_run(command: str, config: RunConfig | None, out: str | Path | None, force: bool,
              resume: bool) -> tuple[Trainer, tuple[str, ...], dict | None]:
    """Validate everything, then create (or reopen) the run folder: a bad input never leaves a folder behind."""
    if resume:
        if out is None:
            raise NSSError("--resume needs --out RUN_FOLDER, the run to continue")
        if config is not None:
            raise NSSError("a resumed run keeps its saved configuration: give only --out with --resume")
        run = RunFolder(out).require_existing()
        made_by, config = load_run_config(run)
        if made_by != command:
            raise NSSError(f"{run.path}: made by `nss {made_by}`, not `nss {command}`")
        state = run.load_checkpoint()
        session = Session.open(config, _needs_validation(command, config))
    else:
        config = (config or RunConfig()).validate()
        pretrained = None
        if command == "search" and config.from_run:
            source = RunFolder(config.from_run).require_existing()
            inherited = load_run_config(source)[1]
            config = replace(config, **{k: getattr(inherited, k) for k in INHERITED}).validate()
            pretrained = source.load_checkpoint("pretrained.pt")
        session = Session.open(config, _needs_validation(command, config))
        if pretrained is not None:
            require_same_network(pretrained, session.network, source.checkpoints / "pretrained.pt")
            session.network.load_state_dict(pretrained["network"])
        run = RunFolder(out or default_run_dir(command, config)).create(force)
        run.write_yaml("config.yaml", dict(command=command, **session.config.to_dict()))
        run.write_json("space.json", session.space.to_dict())
        if session.latency is not None:  # the run's own copy: a resumed run reads it, not the file it came from
            run.write_json(LATENCY_TABLE, session.latency.raw)
        if command == "retrain":  # the network this run trains
            save_architecture(run.path / "architecture.json", session.network.architecture)
        state = None
    phases = ("search",) if command == "search" and session.config.from_run else PHASES_OF[command]
    return Trainer(session, run), phases, state


def _train(command: str, config: RunConfig | None, out: str | Path | None, force: bool, resume: bool,
           progress: bool) -> Trainer:
    trainer, phases, state = _open_run(command, config, out, force, resume)
    trainer.progress = progress
    trainer.run_phases(phases, state)
    return trainer


def pretrain(config: RunConfig | None = None, *, out: str | Path | None = None, force: bool = False,
             resume: bool = False, progress: bool = True) -> Path:
    """Phase 1 alone: train the supernet with every head on. Returns the run folder."""
    return _train("pretrain", config, out, force, resume, progress).run.path


def search(config: RunConfig | None = None, *, out: str | Path | None = None, force: bool = False,
           resume: bool = False, progress: bool = True) -> SearchResult:
    """Neural Scale Search: pretrain (unless `config.from_run`), search the gates, derive the architecture."""
    trainer = _train("search", config, out, force, resume, progress)
    session = trainer.session
    probabilities, c = session.gates.probabilities(), session.config
    architecture = derive_architecture(session.space, probabilities, c.threshold)
    undecided = tuple(undecided_heads(probabilities, c.threshold, c.margin))
    provenance = dict(gates=probabilities, threshold=c.threshold, tau=c.tau, margin=c.margin,
                      undecided=list(undecided), relaxation=c.relaxation)
    save_architecture(trainer.run.path / "architecture.json", architecture, **provenance)
    cost = _latency_of(architecture, session.latency) if session.latency is not None else {}
    if cost:  # saved again with what the table says of it: the search's result is on disk whatever happens here
        save_architecture(trainer.run.path / "architecture.json", architecture, **provenance, **cost)
    return SearchResult(trainer.run.path, architecture, probabilities, c.threshold, c.margin, undecided,
                        cost.get("predicted_latency_ms"), cost.get("measured_latency_ms"), cost.get("latency_note"))


def _latency_of(architecture: Architecture, table: CostTable) -> dict:
    """The derived architecture's latency as the cost table predicts it and, where the table's backend runs
    here, as measured on it (same network size, input size and precision as the table)."""
    cost = {"predicted_latency_ms": table.predicted(architecture)}
    device = "cuda" if table.device.startswith("cuda") else "cpu"
    why = "no CUDA GPU" if device == "cuda" and not torch.cuda.is_available() else \
        tensorrt_available() if table.backend == "tensorrt" else None
    if why:
        cost["latency_note"] = f"not measured: the table was measured with {table.backend} on {table.device} ({why})"
        return cost
    torch.manual_seed(0)
    try:
        report = profile_network(build_network(architecture, get_size(table.network)), height=table.input_size[0],
                                 width=table.input_size[1], backend=table.backend, device=device,
                                 fp16=table.precision == "fp16", iters=table.raw.get("iters", 30))
    except (NSSError, SpaceError) as err:
        cost["latency_note"] = f"not measured: {err}"
        return cost
    cost["measured_latency_ms"] = report["latency_ms"]["median"]
    return cost


def retrain(config: RunConfig | None = None, *, out: str | Path | None = None, force: bool = False,
            resume: bool = False, progress: bool = True) -> Path:
    """Train `config.architecture` (or the full space) from scratch with task balancing `config.balancing`,
    validating every `config.val_every` steps; `checkpoints/best.pt` holds the best multi-task score."""
    return _train("retrain", config, out, force, resume, progress).run.path


def open_trained(run: str | Path, device: str | None = None) -> tuple[Session, str]:
    """A run's network with its trained weights (best.pt if there is one, else last.pt), and which file."""
    folder = RunFolder(run).require_existing()
    _, config = load_run_config(folder)
    if device:
        config = replace(config, device=device)
    session = Session.open(config)
    name = "best.pt" if (folder.checkpoints / "best.pt").exists() else "last.pt"
    state = folder.load_checkpoint(name)
    require_same_network(state, session.network, folder.checkpoints / name)
    session.network.load_state_dict(state["network"])
    return session, name


def delta_mtl_against(table: pd.DataFrame, reference: str | Path, tasks) -> float:
    """Δ_MTL (%) of an evaluation table against the `eval.csv` of a reference run on the same split."""
    path = Path(reference) / "eval.csv"
    split = table["split"].iloc[0]
    try:
        ref = pd.read_csv(path)
    except FileNotFoundError:
        raise NSSError(f"{path}: file not found (run `nss evaluate {reference} --split {split}` first)") from None
    ref = ref[ref["split"] == split]
    if not len(ref):
        raise NSSError(f"{path}: no {split} metrics to compare with (run `nss evaluate {reference} --split {split}`)")
    return delta_mtl(finest_per_task(table), finest_per_task(ref), tasks)


def evaluate_run(run: str | Path, split: str = "test", *, device: str | None = None, write: bool = True,
                 reference: str | Path | None = None, eval_clips: int | None = None) -> pd.DataFrame:
    """Every metric of every head of a run's network (best.pt if there is one, else last.pt) on a split, and
    the trivial predictor's; written long form to `<run>/eval.csv` (with the split and checkpoint). With a
    `reference` run, a last row (head "all", metric "delta_mtl") holds Δ_MTL against its eval.csv. `eval_clips`
    measures on that many synthetic validation/test clips instead of the run's own."""
    session, name = open_trained(run, device)
    config, folder = session.config, RunFolder(run)
    if eval_clips is not None:
        if config.data != "synthetic":
            raise NSSError(f"--eval-clips: {run} was trained on {config.data}, whose splits are fixed; only "
                           "synthetic data grows them")
        config = replace(config, eval_clips=eval_clips).validate()
    data = open_dataset(config.data, split, Session.synthetic_spec(config))
    table = evaluate(session.network, session.space, data, session.device, config.batch_size)
    table.insert(0, "split", split)
    table.insert(1, "checkpoint", name)
    if reference is not None:
        score = delta_mtl_against(table, reference, session.space.tasks)
        table.loc[len(table)] = [split, name, "network", "all", "all", float("nan"), "delta_mtl", score]
    if write:
        atomic_write(folder.path / "eval.csv", lambda tmp: table.to_csv(tmp, index=False))
    return table


def export_run(run: str | Path, out: str | Path, *, fp16: bool = False, opset: int = DEFAULT_OPSET,
               size: tuple[int, int] | None = None, force: bool = False) -> dict:
    """`nss export`: the run's trained network as ONNX, checked under ONNX Runtime; report in `<out>.json`."""
    refuse_existing(Path(out), force, "ONNX file")
    session, _ = open_trained(run, device="cpu")
    height, width = size or session.config.frame_height_width
    return export_with_report(session.network, out, height, width, fp16=fp16, opset=opset)


def profile_target(target: str | Path, *, backend: str = "auto", fp16: bool = False, device: str = "auto",
                   size: tuple[int, int] | None = None, network: str = "auto", iters: int = 100, warmup: int = 10,
                   out: str | Path | None = None, per_head: bool = False) -> tuple[dict, Path, str | None]:
    """`nss profile`: TARGET is a run folder, an architecture.json or a space (name or JSON); `size` defaults to a
    run's frame size, else 256×256. Returns the report, where it was written (profile.json in the run folder, else
    in the current directory) and a fallback note.

    With `per_head`, the per-head cost table of the target's space (its supernet) instead (nss.latency), written
    to `out` (default latency_table.json beside profile.json)."""
    backend, note = resolve_backend(backend)
    torch_device = resolve_device({"tensorrt": "cuda", "onnxruntime": "cpu"}.get(backend, device))
    target_path = Path(target)
    if (target_path / "config.yaml").is_file():  # a run folder: its own network
        _, config = load_run_config(RunFolder(target_path))
        architecture, size_name, home = trained_architecture(config), config.network, target_path
        size = size or config.frame_height_width
    else:
        architecture = Architecture.load(target) if is_architecture_file(target) else \
            Architecture.full(get_space(str(target)))
        size_name, home = network, Path(".")
    size = size or (256, 256)
    size_name = resolve_network_size(size_name, torch_device)
    divisor = required_divisor(architecture.space.scales)
    if size[0] % divisor or size[1] % divisor:
        raise NSSError(f"--size: {size[0]}x{size[1]} must be multiples of {divisor}")
    if iters < 1 or warmup < 0:
        raise NSSError(f"--iters must be >= 1 and --warmup >= 0, got {iters} and {warmup}")
    if per_head:
        report = measure_cost_table(architecture.space, size=size_name, height=size[0], width=size[1],
                                    backend=backend, device=str(torch_device), fp16=fp16, iters=iters, warmup=warmup)
        path = Path(out) if out else home / "latency_table.json"
    else:
        torch.manual_seed(0)
        report = profile_network(build_network(architecture, get_size(size_name)), height=size[0], width=size[1],
                                 backend=backend, device=str(torch_device), fp16=fp16, iters=iters, warmup=warmup)
        report["network"] = size_name
        path = Path(out) if out else home / "profile.json"
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return report, path, note
