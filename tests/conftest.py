"""Shared fixtures: tiny networks, 32×32 synthetic data, small run configurations."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from nss import RunConfig, SyntheticSpec, resolve_config, write_synthetic
from nss.data import SyntheticDataset

TINY_SPEC = SyntheticSpec(clips=2, frames=3, height=32, width=32, seed=0)


def tiny_config(**overrides) -> RunConfig:
    values = dict(network="tiny", frame_size="32x32", clips=2, frames=3, batch_size=2, pretrain_steps=4,
                  search_steps=6, log_every=2, checkpoint_every=2, device="cpu")
    values.update(overrides)
    return resolve_config(**values)


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
