"""`--nproc N`: the N local processes of one data-parallel run, started as torchrun would start them (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), each running the same command line. The launcher checks what it can
before any process starts, and when one rank fails it stops the others and says which rank failed and how, instead
of leaving them waiting for it. Several machines: torchrun (README)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from ..errors import NSSError

POLL_S = 0.2
STOP_GRACE_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def launch(nproc: int, argv: list[str], threads_per_rank: int | None = None) -> None:
    """Run `python -m nss <argv>` as ranks 0 … nproc−1 of one run on this machine and wait for all of them; raises
    a one-line NSSError naming the first rank that failed (the others are stopped). `threads_per_rank`: torch's CPU
    threads in each (OMP_NUM_THREADS), unless the environment sets them."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(nproc),
               LOCAL_WORLD_SIZE=str(nproc), GROUP_RANK="0")
    if threads_per_rank is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads_per_rank))
    ranks = [subprocess.Popen([sys.executable, "-m", "nss", *argv],
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r))) for r in range(nproc)]
    try:
        while True:
            codes = [p.poll() for p in ranks]
            failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
            if failed:  # a killed rank is the cause; the others fail after it, at their next collective
                rank, code = min(failed, key=lambda rc: (rc[1] >= 0, rc[0]))
                _stop(ranks)
                raise NSSError(f"rank {rank} of {nproc} {how_it_ended(code)}; the other ranks were stopped (continue "
                               "the run with --out RUN --resume, on any number of processes)")
            if all(code == 0 for code in codes):
                return
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        _stop(ranks)
        raise


def _stop(ranks: list[subprocess.Popen]) -> None:
    for p in ranks:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for p in ranks:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
