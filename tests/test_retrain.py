"""Retraining with every balancer, augmentation that keeps labels consistent, evaluation and eval.csv."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch.utils.data import default_collate

import nss
from nss.cli import main
from nss.data import SyntheticDataset, SyntheticSpec, open_dataset, render_clip, synthetic_spec
from nss.data.augment import augment, flip
from nss.data.samples import make_sample
from nss.evaluation.evaluate import evaluate
from nss.evaluation.metrics import psnr
from nss.runs.trained import TrainedModel
from search_spaces import Architecture, get_size, get_space
from supernet import build_network, flow_from_homography, homography_from_offsets, warp

from conftest import TINY_FLAGS, kill_mid_run, tiny_config

SMOOTH = SyntheticSpec(clips=2, frames=3, height=64, width=64, seed=3, detail=0.0)


@pytest.fixture(scope="module")
def clean_pairs():
    """Noise-free pairs with their labels, so that alignment errors come from geometry alone."""
    frames = []
    for clip_index in range(SMOOTH.clips):
        clip = render_clip(SMOOTH, "train", clip_index)
        for t in range(1, SMOOTH.frames):
            labels = {"image": clip["clean"][t], "mask": clip["mask"][t], "flow": clip["flow"][t],
                      "homography": clip["homography"][t]}
            frames.append(make_sample(clip["clean"][t - 1], clip["clean"][t], labels, tuple(labels)))
    return default_collate(frames)


@pytest.mark.parametrize("dim", [-1, -2])
def test_a_flipped_flow_warps_the_flipped_previous_frame_onto_the_flipped_current_one(clean_pairs, dim):
    flipped = flip(clean_pairs, torch.ones(len(clean_pairs["current"]), dtype=torch.bool), dim)
    error_before = (warp(clean_pairs["previous"], clean_pairs["flow"]) - clean_pairs["current"]).abs()
    error_after = (warp(flipped["previous"], flipped["flow"]) - flipped["current"]).abs()
    torch.testing.assert_close(error_after, error_before.flip(dim), atol=1e-5, rtol=0)
    assert error_before.mean() < 0.3 * (clean_pairs["previous"] - clean_pairs["current"]).abs().mean()
    # without the sign change the flipped flow would not align anything
    unsigned = flipped["flow"].clone()
    unsigned[:, 0 if dim == -1 else 1] *= -1
    assert (warp(flipped["previous"], unsigned) - flipped["current"]).abs().mean() > 2 * error_after.mean()


@pytest.mark.parametrize("dim", [-1, -2])
def test_flipped_corner_offsets_describe_the_flipped_plane_motion(clean_pairs, dim):
    flipped = flip(clean_pairs, torch.ones(len(clean_pairs["current"]), dtype=torch.bool), dim)
    for batch in (clean_pairs, flipped):
        hom = homography_from_offsets(batch["homography"].double(), 64, 64)
        plane_flow = flow_from_homography(hom, 64, 64).float()
        background = (batch["mask"][:, 0] < 0.5)[:, 8:-8, 8:-8]
        difference = (plane_flow - batch["flow"]).norm(dim=1)[:, 8:-8, 8:-8]
        assert difference[background].max() < 1e-3  # the plane moves exactly as its homography says


def test_augmentation_is_reproducible_and_jitters_inputs_only(clean_pairs):
    a, b = augment(clean_pairs, seed=1, step=5), augment(clean_pairs, seed=1, step=5)
    assert all(torch.equal(a[k], b[k]) for k in ("previous", "current", "image", "flow", "homography"))
    assert not torch.equal(a["current"], augment(clean_pairs, seed=1, step=6)["current"])
    # targets are only flipped (a flip keeps the sum); inputs are also jittered (it does not)
    assert a["image"].sum().item() == pytest.approx(clean_pairs["image"].sum().item(), rel=1e-6)
    assert a["current"].sum().item() != pytest.approx(clean_pairs["current"].sum().item(), rel=1e-3)


def _one_head_per_task():
    space = get_space("most_net_plus")
    return Architecture(space, ("restoration@1", "restoration@3", "segmentation@2", "segmentation@3", "flow@3"))


@pytest.mark.parametrize("balancing", ["ls", "atb", "dwa", "rlw", "uw"])
def test_retraining_with_every_balancer(tmp_path, balancing):
    arch_path = tmp_path / "arch.json"
    nss.save_architecture(arch_path, _one_head_per_task())
    run = nss.retrain(tiny_config(architecture=str(arch_path), balancing=balancing, retrain_steps=6,
                                  val_every=3), out=tmp_path / "run", progress=False)
    metrics = pd.read_csv(run / "metrics.csv")
    assert set(metrics.phase) == {"retrain"} and metrics.step.max() == 6
    lambdas = metrics[[f"lambda/{t}" for t in ("restoration", "segmentation", "flow")]]
    if balancing == "atb":  # λ_i v_i equal across tasks on every logged step
        weighted = lambdas.values * metrics[["loss/restoration", "loss/segmentation", "loss/flow"]].values
        np.testing.assert_allclose(weighted, weighted[:, :1].repeat(3, axis=1), rtol=1e-4)
    validation = pd.read_csv(run / "validation.csv")
    assert set(validation.step) == {3, 6} and "delta_mtl" in set(validation.metric)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    scores = validation[validation.metric == "delta_mtl"].set_index("step").value
    assert best["delta_mtl"] == pytest.approx(scores.max()) and best["step"] == scores.idxmax()
    assert Architecture.load(run / "architecture.json") == _one_head_per_task()
    assert set(n.split(".")[1] for n in best["network"] if n.startswith("heads.")) == set(
        _one_head_per_task().heads)


def test_a_killed_retraining_resumes_to_the_same_weights(tmp_path):
    arch_path = tmp_path / "arch.json"
    nss.save_architecture(arch_path, _one_head_per_task())
    options = dict(balancing="dwa", retrain_steps=80, val_every=20, checkpoint_every=5)
    whole = nss.retrain(tiny_config(architecture=str(arch_path), **options), out=tmp_path / "whole", progress=False)
    flags = ["--balancing", "dwa", "--steps", "80", "--val-every", "20", "--checkpoint-every", "5"]
    killed = kill_mid_run(["retrain", str(arch_path)] + TINY_FLAGS + flags, tmp_path / "killed", "retrain")
    resumed = nss.retrain(out=killed, resume=True, progress=False)
    for name in ("last.pt", "best.pt"):
        a = torch.load(whole / "checkpoints" / name, weights_only=True)["network"]
        b = torch.load(resumed / "checkpoints" / name, weights_only=True)["network"]
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)
    ours, theirs = pd.read_csv(resumed / "validation.csv"), pd.read_csv(whole / "validation.csv")
    assert len(ours) == len(theirs)
    np.testing.assert_allclose(ours["value"], theirs["value"], atol=1e-4)


def test_evaluation_matches_an_independent_computation(tmp_path):
    space = get_space("most_net_plus")
    network = build_network(space, get_size("tiny"))
    data = SyntheticDataset(SyntheticSpec(clips=2, frames=3, height=32, width=32), "val")
    table = evaluate(network, space, data, torch.device("cpu"), batch_size=2)
    assert set(table[table.model == "network"]["head"]) == set(space.heads)
    # the trivial restoration is the input frame: its PSNR over the split, by hand
    batch = default_collate([data[i] for i in range(len(data))])
    by_hand = psnr(batch["current"], batch["image"]).item()
    row = table[(table.model == "baseline") & (table.metric == "psnr")]
    assert row.value.item() == pytest.approx(by_hand, abs=1e-4)
    zero_flow_epe = batch["flow"].norm(dim=1).mean().item()
    assert table[(table.model == "baseline") & (table.metric == "epe")].value.item() == pytest.approx(
        zero_flow_epe, abs=1e-5)


def test_retrain_and_evaluate_from_the_command_line(tmp_path, capsys):
    arch_path = tmp_path / "arch.json"
    nss.save_architecture(arch_path, _one_head_per_task())
    flags = ["--network", "tiny", "--frame-size", "32x32", "--clips", "2", "--frames", "3", "--batch-size", "2",
             "--steps", "4", "--val-every", "2", "--balancing", "atb", "--quiet", "--device", "cpu"]
    assert main(["retrain", str(arch_path), "--out", str(tmp_path / "run")] + flags) == 0
    assert main(["retrain", "most_net_plus", "--out", str(tmp_path / "full")] + flags) == 0
    assert set(Architecture.load(tmp_path / "full" / "architecture.json").heads) == set(get_space("most_net_plus").heads)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "best.pt" in out and "restoration@1" in out and "baseline" in out
    table = pd.read_csv(tmp_path / "run" / "eval.csv")
    assert {"split", "checkpoint", "model", "head", "task", "scale", "metric", "value"} <= set(table)
    assert set(table[table.model == "network"]["head"]) == set(_one_head_per_task().heads)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["balancing"] == "atb"
    # on more synthetic clips than the run's own (2): the same as evaluating the network on a 3-clip split by hand
    assert main(["evaluate", str(tmp_path / "run"), "--split", "test", "--eval-clips", "3"]) == 0
    more = pd.read_csv(tmp_path / "run" / "eval.csv")
    model = TrainedModel.load(tmp_path / "run")
    spec = replace(synthetic_spec(model.config), eval_clips=3)
    by_hand = evaluate(model.network, model.space, open_dataset("synthetic", "test", spec), model.device, 2)
    np.testing.assert_allclose(more["value"], by_hand["value"], rtol=1e-6)
    assert not np.allclose(more["value"], table["value"])
    assert main(["evaluate", str(tmp_path / "run"), "--eval-clips", "0"]) == 1
    assert "--eval-clips: must be >= 1, got 0" in capsys.readouterr().err


def test_delta_mtl_against_a_reference_run(tmp_path, capsys):
    space = get_space("most_net_plus")
    nss.save_architecture(tmp_path / "arch.json", Architecture(space, space.fixed))
    for name, steps in (("short", 1), ("long", 6)):
        nss.retrain(tiny_config(architecture=str(tmp_path / "arch.json"), retrain_steps=steps, val_every=steps),
                    out=tmp_path / name, progress=False)
    reference = nss.evaluate_run(tmp_path / "short", "val")
    assert main(["evaluate", str(tmp_path / "long"), "--split", "val", "--reference", str(tmp_path / "short")]) == 0
    assert "Δ_MTL against" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "long" / "eval.csv")
    score = table[table.metric == "delta_mtl"].value.item()
    ours = table[(table.model == "network") & (table.metric != "delta_mtl")]
    theirs = reference[reference.model == "network"]
    by_hand = []
    for task in space.tasks:  # every head is the coarsest here, one per task
        changes = []
        for metric in task.metrics:
            a = ours[(ours.task == task.name) & (ours.metric == metric.name)].value.item()
            b = theirs[(theirs.task == task.name) & (theirs.metric == metric.name)].value.item()
            changes.append((a - b) / max(abs(b), 0.01) * (1 if metric.direction == "higher" else -1))
        by_hand.append(np.mean(changes))
    assert score == pytest.approx(100 * np.mean(by_hand), rel=1e-6)
    assert main(["evaluate", str(tmp_path / "long"), "--reference", str(tmp_path / "nowhere")]) == 1
