"""What a GPU gives: training steps/s of the `paper` network at 320×416 in fp32 and bf16, the achieved FLOP/s as a
share of a large matrix product's, a `tiny` step with and without torch.compile, the search step ÷ the pretrain
step, and the papers' networks' FP16 batch-1 frame rates (two-frame and streaming, CUDA graphs), in one run.

Targets: bf16 ≥ 1.8× fp32's steps/s; the tiny step (compiled) ≤ 15 ms; search ÷ pretrain ≤ 1.10; MOST-NET+ DW
≥ 200 FPS on a current data-centre GPU (the paper: 25.4 FPS with TensorRT FP16 on an RTX 5000). Steps are timed
on one fixed batch (data loading left out), after warm-up steps; the matrix product's rate stands for the peak
(fp32 with TF32, which cuDNN's convolutions use by default, and bf16). Finishes in a few minutes; without a GPU it
says so and measures nothing unless `--device cpu` (a smoke run of the same code at a small size).

    python benchmarks/gpu_throughput.py [--out runs/reference-gpu] [--steps 20]
    python benchmarks/gpu_throughput.py --device cpu --network tiny --size 64x64 --steps 2   # the code path, on a CPU
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from nss.config import resolve_config
from nss.deploy.profile import backend_runs, time_interleaved
from nss.model.costs import PAPER_NETWORKS, reference_network
from nss.runs.folder import ReplicaFolder
from nss.training.phases import PretrainPhase, SearchPhase
from nss.training.session import Session
from nss.training.trainer import Trainer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_timer(config_values: dict, phase_class: type, folder: Path) -> tuple[Callable[[], None], float, Session]:
    """One training step of a phase on one fixed batch, as the trainer takes it, and its FLOPs, forward and
    backward (not counted for a compiled step: the counter would be compiled into it)."""
    session = Session.open(resolve_config(**config_values))
    trainer = Trainer(session, ReplicaFolder(folder / phase_class.name), progress=False)  # writes nothing
    phase = phase_class(session)
    phase.start(trainer, 0)
    batch = next(trainer.batches(phase.stream, 0, 1))
    count = iter(range(1, 10 ** 9))

    def step() -> None:
        i = next(count)
        trainer.descend(phase, i, phase.loss(trainer, i, batch), phase.updated(i))

    if session.config.compile != "off":
        return step, float("nan"), session
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        step()
    return step, counter.get_total_flops(), session


def steps_per_second(step: Callable[[], None], device: torch.device, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps / (time.perf_counter() - start)


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int, iters: int = 10) -> float:
    """FLOP/s of a large matrix product in `dtype` (fp32 with TF32 on a GPU, as cuDNN's convolutions compute)."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
        a @ b
        synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            a @ b
        synchronize(device)
        return 2 * size ** 3 * iters / (time.perf_counter() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--network", default="paper", help="the network timed at --size (default paper)")
    parser.add_argument("--size", default="320x416")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each measurement")
    parser.add_argument("--compile", default="inductor", help="torch.compile backend for the tiny step")
    parser.add_argument("--out", type=Path, help="folder for gpu_throughput.csv")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: nothing measured (run this on a GPU machine; --device cpu runs its code path)")
        return
    gpu = device.type == "cuda"
    height, width = (int(v) for v in args.size.split("x"))
    precisions = ("fp32", "bf16")
    rows: list[dict] = []

    def record(measure: str, value: float, unit: str, target: str = "", **keys) -> None:
        rows.append(dict(measure=measure, **keys, value=value, unit=unit, target=target))

    base = dict(network=args.network, frame_size=args.size, batch_size=args.batch_size, device=args.device,
                clips=2, frames=args.batch_size + 1, log_every=10 ** 6, checkpoint_every=10 ** 6, select="gates")
    peak = {"fp32": matmul_rate(device, torch.float32, 8192 if gpu else 1024),
            "bf16": matmul_rate(device, torch.bfloat16, 8192 if gpu else 1024)}
    with tempfile.TemporaryDirectory() as folder:
        rates: dict[tuple[str, str], float] = {}
        for precision in precisions:
            for phase_class in (PretrainPhase, SearchPhase):
                step, flops, session = step_timer(dict(base, precision=precision), phase_class, Path(folder))
                rate = steps_per_second(step, device, args.steps)
                rates[(precision, phase_class.name)] = rate
                keys = dict(network=args.network, precision=precision, phase=phase_class.name)
                record("steps_per_s", rate, "steps/s", **keys)
                record("flops_share_of_matmul", flops * rate / peak[precision], "fraction", **keys)
                del step, session
                if gpu:
                    torch.cuda.empty_cache()
        for phase in ("pretrain", "search"):
            record("bf16_speedup", rates[("bf16", phase)] / rates[("fp32", phase)], "×", ">= 1.8",
                   network=args.network, phase=phase)
        for precision in precisions:
            record("search_over_pretrain_step", rates[(precision, "pretrain")] / rates[(precision, "search")], "×",
                   "<= 1.10", network=args.network, precision=precision)

        tiny = dict(base, network="tiny", frame_size="64x64", precision="auto")
        for backend in ("off", args.compile):
            began = time.perf_counter()
            step, _, session = step_timer(dict(tiny, compile=backend), SearchPhase, Path(folder))
            step()  # compiles, where it does (and the first step allocates)
            synchronize(device)
            ready = time.perf_counter() - began
            rate = steps_per_second(step, device, args.steps)
            record("tiny_search_step", 1e3 / rate, "ms", "<= 15 (compiled)", network="tiny",
                   precision=session.config.precision, compile=backend)
            record("tiny_time_to_first_step", ready, "s", network="tiny", compile=backend)

        fp16 = gpu  # FP16 latency is a GPU's; the CPU smoke run times fp32
        runs = {}
        for paper in PAPER_NETWORKS:
            network = reference_network(paper.architecture(), args.network)
            sub = Path(folder) / paper.name.replace(" ", "_").replace("+", "p")
            sub.mkdir()
            two_frame, streaming = backend_runs(network, height, width, "torch", device, fp16, sub)
            runs[f"{paper.name}|two-frame"], runs[f"{paper.name}|streaming"] = two_frame, streaming
        times = time_interleaved(runs, max(args.steps, 5) * 5, warmup=3, device=device)
        for name, seconds in times.items():
            network, mode = name.split("|")
            record("fps_batch1", 1 / statistics.median(seconds), "FPS",
                   ">= 200" if (network, mode) == ("MOST-NET+ DW", "two-frame") else "",
                   network=network, precision="fp16" if fp16 else "fp32", mode=mode)

    table = pd.DataFrame(rows)
    name = torch.cuda.get_device_name(device) if gpu else "cpu"
    print(f"{name}, torch {torch.__version__}; {args.network} network at {args.size}, batch {args.batch_size}, "
          f"{args.steps} timed steps; large matmul: fp32/TF32 {peak['fp32'] / 1e12:.1f}, bf16 "
          f"{peak['bf16'] / 1e12:.1f} TFLOP/s")
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.fillna("").to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.assign(device_name=name, torch=torch.__version__).to_csv(args.out / "gpu_throughput.csv", index=False)
        print(f"written to {args.out / 'gpu_throughput.csv'}", file=sys.stderr)


if __name__ == "__main__":
    main()
