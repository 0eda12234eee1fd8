"""Search strategies: the sparsity penalties' pulls, the gate warm-up, knockout and one-shot selection, contiguity,
and a ground truth of a listed set of architectures."""
from itertools import product
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

import nss
from nss.cli import main
from nss.config import RunConfig
from nss.evaluation.metrics import delta_mtl, epe, iou, psnr, ssim
from nss.data import SyntheticDataset
from nss.experiments.runner import Resources
from nss.runs.folder import RunFolder
from nss.scale_search.derive import contiguous_heads, derive_architecture
from nss.scale_search.gates import Gates, sparsity_penalty
from nss.scale_search.objective import composites
from nss.evaluation.marginals import marginal_values
from nss.training.selection import fewest_heads_within, select_heads, subnetworks
from nss.training.distributed import SINGLE, World
from search_spaces import SearchSpace, get_space, head_name, read_json
from search_spaces.presets import TASKS

from conftest import TINY_FLAGS, tiny_config

SPACE = get_space("most_net_plus")


@pytest.mark.parametrize("kind, pull", [("log", lambda a: 1 - a), ("l1", lambda a: a * (1 - a)),
                                        ("skip-ce", lambda a: a)])
def test_each_penalty_pulls_a_logit_as_its_closed_form(kind, pull):
    """With α = σ(ℓ_on − ℓ_off) (softmax at τ = 1), ∂L_0/∂ℓ_on, by which descent pulls the logit down, is 1 − α for
    log, α(1 − α) for l1, α for skip-ce."""
    gates = Gates(("a", "b", "c"), "softmax")
    with torch.no_grad():
        gates.logits[:, 0] = torch.tensor([-3.0, 0.0, 2.5])
    penalty = sparsity_penalty(gates.sample(1.0).costs, kind)
    penalty.backward()
    alpha = torch.sigmoid(torch.tensor([-3.0, 0.0, 2.5]))
    torch.testing.assert_close(gates.logits.grad[:, 0], pull(alpha))
    torch.testing.assert_close(gates.logits.grad[:, 1], -gates.logits.grad[:, 0])  # the off logit: the opposite


def test_gates_are_held_during_the_warm_up_while_the_weights_move(tmp_path):
    result = nss.search(tiny_config(search_steps=6, gate_warmup=3, log_every=1), out=tmp_path / "run", progress=False)
    gates = pd.read_csv(result.run_dir / "gates.csv")
    search = gates[gates["phase"] == "search"]
    assert (search.loc[search["step"] <= 3, "prob"] == 0.5).all()
    assert (search.loc[search["step"] > 3, "prob"] != 0.5).all()
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    warm = metrics[(metrics["phase"] == "search") & (metrics["step"] <= 3)]
    assert warm["loss"].nunique() == 3  # the weights learn: each step's loss is another
    pretrained = torch.load(result.run_dir / "checkpoints" / "pretrained.pt", weights_only=True)["network"]
    last = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["network"]
    assert any(not torch.equal(pretrained[k], last[k]) for k in pretrained)


@dataclass(frozen=True)
class FakeSession:
    """What selection reads of a run's session."""

    config: nss.RunConfig
    space: SearchSpace
    validation: torch.utils.data.Dataset
    device: torch.device
    world: World = SINGLE


class HandMadeSupernet(nn.Module):
    """Outputs that ignore the input: restoration's scale-1 head is the clean frame itself and its scale-2 head a
    blurred copy, segmentation's and flow's heads are the same at every scale (their refinements are 0)."""

    def __init__(self, batch: dict):
        super().__init__()
        self.batch = batch
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, previous: torch.Tensor, current: torch.Tensor) -> dict[str, torch.Tensor]:
        clean, n = self.batch["image"], len(previous)
        out = {"restoration@1": clean[:n], "restoration@2": F.avg_pool2d(clean[:n], 2),
               "restoration@3": F.avg_pool2d(clean[:n], 4)}
        for task, channels in (("segmentation", 1), ("flow", 2)):
            for scale in (1, 2, 3):
                side = 32 // 2 ** (scale - 1)
                value = torch.full((n, channels, side, side), 0.25)  # 0.25 at full resolution (flow ×2 a scale)
                out[head_name(task, scale)] = value / 2 ** (scale - 1) if task == "flow" else value
        return out


def test_knockout_scores_each_head_by_what_the_composite_loses_without_it():
    data = SyntheticDataset(nss.SyntheticSpec(clips=1, frames=3, height=32, width=32), "val")
    batch = torch.utils.data.default_collate([data[i] for i in range(len(data))])
    network = HandMadeSupernet(batch)
    session = FakeSession(tiny_config(select="knockout", batch_size=len(data)), SPACE, data, torch.device("cpu"))
    selection = select_heads(session, network, Gates(SPACE.searchable))
    # by hand: with every head on, restoration is the clean frame; without @1 it is @2 upsampled; without @2 it is
    # @3 up + (@1 − @2 up); segmentation and flow are the same either way
    up = lambda x: F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)  # noqa: E731
    clean, current = batch["image"], batch["current"]
    def score(image):
        mask = torch.full_like(batch["mask"], 0.25)
        values = {"restoration": {"psnr": psnr(image.clamp(0, 1), clean).item(),
                                  "ssim": ssim(image.clamp(0, 1), clean).item()},
                  "segmentation": {"iou": iou(torch.sigmoid(mask), batch["mask"]).item()},
                  "flow": {"epe": epe(torch.full_like(batch["flow"], 0.25),
                                                             batch["flow"]).item()}}
        base = {"restoration": {"psnr": psnr(current, clean).item(), "ssim": ssim(current, clean).item()},
                "segmentation": {"iou": iou(torch.ones_like(batch["mask"]),
                                                                   batch["mask"]).item()},
                "flow": {"epe": epe(torch.zeros_like(batch["flow"]), batch["flow"]).item()}}
        return delta_mtl(values, base, SPACE.tasks)
    o1, o2, o3 = clean, up(F.avg_pool2d(clean, 2)), up(F.avg_pool2d(clean, 4))
    whole = score(o1)
    assert selection.scores["restoration@1"] == pytest.approx(whole - score(o2), abs=0.05)
    assert selection.scores["restoration@2"] == pytest.approx(whole - score(o3 + o1 - o2), abs=0.05)
    assert selection.scores["restoration@1"] > 1 and selection.scores["restoration@2"] > 0
    for head in ("segmentation@1", "segmentation@2", "flow@1", "flow@2"):
        assert selection.scores[head] == pytest.approx(0, abs=1e-6)  # no refinement, no loss, not kept
    assert selection.architecture.searchable_kept == ("restoration@1", "restoration@2")
    gain = (selection.scores["restoration@1"] + selection.scores["restoration@2"]) / 2
    strict = replace(session, config=replace(session.config, min_gain=gain))
    assert select_heads(strict, network, Gates(SPACE.searchable)).architecture.searchable_kept == ("restoration@1",)
    # one-shot on the same supernet: restoration@1 and @2 together give the clean frame, the best; the other heads
    # change nothing, so the fewest heads among the best are those two, and with a gain of 1000 points, none
    for min_gain, kept in ((0.0, ("restoration@1", "restoration@2")), (1000.0, ())):
        config = replace(session.config, select="oneshot", min_gain=min_gain)
        oneshot = select_heads(replace(session, config=config), network, Gates(SPACE.searchable))
        assert oneshot.architecture.searchable_kept == kept
        assert len(oneshot.subnetworks) == 64
    # contiguous selection (the default): restoration@1 is not kept without restoration@2, and oneshot measures the
    # 27 contiguous sub-networks only, with the same values as the per-head composite gives them (what a replay of
    # a recorded subnetworks.csv assumes), keeping the same pick as the 64 restricted to those 27
    chained = replace(strict, config=replace(strict.config, contiguous_selection=True))
    assert select_heads(chained, network, Gates(SPACE.searchable)).architecture.searchable_kept == ()
    every = oneshot.subnetworks.assign(heads=oneshot.subnetworks["heads"].str.split(","))
    every = every[[contiguous_heads(SPACE, [h for h in hs if h]) == tuple(h for h in hs if h) for hs in every["heads"]]]
    for min_gain in (0.0, 0.5, 2.0, 10.0, 1000.0):
        config = replace(session.config, select="oneshot", min_gain=min_gain, contiguous_selection=True)
        oneshot = select_heads(replace(session, config=config), network, Gates(SPACE.searchable))
        assert len(oneshot.subnetworks) == 27
        np.testing.assert_allclose(oneshot.subnetworks["delta_mtl_val"], every["delta_mtl_val"], atol=1e-9)
        expected = every["heads"].iloc[fewest_heads_within(every["delta_mtl_val"], every["kept"], min_gain)]
        assert oneshot.architecture.searchable_kept == tuple(h for h in expected if h)


def test_oneshot_enumerates_every_subnetwork_once():
    every = subnetworks(SPACE)
    assert len(every) == 64 and len(set(every)) == 64 and every[0] == () and every[-1] == SPACE.searchable
    chained = subnetworks(SPACE, contiguous=True)
    assert len(chained) == 27  # per task: nothing, @2, or @2 and @1
    assert all(contiguous_heads(SPACE, c) == c for c in chained)


def test_oneshot_keeps_the_cheapest_choice_within_the_min_gain_of_the_best():
    values, kept = [0.0, 5.0, 4.5, 6.0, 3.0], [0, 1, 1, 2, 1]
    assert fewest_heads_within(values, kept, 2.0) == 1  # 5 and 4.5 are within 2 of 6 at one head: the better
    assert fewest_heads_within(values, kept, 0.5) == 3  # only the best itself
    assert fewest_heads_within(values, kept, 2.0, allowed=[True, False, True, False, True]) == 2  # best allowed 4.5
    assert fewest_heads_within(values, kept, 10.0) == 0


def test_oneshot_scores_a_head_by_its_marginal_value_over_the_subnetworks():
    choices = [(), ("a",), ("b",), ("a", "b")]
    assert marginal_values(choices, [0.0, 4.0, 1.0, 5.0], ["a", "b", "c"]) == pytest.approx(
        {"a": 4.0, "b": 1.0, "c": float("nan")}, nan_ok=True)  # (4 + 5)/2 − (0 + 1)/2; c is in none


def test_oneshot_training_reaches_every_head_and_picks_the_best_measured(tmp_path):
    result = nss.search(tiny_config(select="oneshot", min_gain=0.0, search_steps=8), out=tmp_path / "run",
                        progress=False)
    pretrained = torch.load(result.run_dir / "checkpoints" / "pretrained.pt", weights_only=True)["network"]
    last = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["network"]
    for head in SPACE.searchable:
        names = [k for k in pretrained if k.startswith(f"heads.{head}.")]
        assert names and any(not torch.equal(pretrained[k], last[k]) for k in names), head
    gates = pd.read_csv(result.run_dir / "gates.csv")
    assert (gates["prob"] == 0.5).all() and set(gates["alpha"]) <= {0.0, 1.0}  # random 0/1 heads, gates unused
    measured = pd.read_csv(result.run_dir / "subnetworks.csv", dtype={"heads": str}, keep_default_na=False)
    assert len(measured) == 64
    best = measured.loc[measured["delta_mtl_val"].idxmax(), "heads"]
    assert ",".join(result.architecture.searchable_kept) == best
    saved = read_json(result.run_dir / "architecture.json")
    assert saved["select"] == "oneshot" and set(saved["scores"]) == set(SPACE.searchable)
    with pytest.raises(nss.NSSError, match="picked its heads by oneshot"):  # its pick is not a threshold's
        nss.derive(tmp_path / "a.json", run=result.run_dir, threshold=0.5)


def test_contiguity_never_derives_a_finer_head_without_its_coarser_one():
    rng = np.random.default_rng(0)
    for _ in range(200):
        probabilities = dict(zip(SPACE.searchable, rng.uniform(0, 1, len(SPACE.searchable))))
        kept = derive_architecture(SPACE, probabilities, 0.5, contiguous=True).heads
        for task in SPACE.tasks:
            assert head_name(task.name, 1) not in kept or head_name(task.name, 2) in kept
        loose = derive_architecture(SPACE, probabilities, 0.5).heads
        assert set(kept) <= set(loose)
        assert {h for h in loose if h.endswith("@2")} <= set(kept)  # only a finer head is ever dropped


def test_a_run_made_before_an_option_existed_keeps_what_it_did(tmp_path):
    """A run's config.yaml holds every option of its day: one it lacks takes the value it ran with, not today's
    default (before --min-gain a head was kept on any gain; before --contiguous-selection, heads were kept alone)."""
    today = RunFolder(tmp_path / "today")
    today.path.mkdir()
    (today.path / RunFolder.CONFIG).write_text(yaml.safe_dump({"command": "search", **RunConfig().to_dict()}))
    assert today.config()[1] == RunConfig()
    older = RunFolder(tmp_path / "older")
    older.path.mkdir()
    (older.path / RunFolder.CONFIG).write_text("command: search\nselect: knockout\ntau: 2.0\n")
    config = older.config()[1]
    assert (config.min_gain, config.contiguous_selection, config.keeps_contiguous, config.tau) == (0.0, False, False,
                                                                                                    2.0)


def test_a_contiguous_search_derives_contiguously_again(tmp_path):
    result = nss.search(tiny_config(contiguous=True, gate_lr=0.5, sparsity=0.05), out=tmp_path / "run",
                        progress=False)
    assert contiguous_heads(SPACE, result.architecture.searchable_kept) == result.architecture.searchable_kept
    for threshold in (0.3, 0.5, 0.7):
        again = nss.derive(tmp_path / f"{threshold}.json", run=result.run_dir, threshold=threshold)
        assert again == derive_architecture(SPACE, result.probabilities, threshold, contiguous=True)
        assert contiguous_heads(SPACE, again.searchable_kept) == again.searchable_kept


def test_contiguous_composite_gates_a_finer_refinement_by_the_coarser_gate():
    full = {h: torch.full((1, 3, 4, 4), float(s)) for h, s in
            ((head_name(t, s), s) for t, s in product(("restoration",), (1, 2, 3)))}
    space = SearchSpace("r", 3, (TASKS["restoration"],), tuple(full), ("restoration@3",))
    deltas = {"restoration@1": torch.ones(1, 3, 4, 4), "restoration@2": torch.ones(1, 3, 4, 4) * 10}
    alphas = {"restoration@1": torch.tensor(0.5), "restoration@2": torch.tensor(0.2)}
    loose = composites(space, full, deltas, alphas)["restoration"]
    chained = composites(space, full, deltas, alphas, contiguous=True)["restoration"]
    assert loose.flatten()[0].item() == pytest.approx(3 + 0.2 * 10 + 0.5)
    assert chained.flatten()[0].item() == pytest.approx(3 + 0.2 * 10 + 0.5 * 0.2)


def test_groundtruth_retrains_exactly_the_listed_architectures_and_resumes(tmp_path):
    listed = tmp_path / "architectures.txt"
    listed.write_text("# two of the 64\nrestoration@1,flow@2\n-\nflow@2, restoration@1\n")
    out = tmp_path / "gt"
    base = tiny_config(retrain_steps=2, val_every=2, eval_clips=2)
    ranking = nss.groundtruth(out=out, base=base, architectures=listed, iters=2,
                              resources=Resources(inline=True), progress=False)
    assert sorted(ranking["heads"].fillna("")) == ["", "restoration@1,flow@2"]
    assert set(ranking["status"]) == {"done"} and len(list((out / "trials").iterdir())) == 2
    records = {p.parent.name: p.read_text() for p in out.glob("trials/*/trial.json")}
    removed = sorted(records)[0]
    (out / "trials" / removed / "trial.json").unlink()  # as if killed before it ended
    resumed = nss.groundtruth(out=out, resume=True, resources=Resources(inline=True), progress=False)
    assert set(resumed["status"]) == {"done"} and len(resumed) == 2
    kept = sorted(records)[1]
    assert (out / "trials" / kept / "trial.json").read_text() == records[kept]  # not rerun
    # seed 1 added for one of them: the ranking says which rows have one seed and which two
    one = tmp_path / "one.txt"
    one.write_text("restoration@1,flow@2\n")
    added = nss.groundtruth(out=out, resume=True, seeds=[1], architectures=one, resources=Resources(inline=True),
                            progress=False)
    assert dict(zip(added["heads"].fillna(""), added["seeds_done"])) == {"restoration@1,flow@2": 2, "": 1}
    assert len(list((out / "trials").iterdir())) == 3
    csv_listed = tmp_path / "picks.csv"
    ranking[["heads"]].to_csv(csv_listed, index=False)  # a CSV with a heads column, as ranking.csv
    again = nss.groundtruth(out=tmp_path / "again", base=base, architectures=csv_listed, iters=2,
                            resources=Resources(inline=True), progress=False)
    assert set(again["architecture"]) == set(ranking["architecture"])


def test_bad_strategy_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    for flags, message in ((["--select", "best"], "--select: must be one of gates, knockout, oneshot, got 'best'"),
                           (["--sparsity-kind", "l0"], "--sparsity-kind: must be one of log, l1, skip-ce"),
                           (["--gate-warmup", "6", "--search-steps", "6"], "--gate-warmup: 6 steps leave none"),
                           (["--gate-warmup", "-1"], "--gate-warmup: must be >= 0")):
        code = main(["search", *TINY_FLAGS, *flags, "--out", str(out)])
        assert code != 0 and message in capsys.readouterr().err and not out.exists(), flags
    (tmp_path / "c.yaml").write_text("select: greedy\n")
    assert main(["search", *TINY_FLAGS, "--config", str(tmp_path / "c.yaml"), "--out", str(out)]) == 1
    assert "select" in capsys.readouterr().err and not out.exists()
    # a space of 12 searchable heads has 4096 sub-networks: too many to measure each
    wide = SearchSpace("wide", 5, tuple(TASKS[t] for t in ("restoration", "segmentation", "flow")),
                       tuple(head_name(t, s) for t in ("restoration", "segmentation", "flow") for s in range(1, 6)),
                       tuple(head_name(t, 5) for t in ("restoration", "segmentation", "flow")))
    (tmp_path / "wide.json").write_text(wide.to_json())
    assert main(["search", *TINY_FLAGS, "--frame-size", "64x64", "--space", str(tmp_path / "wide.json"),
                 "--select", "oneshot", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "--select oneshot" in err and "12 searchable heads" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    listed = tmp_path / "a.txt"
    listed.write_text("restoration@1\nflow@4\n")
    assert main(["groundtruth", "--architectures", str(listed), "--out", str(tmp_path / "gt"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{listed} line 2: 'flow@4' is not a head of 'most_net_plus'" in err and not (tmp_path / "gt").exists()
    assert main(["groundtruth", "--architectures", str(listed), "--sample", "4", "--out", str(tmp_path / "gt"),
                 "--quiet"]) == 1
    assert "--architectures and --sample" in capsys.readouterr().err


def test_the_thin_fast_scene_has_smooth_texture_thin_shapes_and_fast_motion():
    """What its clips are made to ask of a network: no fine texture, objects a few pixels wide, moving fast."""
    textured = nss.data.synthetic.render_clip(nss.SyntheticSpec(seed=1), "train", 0)
    thin = nss.data.synthetic.render_clip(nss.SyntheticSpec(seed=1, scene="thin-fast"), "train", 0)

    def fine_energy(clip):  # mean squared 4-neighbour Laplacian of the background, away from object edges
        c = clip["clean"]
        lap = 4 * c[:, 1:-1, 1:-1] - c[:, :-2, 1:-1] - c[:, 2:, 1:-1] - c[:, 1:-1, :-2] - c[:, 1:-1, 2:]
        near = F.max_pool2d(torch.from_numpy(clip["mask"]).float()[:, None], 5, stride=1, padding=2)[:, 0]
        return float((lap ** 2).sum(-1)[near[:, 1:-1, 1:-1].numpy() == 0].mean())
    assert fine_energy(thin) < fine_energy(textured) / 20
    mask = torch.from_numpy(thin["mask"][1:]).float()[:, None]
    core = -F.max_pool2d(-mask, 7, stride=1, padding=3)  # foreground whose whole 7×7 square is foreground
    assert mask.sum() > 0 and core.sum() == 0  # every object is thinner than 7 pixels
    speed = np.linalg.norm(thin["flow"][1:], axis=-1)
    assert np.median(speed[thin["mask"][1:]]) >= 2 and np.median(speed[~thin["mask"][1:]]) < 1
    assert np.median(np.linalg.norm(textured["flow"][1:], axis=-1)[textured["mask"][1:]]) < 3
