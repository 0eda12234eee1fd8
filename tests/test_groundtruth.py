"""Ground truth of a space and where a search stands in it: enumeration, the ranking on hand-made records, marginal
values, rank correlations, and real (tiny) ground truths on a local Ray with resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import nss
from nss.cli import main
from nss.groundtruth import enumerate_architectures, marginal_values, ranking_table
from nss.metrics import pareto_mask
from nss.trials import Experiment, Resources, ray_session
from search_spaces import Architecture, get_space

from conftest import tiny_config

SPACE = get_space("most_net_plus")
GT_FLAGS = ["--network", "tiny", "--frame-size", "32x32", "--clips", "2", "--frames", "3", "--batch-size", "2",
            "--device", "cpu", "--retrain-steps", "2", "--val-every", "2", "--iters", "2", "--quiet"]


@pytest.fixture(scope="module")
def ray_cluster():
    with ray_session(Resources(workers=2)):
        yield


# -- enumeration ------------------------------------------------------------------------------------------------
def test_every_architecture_once_with_the_fixed_heads_on():
    every = enumerate_architectures(SPACE)
    assert len(every) == 2 ** len(SPACE.searchable) == 64 and len({a.id for a in every}) == 64
    assert all(set(SPACE.fixed) <= set(a.heads) for a in every)
    assert every[0].heads == SPACE.fixed and every[-1].heads == SPACE.heads


@pytest.mark.parametrize("sample, seed", [(2, 0), (16, 0), (16, 1), (64, 3)])
def test_a_sample_is_uniform_without_replacement_and_holds_the_full_and_minimal(sample, seed):
    picked = enumerate_architectures(SPACE, sample, seed)
    assert len(picked) == sample == len({a.id for a in picked})
    assert picked[0].heads == SPACE.fixed and picked[-1].heads == SPACE.heads
    assert picked == enumerate_architectures(SPACE, sample, seed)  # the seed decides


def test_samples_cover_the_space_evenly():
    counts = pd.Series([a.id for s in range(300) for a in enumerate_architectures(SPACE, 10, s)[1:-1]]).value_counts()
    assert len(counts) == 62 and counts.min() > 15 and counts.max() < 85  # expected 300·8/62 ≈ 39 each


def test_a_sample_larger_than_the_space_is_refused():
    with pytest.raises(nss.NSSError, match="'most_net_plus' has 64 architectures"):
        enumerate_architectures(SPACE, 65)


# -- the ranking on hand-made records ---------------------------------------------------------------------------
def _record(delta, latency, params, metrics):
    splits = {s: {"delta_mtl": delta + (0.5 if s == "val" else 0.0), "metrics": metrics, "baseline": metrics}
              for s in ("val", "test")}
    return {"status": "done", "message": "", "wall_time_s": 10.0, "delta_mtl": delta,
            "result": {"splits": splits, "latency_ms": latency, "params": params, "flops": params * 10}}


def _metrics(psnr):
    return {"restoration": {"psnr": psnr, "ssim": 0.5}, "segmentation": {"iou": 0.5}, "flow": {"epe": 1.0}}


@pytest.fixture
def hand_made(tmp_path):
    """Four architectures, two seeds each; (Δ_MTL, latency, params) chosen so the fronts are known."""
    every = enumerate_architectures(SPACE)
    chosen = {every[0]: (10.0, 1.0, 100), every[1]: (30.0, 2.0, 300), every[2]: (20.0, 3.0, 350),
              every[-1]: (40.0, 5.0, 500)}
    experiment = Experiment(tmp_path / "gt", "groundtruth")
    experiment.create({})
    for arch, (delta, latency, params) in chosen.items():
        for seed, jitter in ((0, -1.0), (1, 1.0)):
            experiment.trial_dir(f"{arch.id}-seed{seed}").mkdir(parents=True)
            experiment.write_record(f"{arch.id}-seed{seed}",
                                    _record(delta + jitter, latency, params, _metrics(20 + delta / 10 + jitter)))
    return experiment, list(chosen), chosen


def test_ranking_columns_ranks_and_pareto_flags_on_a_hand_made_table(hand_made):
    experiment, archs, chosen = hand_made
    table = ranking_table(experiment, archs, [0, 1]).set_index("architecture")
    assert {"heads", "kept", "seeds_done", "restoration/psnr", "restoration/psnr_std", "segmentation/iou",
            "flow/epe", "delta_mtl", "delta_mtl_std", "delta_mtl_val", "delta_mtl_vs_full", "params", "flops",
            "latency_ms", "pareto_latency", "pareto_params", "rank", "percentile"} <= set(table.columns)
    for arch, (delta, latency, params) in chosen.items():
        row = table.loc[arch.id]
        assert row["delta_mtl"] == pytest.approx(delta) and row["delta_mtl_std"] == pytest.approx(1.0)
        assert row["delta_mtl_val"] == pytest.approx(delta + 0.5) and row["seeds_done"] == 2
        assert row["restoration/psnr"] == pytest.approx(20 + delta / 10)
    ranks = {arch.id: r for arch, r in zip(archs, (4, 2, 3, 1))}
    assert table["rank"].to_dict() == ranks
    assert table["percentile"].to_dict() == {a: 100 * (4 - r) / 3 for a, r in ranks.items()}
    # latency: the 20-point architecture (3 ms) is beaten by the 30-point one (2 ms); params likewise
    front = {archs[0].id, archs[1].id, archs[3].id}
    assert set(table.index[table["pareto_latency"]]) == front == set(table.index[table["pareto_params"]])
    assert table.loc[archs[3].id, "delta_mtl_vs_full"] == pytest.approx(0.0)


def test_pareto_mask_by_hand():
    assert list(pareto_mask([1, 2, 3, 3], [1, 3, 2, 3])) == [True, True, False, False]


def test_marginal_values_on_a_hand_made_ranking():
    heads = SPACE.searchable
    rows = [{"status": "done", "heads": ",".join(h for h in heads if h in kept), "delta_mtl": value}
            for kept, value in [((), 0.0), ((heads[0],), 10.0), ((heads[1],), 4.0), ((heads[0], heads[1]), 12.0)]]
    marginal = marginal_values(pd.DataFrame(rows), SPACE)
    assert marginal[heads[0]] == pytest.approx((10 + 12) / 2 - (0 + 4) / 2)
    assert marginal[heads[1]] == pytest.approx((4 + 12) / 2 - (0 + 10) / 2)
    assert np.isnan(marginal[heads[2]])  # never kept: no value


# -- real ground truths -----------------------------------------------------------------------------------------
def test_groundtruth_and_rank_of_a_search_in_it(tmp_path, capsys, ray_cluster):
    out = tmp_path / "gt"
    assert main(["groundtruth", *GT_FLAGS, "--sample", "4", "--seed", "1", "--workers", "2", "--out", str(out)]) == 0
    ranking = pd.read_csv(out / "ranking.csv")
    assert len(ranking) == 4 and set(ranking["status"]) == {"done"}
    assert "4 architectures of most_net_plus: 4 retrained" in capsys.readouterr().out
    for run in out.glob("trials/*"):
        table = pd.read_csv(run / "eval.csv")
        assert set(table["split"]) == {"val", "test"} and (run / "profile.json").is_file()

    # a search whose architecture is in the ground truth: give it the full network's gates (all kept)
    search = nss.search(tiny_config(threshold=0.01, search_steps=2, pretrain_steps=2), out=tmp_path / "search",
                        progress=False)
    assert search.architecture == Architecture.full(SPACE)
    assert main(["rank", str(out), str(tmp_path / "search")]) == 0
    ranked = pd.read_csv(out / "rank.csv").iloc[0]
    full = ranking[ranking["architecture"] == search.architecture.id].iloc[0]
    assert ranked["rank"] == full["rank"] and ranked["percentile"] == pytest.approx(full["percentile"])
    assert ranked["groundtruth_wall_s"] == pytest.approx(ranking["wall_time_s"].sum())
    assert ranked["search_wall_s"] > 0

    # the correlations are scipy's on the gates and the marginal values
    marginal = marginal_values(ranking.astype({"heads": str}), SPACE)
    gates = json.loads((tmp_path / "search" / "architecture.json").read_text())["gates"]
    heads = [h for h in SPACE.searchable if not np.isnan(marginal[h])]
    if len(heads) >= 3:
        expected = stats.kendalltau([gates[h] for h in heads], [marginal[h] for h in heads]).statistic
        assert ranked["kendall_tau"] == pytest.approx(expected, nan_ok=True)

    assert main(["report", str(out), str(tmp_path / "search"), "--out", str(tmp_path / "report")]) == 0
    for name in ("gt_groundtruth.png", "gt_marginal_values.png", "gt_delta_distribution.png"):
        assert (tmp_path / "report" / name).is_file()

    # a search of another space is named and refused
    other = nss.search(tiny_config(space="most_net_pp", search_steps=2, pretrain_steps=2), out=tmp_path / "pp",
                       progress=False)
    assert main(["rank", str(out), str(other.run_dir)]) == 1
    assert "searched space 'most_net_pp', but the ground truth is of 'most_net_plus'" in capsys.readouterr().err


def test_a_groundtruth_killed_with_sigkill_resumes_without_rerunning(tmp_path, ray_cluster):
    out = tmp_path / "gt"
    flags = [f for f in GT_FLAGS if f != "--quiet"] + ["--retrain-steps", "12", "--checkpoint-every", "3"]
    driver = subprocess.Popen([sys.executable, "-m", "nss.cli", "groundtruth", *flags, "--sample", "4",
                               "--workers", "2", "--out", str(out), "--quiet"],
                              env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(out.glob("trials/*/trial.json")):
        assert driver.poll() is None, driver.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no trial ended"
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    finished = {p.parent.name: p.read_text() for p in out.glob("trials/*/trial.json")}
    ranking = nss.groundtruth(out=out, resume=True, resources=Resources(workers=2), progress=False)
    assert len(ranking) == 4 and set(ranking["status"]) == {"done"}
    assert all((out / "trials" / name / "trial.json").read_text() == text for name, text in finished.items())


def test_bad_groundtruth_input(tmp_path, capsys):
    assert main(["groundtruth", "--sample", "99", "--out", str(tmp_path / "gt")]) == 1
    assert "a sample holds 2" in capsys.readouterr().err and not (tmp_path / "gt").exists()
    assert main(["groundtruth", "--space", "nope", "--out", str(tmp_path / "gt")]) == 1
    assert "unknown space 'nope'" in capsys.readouterr().err and not (tmp_path / "gt").exists()
    assert main(["rank", str(tmp_path / "nowhere"), str(tmp_path)]) == 1
    assert "not a groundtruth folder" in capsys.readouterr().err
