"""Data-parallel runs (gloo, 2 spawned processes on the CPU) against one process with the whole batch, mixed
precision, and the GPU paths (skipped without a GPU)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import nss
from search_spaces import Architecture, get_space
from nss.cli import main
from nss.runs.folder import ReplicaFolder, RunFolder
from nss.scale_search.derive import save_architecture
from nss.training.distributed import World
from nss.training.phases import PretrainPhase, RetrainPhase, SearchPhase
from nss.training.session import Session
from nss.training.trainer import Trainer

from conftest import TINY_FLAGS, kill_mid_run, tiny_config

GPUS = torch.cuda.device_count()
needs_gpu = pytest.mark.skipif(GPUS == 0, reason="needs a CUDA GPU")

# fp64: in fp32 this network's runs differ by ~1e-3 between 1 and 2 CPU threads already (Adam's first steps turn
# rounding noise in near-zero gradients into ±lr); in double precision that noise is 1e-12, so what is compared is
# the data-parallel arithmetic itself.
PARALLEL_FLAGS = TINY_FLAGS + ["--batch-size", "4", "--precision", "fp64", "--threads", "1", "--pretrain-steps",
                               "4", "--search-steps", "6", "--log-every", "2", "--checkpoint-every", "2",
                               "--select", "knockout", "--min-gain", "0"]


def nss_command(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "nss", *argv], capture_output=True, text=True, timeout=timeout)
    return done


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    return {**{f"network.{k}": v for k, v in state["network"].items()},
            **{f"gates.{k}": v for k, v in state["gates"].items()}}


@pytest.mark.parametrize("select", ["knockout", "oneshot"])
def test_two_ranks_compute_what_one_process_with_the_whole_batch_computes(tmp_path, synthetic_folder, select):
    """Knockout: the Gumbel gates stepped; oneshot: heads drawn on or off alike on every rank, every sub-network
    measured on validation over the ranks."""
    flags = ["search", *PARALLEL_FLAGS, "--data", str(synthetic_folder), "--select", select]
    parallel = nss_command([*flags, "--nproc", "2", "--out", str(tmp_path / "two")])
    assert parallel.returncode == 0, parallel.stderr
    single = nss_command([*flags, "--out", str(tmp_path / "one")])
    assert single.returncode == 0, single.stderr

    two, one = final_weights(tmp_path / "two"), final_weights(tmp_path / "one")
    assert two.keys() == one.keys()
    for name, value in one.items():
        if value.is_floating_point():
            torch.testing.assert_close(two[name], value, atol=1e-5, rtol=0, msg=name)
    saved2, saved1 = (json.loads((tmp_path / run / "architecture.json").read_text()) for run in ("two", "one"))
    assert saved2["heads"] == saved1["heads"]
    for field in ("gates", "scores"):
        for head, value in saved1[field].items():
            assert saved2[field][head] == pytest.approx(value, abs=1e-5), (field, head)
    gates2, gates1 = pd.read_csv(tmp_path / "two" / "gates.csv"), pd.read_csv(tmp_path / "one" / "gates.csv")
    np.testing.assert_allclose(gates2["prob"], gates1["prob"], atol=1e-5)
    np.testing.assert_allclose(gates2["alpha"], gates1["alpha"], atol=1e-5)  # one architecture sample per step
    if select == "oneshot":
        sub2, sub1 = (pd.read_csv(tmp_path / run / "subnetworks.csv", keep_default_na=False) for run in ("two", "one"))
        assert list(sub2["heads"]) == list(sub1["heads"])
        np.testing.assert_allclose(sub2["delta_mtl_val"], sub1["delta_mtl_val"], atol=1e-5)
    # the global batch's losses are logged, not rank 0's share of it
    m2, m1 = pd.read_csv(tmp_path / "two" / "metrics.csv"), pd.read_csv(tmp_path / "one" / "metrics.csv")
    np.testing.assert_allclose(m2["loss"], m1["loss"], rtol=1e-6)
    # rank 0 alone wrote: the same files, one set of rows (a second writer would double them)
    listing = lambda run: sorted(p.relative_to(run) for p in run.rglob("*"))  # noqa: E731
    assert listing(tmp_path / "two") == listing(tmp_path / "one")
    assert len(m2) == len(m1)
    state = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)
    assert state["ranks"] == 2


def test_a_replica_rank_writes_nothing(tmp_path):
    """What ranks other than 0 run: the whole search, into a folder that takes no writes."""
    session = Session.open(tiny_config(pretrain_steps=2, search_steps=2))
    run = ReplicaFolder(tmp_path / "run")
    phases = [PretrainPhase(session), SearchPhase(session)]
    Trainer(session, run, progress=False).run_phases(phases)
    assert phases[1].result.architecture.heads and not (tmp_path / "run").exists()


def test_a_two_rank_run_killed_resumes_on_one_process(tmp_path, synthetic_folder):
    flags = ["search", *PARALLEL_FLAGS, "--data", str(synthetic_folder), "--search-steps", "10", "--nproc", "2"]
    run = kill_mid_run(flags, tmp_path / "run", "search", timeout=240, before=10)
    resumed = nss_command(["search", "--out", str(run), "--resume", "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed on 1 rank(s), saved on 2" in resumed.stderr
    assert (run / "architecture.json").exists()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 10


def test_a_killed_rank_ends_the_run_with_an_error_that_names_it(tmp_path, synthetic_folder):
    out = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "nss", "search", *PARALLEL_FLAGS, "--data",
                                 str(synthetic_folder), "--search-steps", "200", "--nproc", "2", "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "checkpoints" / "last.pt").exists():  # the ranks are training
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.1)
    os.kill(rank_pid(launcher.pid, 1), signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 1
    assert stderr.strip().splitlines()[-1].startswith("nss: error: rank 1 of 2 was killed by SIGKILL;"), stderr


def rank_pid(launcher: int, rank: int) -> int:
    """The pid of the launcher's child process that runs `rank`."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    for pid in children:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    raise AssertionError(f"no rank {rank} among {children}")


def test_bf16_autocast_trains_every_kept_head_with_finite_losses(tmp_path):
    space = get_space("most_net_plus")
    save_architecture(tmp_path / "arch.json", Architecture(space, space.fixed + ("restoration@1", "flow@2")))
    session = Session.open(tiny_config(precision="bf16", architecture=str(tmp_path / "arch.json")))
    network, seen = session.network, set()
    for module in network.modules():  # the convolutions compute in bf16 inside autocast
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    phase = RetrainPhase(session)
    batch = next(iter(torch.utils.data.DataLoader(session.data, batch_size=2)))
    result = phase.loss(None, 1, batch)
    assert seen == {torch.bfloat16}
    assert all(torch.isfinite(v) for v in result.task_losses.values()) and torch.isfinite(result.loss)
    assert all(v.dtype == torch.float32 for v in result.task_losses.values())
    result.loss.backward()
    for name, p in network.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_a_bf16_search_runs_and_records_its_precision(tmp_path):
    # bf16 convolutions are slow on CPUs without bf16 instructions: the fewest steps that log, checkpoint and derive
    config = tiny_config(precision="bf16", pretrain_steps=1, search_steps=2, log_every=1, checkpoint_every=2)
    result = nss.search(config, out=tmp_path / "run", progress=False)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert np.isfinite(metrics["loss"]).all() and result.architecture.heads
    assert RunFolder(tmp_path / "run").config()[1].precision == "bf16"


@pytest.mark.parametrize("flags, message", [
    (["--nproc", "99"], f"--nproc 99: this machine has {os.cpu_count()} CPU core(s)"),
    (["--precision", "fp16"], "--precision fp16: needs a CUDA GPU"),
    (["--nproc", "2", "--batch-size", "3"], "--batch-size 3: the global batch must split evenly over --nproc 2"),
    (["--compile", "nope"], "--compile: must be one of off, inductor, aot_eager, eager, got 'nope'"),
], ids=["nproc", "fp16-on-cpu", "batch-split", "compile-backend"])
def test_bad_parallel_options_fail_with_one_line_before_anything_is_written(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["search", *TINY_FLAGS, *flags, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nss: error: {message}") and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_one_process_is_the_world_of_one():
    world = World.from_environment()
    assert (world.rank, world.size, world.primary, world.parallel) == (0, 1, True, False)
    assert World(1, 2).share(range(8)) == [4, 5, 6, 7] and World(1, 2).rows(8) == slice(4, 8)


def _global_batch_norm_rank(rank: int, rendezvous: str, results: str) -> None:
    """One of 2 ranks: its half of a batch through GlobalBatchNorm, forward and backward, saved for the test."""
    import torch.distributed as dist
    from nss.training.distributed import GlobalBatchNorm
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    x, dy, weight, bias = torch.load(Path(results) / "inputs.pt", weights_only=True)
    norm = nn_batch_norm(weight, bias)
    norm.__class__ = GlobalBatchNorm
    share = x[2 * rank:2 * rank + 2].clone().requires_grad_()
    out = norm(share)
    (out * dy[2 * rank:2 * rank + 2]).sum().backward()
    torch.save({"out": out.detach(), "dx": share.grad, "dweight": norm.weight.grad, "dbias": norm.bias.grad,
                "running": (norm.running_mean, norm.running_var)}, Path(results) / f"rank{rank}.pt")
    dist.destroy_process_group()


def nn_batch_norm(weight: torch.Tensor, bias: torch.Tensor) -> torch.nn.BatchNorm2d:
    norm = torch.nn.BatchNorm2d(weight.numel(), dtype=torch.float64)
    with torch.no_grad():
        norm.weight.copy_(weight)
        norm.bias.copy_(bias)
    return norm


def test_global_batch_norm_over_two_ranks_is_batch_norm_over_the_whole_batch(tmp_path):
    """Output, input gradients, γ/β gradients (summed over the ranks) and running statistics of 2 gloo ranks
    with 2 samples each against torch's BatchNorm2d on the 4 together; the channels have offsets far from 0,
    where E[x²] − E[x]² would lose digits."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64) * 2 + torch.tensor([1e3, -5.0, 0.0])[:, None, None]
    dy = torch.randn(x.shape, generator=g, dtype=torch.float64)
    weight = torch.rand(3, generator=g, dtype=torch.float64) + 0.5
    bias = torch.randn(3, generator=g, dtype=torch.float64)
    torch.save((x, dy, weight, bias), tmp_path / "inputs.pt")
    torch.multiprocessing.spawn(_global_batch_norm_rank, args=(str(tmp_path / "rendezvous"), str(tmp_path)),
                                nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    reference = nn_batch_norm(weight, bias)
    whole = x.clone().requires_grad_()
    out = reference(whole)
    (out * dy).sum().backward()
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), out.detach(), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(torch.cat([r["dx"] for r in ranks]), whole.grad, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ranks[0]["dweight"] + ranks[1]["dweight"], reference.weight.grad)
    torch.testing.assert_close(ranks[0]["dbias"] + ranks[1]["dbias"], reference.bias.grad)
    for r in ranks:
        torch.testing.assert_close(r["running"][0], reference.running_mean)
        torch.testing.assert_close(r["running"][1], reference.running_var)


# -- GPU ---------------------------------------------------------------------------------------------------------

@needs_gpu
def test_an_fp16_search_on_a_gpu_scales_its_gradients(tmp_path):
    nss.search(tiny_config(device="cuda", precision="fp16"), out=tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0
    assert np.isfinite(pd.read_csv(tmp_path / "run" / "metrics.csv")["loss"]).all()


@needs_gpu
def test_a_gpu_training_step_never_waits_for_the_host(tmp_path):
    """No .item() or .cpu() in a step that neither logs nor saves: CUDA's sync debug mode makes any an error."""
    session = Session.open(tiny_config(device="cuda", search_steps=4))
    trainer, phase = Trainer(session, ReplicaFolder(tmp_path / "run")), SearchPhase(session)
    phase.start(trainer, 0)
    batches = list(trainer.batches(phase.stream, 0, phase.steps))
    for step, batch in enumerate(batches, start=1):
        torch.cuda.set_sync_debug_mode("error" if step > 1 else "default")  # the first step autotunes
        try:
            trainer.descend(phase, step, phase.loss(trainer, step, batch), phase.updated(step))
        finally:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.skipif(GPUS < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_run_one_search_over_nccl(tmp_path, synthetic_folder):
    flags = ["search", *TINY_FLAGS, "--device", "cuda", "--batch-size", "4", "--data", str(synthetic_folder),
             "--pretrain-steps", "4", "--search-steps", "6"]
    done = nss_command([*flags, "--nproc", "2", "--out", str(tmp_path / "run")])
    assert done.returncode == 0, done.stderr
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["ranks"] == 2

