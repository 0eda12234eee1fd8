"""Does a sweep use the machine? Four identical short searches run one after the other in this process, against
`nss sweep --workers 2` (each trial 1 CPU) on a local Ray, in one run.

The four searches differ only in τ, which costs nothing, and each pretrains its own supernet
(--pretrain per-trial), so every trial does the same work. Two speed-ups, sequential ÷ sweep wall time (the sweep's
counting Ray's start and shutdown):
- against the searches run one after the other with the trials' share, 1 CPU each: how the trial runner scales
  (target ≥ 1.6 on 2 cores);
- against them run one after the other with every core (torch's threads): what a user gains over running the
  searches by hand. It is bounded by how well one search uses two threads (measured: 1.4× faster than one).
Ray overhead per trial = (sweep wall time − the busiest worker's time inside its trials) ÷ trials: Ray's start
and shutdown, Ray Tune's set-up, the workers' imports and the scheduling between trials, not the uneven speed of
two trials sharing the machine (target ≤ 3 s).

    python benchmarks/sweep_scaling.py [--network cpu] [--pretrain-steps 200] [--search-steps 100]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import nss
from nss.experiments.runner import ray_session

TAUS = (1.0, 2.0, 3.0, 4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="cpu")
    parser.add_argument("--pretrain-steps", type=int, default=200)
    parser.add_argument("--search-steps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = nss.resolve_config(network=args.network, pretrain_steps=args.pretrain_steps,
                              search_steps=args.search_steps, device="cpu")
    cores = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        sequential = {}
        for threads in (1, cores):
            torch.set_num_threads(threads)
            began = time.perf_counter()
            for tau in TAUS:
                nss.search(nss.resolve_config(**dict(base.to_dict(), tau=tau)),
                           out=Path(folder) / f"seq{threads}-{tau:g}", progress=False)
            sequential[threads] = time.perf_counter() - began

        resources = nss.Resources(workers=args.workers, cpus_per_trial=1)
        began = time.perf_counter()
        with ray_session(resources):
            started = time.perf_counter()
            table = nss.sweep({"tau": list(TAUS)}, Path(folder) / "sweep", base=base, pretrain="per-trial",
                              resources=resources, progress=False)
            records = [json.loads((Path(run) / "trial.json").read_text()) for run in table["run"]]
        swept = time.perf_counter() - began
    assert (table["status"] == "done").all(), table["message"].tolist()
    busiest = max(lanes(records))
    overhead = (swept - busiest) / len(table)
    print(f"{len(TAUS)} searches ({args.network} network, {args.pretrain_steps} pretraining + {args.search_steps} "
          f"search steps)")
    print(f"sweep with {args.workers} workers × 1 CPU: {swept:.1f} s, of which Ray's start {started - began:.1f} s "
          f"(trials {table['wall_time_s'].mean():.1f} s each, the busiest worker {busiest:.1f} s inside trials)")
    print(f"sequential with 1 thread: {sequential[1]:.1f} s -> speed-up {sequential[1] / swept:.2f}x "
          f"(target >= 1.6)")
    print(f"sequential with {cores} threads: {sequential[cores]:.1f} s -> speed-up {sequential[cores] / swept:.2f}x "
          f"(one search: {cores} threads {sequential[1] / sequential[cores]:.2f}x faster than 1)")
    print(f"Ray overhead per trial {overhead:.1f} s (target <= 3)")


def lanes(records: list[dict]) -> list[float]:
    """Time inside trials per worker: the trials laid on as few lanes as their start and end times allow."""
    ends, busy = [], []
    for record in sorted(records, key=lambda r: r["started_at"]):
        lane = next((i for i, end in enumerate(ends) if end <= record["started_at"]), None)
        if lane is None:
            ends.append(0.0)
            busy.append(0.0)
            lane = len(ends) - 1
        ends[lane] = record["ended_at"]
        busy[lane] += record["ended_at"] - record["started_at"]
    return busy


if __name__ == "__main__":
    main()
