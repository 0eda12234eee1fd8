"""Shared fixtures: tiny networks, 32×32 synthetic data, small run configurations."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from nss import RunConfig, SyntheticSpec, resolve_config, write_synthetic
from nss.data import SyntheticDataset

TINY_SPEC = SyntheticSpec(clips=2, frames=3, height=32, width=32, seed=0)


def tiny_config(**overrides) -> RunConfig:
    # select="gates" with the threshold alone: most tests look at the gates' own derivation; knockout, oneshot and
    # contiguity have theirs
    values = dict(network="tiny", frame_size="32x32", clips=2, frames=3, batch_size=2, pretrain_steps=4,
                  search_steps=6, log_every=2, checkpoint_every=2, device="cpu", select="gates",
                  contiguous_selection=False)
    values.update(overrides)
    return resolve_config(**values)


# The command-line form of tiny_config (later flags win, so tests append their own).
TINY_FLAGS = ["--network", "tiny", "--frame-size", "32x32", "--clips", "2", "--frames", "3", "--batch-size", "2",
              "--device", "cpu", "--quiet"]


def kill_mid_run(argv: list[str], out: Path, phase: str, timeout: float = 120.0, before: int | None = None) -> Path:
    """Run `nss ARGV --out OUT` in a subprocess and SIGKILL it (with the ranks it started, under `--nproc`) once a
    checkpoint of `phase` past step 0 (and before step `before`, the phase's last) exists."""
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    process = subprocess.Popen([sys.executable, "-m", "nss.cli"] + argv + ["--out", str(out)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    path, deadline = out / "checkpoints" / "last.pt", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():  # checkpoints are renamed into place: reading one while the run goes on is safe
            state = torch.load(path, weights_only=True)
            if state["phase"] == phase and 0 < state["step"] < (before or float("inf")):
                break
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    else:
        raise AssertionError(f"no checkpoint of {phase} within {timeout} s")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return out


def tiny_batch(size: int = 2) -> dict:
    data = SyntheticDataset(TINY_SPEC, "train")
    return default_collate([data[i] for i in range(size)])


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("data") / "synth", TINY_SPEC, progress=False)


@pytest.fixture
def data_copy(synthetic_folder, tmp_path) -> Path:
    """A private copy of the synthetic folder that a test may damage."""
    return Path(shutil.copytree(synthetic_folder, tmp_path / "data"))
