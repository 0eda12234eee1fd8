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
from matplotlib.collections import LineCollection
from scipy import stats

import nss
from analysis.experiments import plot_groundtruth
from nss import RunConfig
from nss.cli import main
from nss.data import synthetic_spec
from nss.evaluation.metrics import pareto_mask
from nss.experiments.experiment import Experiment, Trial
from nss.experiments.groundtruth import (GROUNDTRUTH_EVAL_CLIPS, _describe, enumerate_architectures, groundtruth_base,
                                         groundtruth_trials, marginal_values, ranking_table, summary, tie_margin)
from nss.experiments.runner import Resources, ray_session
from nss.runs.folder import RunFolder
from search_spaces import Architecture, SearchSpace, get_space

from conftest import tiny_config

SPACE = get_space("most_net_plus")
GT_FLAGS = ["--network", "tiny", "--frame-size", "32x32", "--clips", "2", "--frames", "3", "--batch-size", "2",
            "--device", "cpu", "--retrain-steps", "2", "--val-every", "2", "--iters", "2", "--eval-clips", "2",
            "--quiet"]


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


def test_trials_run_seed_by_seed_with_the_ends_first_and_a_stopped_one_holds_a_uniform_sample(tmp_path):
    every = enumerate_architectures(SPACE)
    experiment = Experiment(tmp_path / "gt", "groundtruth")
    experiment.create({"base": RunConfig(seed=5).to_dict(), "seeds": [5, 7], "options": {"iters": 2}})
    trials = groundtruth_trials(experiment, every)
    assert [t.settings["seed"] for t in trials] == [5] * 64 + [7] * 64
    first, second = [t.settings["architecture"] for t in trials[:64]], [t.settings["architecture"] for t in trials[64:]]
    assert first == second and sorted(first) == sorted(a.id for a in every)
    assert first[:2] == [every[0].id, every[-1].id] and first[2:] != [a.id for a in every[1:-1]]
    assert all(Architecture.load(t.config["architecture"]).id == t.settings["architecture"]
               and t.config["seed"] == t.settings["seed"] and t.options == {"iters": 2} for t in trials)
    # the order drawn by the base seed: where a mask-order run would have reached only the low masks, the first
    # 16 after the ends hold as many architectures with the last searchable head as without it (± sampling)
    with_last = sum(SPACE.searchable[-1] in Architecture.load(t.config["architecture"]).heads for t in trials[2:18])
    again = groundtruth_trials(experiment, every)  # a resumed ground truth runs them in the same order
    assert 3 <= with_last <= 13 and [t.name for t in again] == [t.name for t in trials]
    lone = enumerate_architectures(SearchSpace.from_dict(dict(SPACE.to_dict(), name="lone", fixed=list(SPACE.heads))))
    assert [t.name for t in groundtruth_trials(experiment, lone)] == [f"{lone[0].id}-seed5", f"{lone[0].id}-seed7"]


def test_every_retraining_seed_shares_the_clips_and_is_measured_on_many_of_them():
    base = groundtruth_base(RunConfig(seed=3))
    assert (base.seed, base.data_seed, base.eval_clips) == (3, 3, GROUNDTRUTH_EVAL_CLIPS)
    assert synthetic_spec(base).clips_in("test") == GROUNDTRUTH_EVAL_CLIPS > RunConfig().clips // 4
    given = groundtruth_base(RunConfig(seed=3, data_seed=1, eval_clips=5))
    assert (given.data_seed, given.eval_clips) == (1, 5)


# -- the ranking on hand-made records ---------------------------------------------------------------------------
def _record(delta, latency, params, metrics):
    splits = {s: {"delta_mtl": delta + (0.5 if s == "val" else 0.0), "metrics": metrics, "baseline": metrics}
              for s in ("val", "test")}
    return {"status": "done", "message": "", "wall_time_s": 10.0,
            "result": {"delta_mtl": delta, "splits": splits, "params": params, "flops": params * 10}}


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
    failing = every[3]  # both its retrainings failed: it is a row with its message, ranked nowhere
    for seed in (0, 1):
        experiment.write_error(Trial(f"{failing.id}-seed{seed}", "groundtruth", {}), "step 3: the loss of flow is nan")
    latency = {arch.id: value[1] for arch, value in chosen.items()}
    return experiment, list(chosen) + [failing], chosen, latency


def test_ranking_columns_ranks_and_pareto_flags_on_a_hand_made_table(hand_made):
    experiment, archs, chosen, latency = hand_made
    # the finished records are the done ones, not the failing architecture's
    assert [r["name"] for r in experiment.finished()] == sorted(f"{a.id}-seed{s}" for a in chosen for s in (0, 1))
    table = ranking_table(experiment, archs, [0, 1], latency).set_index("architecture")
    failed = table.loc[archs[4].id]
    assert failed["status"] == "error" and failed["message"] == "step 3: the loss of flow is nan"
    assert np.isnan(failed["rank"]) and not failed["pareto_latency"]
    table, archs, failed_arch = table.drop(archs[4].id), archs[:4], archs[4]
    assert {"heads", "kept", "seeds_done", "restoration/psnr", "restoration/psnr_std", "segmentation/iou",
            "flow/epe", "delta_mtl", "delta_mtl_std", "delta_mtl_val", "delta_mtl_vs_full", "params", "flops",
            "latency_ms", "pareto_latency", "pareto_params", "rank", "percentile"} <= set(table.columns)
    for arch, (delta, latency, params) in chosen.items():
        row = table.loc[arch.id]
        assert row["delta_mtl"] == pytest.approx(delta) and row["delta_mtl_std"] == pytest.approx(np.sqrt(2))
        assert row["delta_mtl_val"] == pytest.approx(delta + 0.5) and row["seeds_done"] == 2
        assert row["restoration/psnr"] == pytest.approx(20 + delta / 10)
    ranks = {arch.id: r for arch, r in zip(archs, (4, 2, 3, 1))}
    assert table["rank"].to_dict() == ranks
    assert table["percentile"].to_dict() == {a: 100 * (4 - r) / 3 for a, r in ranks.items()}
    # latency: the 20-point architecture (3 ms) is beaten by the 30-point one (2 ms); params likewise
    front = {archs[0].id, archs[1].id, archs[3].id}
    assert set(table.index[table["pareto_latency"]]) == front == set(table.index[table["pareto_params"]])
    # against the full network's retraining (PSNR 24 dB; the others' metrics equal): (20 + Δ/10 − 24) / 24 over
    # restoration's two metrics, averaged over the three tasks
    for arch, (delta, _, _) in chosen.items():
        by_hand = 100 * ((20 + delta / 10 - 24) / 24 / 2) / 3
        assert table.loc[arch.id, "delta_mtl_vs_full"] == pytest.approx(by_hand)
    # the noise floor (√2 between two seeds) makes a 10-point gap a real one: only the best is tied with itself
    assert table["tied_with_best"].to_dict() == {a.id: a == archs[3] for a in archs}
    # while a ground truth runs: one with no record yet is "not run"; no latency yet, so no front by latency
    partial = ranking_table(experiment, [*archs, failed_arch, enumerate_architectures(SPACE)[5]], [0, 1], {})
    assert list(partial["status"]) == ["done"] * 4 + ["error", "not run"] and not partial["pareto_latency"].any()
    assert set(partial.loc[partial["pareto_params"], "architecture"]) == front
    assert summary(partial, SPACE).splitlines()[:2] == [
        "6 architectures of most_net_plus: 4 retrained, 1 failed, 1 not run yet",
        "best Δ_MTL +40.00% (restoration@1,restoration@2,segmentation@1,segmentation@2,flow@1,flow@2); noise floor "
        "1.41 points (median over the 4 architectures with two seeds or more)"]


def test_ties_count_the_seeds_each_architecture_has_so_far(tmp_path):
    """A ground truth part way through its second seed: the best has two retrainings (40 ± 1: floor √2), another
    one so far (37). Their difference has spread floor·√(1/1 + 1/2), so 3 points are a tie (margin 3.46); had
    both two seeds (margin 2·√2·√(2/2) = 2.83) they would not be."""
    best, other = enumerate_architectures(SPACE)[:2]
    experiment = Experiment(tmp_path / "gt", "groundtruth")
    experiment.create({})
    for name, delta in ((f"{best.id}-seed0", 39.0), (f"{best.id}-seed1", 41.0), (f"{other.id}-seed0", 37.0)):
        experiment.trial_dir(name).mkdir(parents=True)
        experiment.write_record(name, _record(delta, 1.0, 100, _metrics(20)))
    table = ranking_table(experiment, [best, other], [0, 1], {}).set_index("architecture")
    assert table["seeds_done"].to_dict() == {best.id: 2, other.id: 1}
    assert tie_margin(table, 1, 2) == pytest.approx(2 * np.sqrt(2) * np.sqrt(1.5)) and tie_margin(table) < 3
    assert table["tied_with_best"].to_dict() == {best.id: True, other.id: True}


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


def test_rank_of_search_runs_in_a_hand_made_ground_truth(tmp_path):
    """A ranking.csv written by hand, and searches whose gates are given: rank, percentile, front and the rank
    correlations, worked out by hand."""
    heads = SPACE.searchable
    experiment = Experiment(tmp_path / "gt", "groundtruth")
    experiment.create({"space": SPACE.to_dict()})
    values = {(): 0.0, (heads[0],): 10.0, (heads[1],): 4.0, (heads[0], heads[1]): 12.0, (heads[2],): 1.0,
              (heads[0], heads[2]): 11.0, (heads[3],): -2.0, (heads[4],): 3.0, (heads[5],): 2.0}
    rows = []
    for kept, value in values.items():
        arch = Architecture(SPACE, SPACE.fixed + kept)
        rows.append({"architecture": arch.id, "heads": ",".join(kept), "kept": len(kept), "seeds_done": 1,
                     "status": "done", "delta_mtl": value, "latency_ms": 10 + 2 * len(kept), "params": 1,
                     "pareto_latency": False, "pareto_params": False, "wall_time_s": 100.0})
    ranking = pd.DataFrame(rows)
    ranking["rank"] = ranking["delta_mtl"].rank(ascending=False, method="min").astype(int)
    ranking["percentile"] = 100 * (len(ranking) - ranking["rank"]) / (len(ranking) - 1)
    ranking.to_csv(experiment.path / "ranking.csv", index=False)
    marginal = marginal_values(ranking, SPACE)
    # head 0: with (10, 12, 11) − without (0, 4, 1, −2, 3, 2) = 11 − 1.333…
    assert marginal[heads[0]] == pytest.approx(11 - 8 / 6)

    search = tmp_path / "search"
    search.mkdir()
    (search / "config.yaml").write_text("command: search\n")
    pd.DataFrame({"phase": ["pretrain", "search"], "wall_time": [30.0, 20.0]}).to_csv(search / "metrics.csv")
    gates = dict(zip(heads, (0.9, 0.8, 0.1, 0.2, 0.3, 0.4)))
    kept = (heads[0], heads[1])  # what a threshold of 0.5 keeps
    arch = Architecture(SPACE, SPACE.fixed + kept)
    (search / "architecture.json").write_text(json.dumps(dict(arch.to_dict(), gates=gates, tau=5.0)))
    row = nss.rank(experiment.path, [search]).iloc[0]
    assert (row["rank"], row["of"], row["percentile"]) == (1, 9, 100.0)
    assert row["below_front"] == 0.0 and row["search_wall_s"] == 50.0 and row["groundtruth_wall_s"] == 900.0
    # Kendall's τ and Spearman's ρ by hand: the gates' order against the marginal values' order
    probabilities, measured = [gates[h] for h in heads], [marginal[h] for h in heads]
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    concordant = sum(np.sign(probabilities[i] - probabilities[j]) * np.sign(measured[i] - measured[j]) for i, j in pairs)
    assert row["kendall_tau"] == pytest.approx(concordant / len(pairs))
    order = lambda v: np.argsort(np.argsort(v))  # noqa: E731 (no ties here)
    d = order(probabilities) - order(measured)
    assert row["spearman_rho"] == pytest.approx(1 - 6 * (d ** 2).sum() / (6 * (36 - 1)))
    # the same against scipy's
    assert row["kendall_tau"] == pytest.approx(stats.kendalltau(probabilities, measured).statistic)
    # the figure labels a pick with its rank among the retrained, also while others are not run yet (no rank)
    ranking.loc[(ranking["architecture"] != arch.id).idxmax(), ["status", "rank"]] = ["not run", np.nan]
    ranking.to_csv(experiment.path / "ranking.csv", index=False)
    picks = pd.DataFrame({"architecture": [arch.id], "label": ["tau5"], "tau": [5.0], "seed": [0]})
    assert [t.get_text() for t in plot_groundtruth(experiment.path, picks).axes[0].texts] == ["tau5: rank 1/8"]
    # rows retrained with two seeds show their mean ± the seeds' spread; one-seed rows no bar
    two = ranking.index[ranking["status"] == "done"][:2]
    ranking["delta_mtl_std"] = np.nan
    ranking.loc[two, ["seeds_done", "delta_mtl_std"]] = [2, 1.5]
    ranking.to_csv(experiment.path / "ranking.csv", index=False)
    [bars] = [c.get_segments() for c in plot_groundtruth(experiment.path, picks).axes[0].collections
              if isinstance(c, LineCollection)]
    expected = [[[ranking.at[i, "latency_ms"], ranking.at[i, "delta_mtl"] + d] for d in (-1.5, 1.5)] for i in two]
    np.testing.assert_allclose(np.array(bars), np.array(expected))
    ranking.loc[two, "seeds_done"] = 1
    # a ground truth still running: the search's pick not retrained yet is named so, not ranked
    ranking.loc[ranking["architecture"] == arch.id, "status"] = "not run"
    ranking.to_csv(experiment.path / "ranking.csv", index=False)
    row = nss.rank(experiment.path, [search]).iloc[0]
    assert row["note"] == "architecture not retrained yet in the ground truth" and "rank" not in row
    ranking.loc[ranking["architecture"] == arch.id, "status"] = "error"
    ranking.to_csv(experiment.path / "ranking.csv", index=False)
    assert nss.rank(experiment.path, [search]).iloc[0]["note"] == "architecture failed in the ground truth"
    # a retraining is not a search run
    (search / "config.yaml").write_text("command: retrain\n")
    with pytest.raises(nss.NSSError, match="not a finished search run"):
        nss.rank(experiment.path, [search])


# -- real ground truths -----------------------------------------------------------------------------------------
def test_groundtruth_and_rank_of_a_search_in_it(tmp_path, capsys, ray_cluster):
    out = tmp_path / "gt"
    assert main(["groundtruth", *GT_FLAGS, "--sample", "4", "--seed", "1", "--workers", "2", "--out", str(out)]) == 0
    ranking = pd.read_csv(out / "ranking.csv")
    assert len(ranking) == 4 and set(ranking["status"]) == {"done"} and (ranking["latency_ms"] > 0).all()
    assert "4 architectures of most_net_plus: 4 retrained" in capsys.readouterr().out
    # each trial ran once (an error in Tune's callback, e.g. its progress line, makes Tune run a trial again)
    for run in out.glob("trials/*"):
        record = json.loads((run / "trial.json").read_text())
        assert record["started_at"] < (run / "checkpoints/last.pt").stat().st_mtime
        assert "test Δ_MTL" in _describe(record)  # the progress line of a finished trial
    assert set(pd.read_csv(out / "latency.csv")["architecture"]) == set(ranking["architecture"])
    for run in out.glob("trials/*"):
        assert set(pd.read_csv(run / "eval.csv")["split"]) == {"val", "test"}
        config = RunFolder(run).read_yaml("config.yaml")
        assert (config["seed"], config["data_seed"]) == (1, 1)  # another retraining seed would keep data seed 1
        assert config["eval_clips"] == 2

    # a search whose architecture is in the ground truth: give it the full network's gates (all kept)
    search = nss.search(tiny_config(threshold=0.01, search_steps=2, pretrain_steps=2), out=tmp_path / "search",
                        progress=False)
    assert search.architecture == Architecture.full(SPACE)
    assert main(["rank", str(out), str(tmp_path / "search")]) == 0
    ranked = pd.read_csv(out / "rank.csv").iloc[0]
    full = ranking[ranking["architecture"] == search.architecture.id].iloc[0]
    assert ranked["rank"] == full["rank"] and ranked["percentile"] == pytest.approx(full["percentile"])
    assert ranked["groundtruth_wall_s"] == pytest.approx(ranking["wall_time_s"].sum())

    assert main(["report", str(out), str(tmp_path / "search"), "--out", str(tmp_path / "report")]) == 0
    for name in ("gt_groundtruth.png", "gt_marginal_values.png", "gt_delta_distribution.png"):
        assert (tmp_path / "report" / name).is_file()

    # a search of another space is named and refused
    other = nss.search(tiny_config(space="most_net_pp", search_steps=2, pretrain_steps=2), out=tmp_path / "pp",
                       progress=False)
    assert main(["rank", str(out), str(other.run_dir)]) == 1
    assert "searched space 'most_net_pp', but the ground truth is of 'most_net_plus'" in capsys.readouterr().err


@pytest.mark.slow  # ~30 s; resume itself stays in the default run (test_strategies)
def test_a_groundtruth_killed_with_sigkill_resumes_without_rerunning(tmp_path):
    """Its trials one after another in the driver's process (--inline): the experiment folder is what resumes it."""
    out = tmp_path / "gt"
    flags = [f for f in GT_FLAGS if f != "--quiet"] + ["--retrain-steps", "12", "--checkpoint-every", "3"]
    driver = subprocess.Popen([sys.executable, "-m", "nss.cli", "groundtruth", *flags, "--sample", "4",
                               "--inline", "--out", str(out), "--quiet"],
                              env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    def under_way() -> list:  # trials with a checkpoint and no record yet
        return [p for p in out.glob("trials/*/checkpoints/last.pt") if not (p.parents[1] / "trial.json").exists()]

    deadline = time.monotonic() + 240
    # summary.txt is written (after ranking.csv) as soon as the first trial has ended; then kill the next one
    while not ((out / "summary.txt").is_file() and under_way()):
        assert driver.poll() is None, driver.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no trial ended"
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    finished = {p.parent.name: p.read_text() for p in out.glob("trials/*/trial.json")}
    # the ranking of the trials that had ended, the others not run; no latency yet
    partial = pd.read_csv(out / "ranking.csv", dtype={"architecture": str})
    ranked = {f"{a}-seed0" for a in partial.loc[partial["status"] == "done", "architecture"]}
    assert len(partial) == 4 and ranked and ranked <= set(finished) and partial["latency_ms"].isna().all()
    assert set(partial["status"]) <= {"done", "not run"} and not partial["pareto_latency"].any()
    assert len(ranked) == 4 or f"{4 - len(ranked)} not run yet" in (out / "summary.txt").read_text()
    started = {p.parents[1].name: (p.parents[1] / "config.yaml").stat().st_ino for p in under_way()}
    assert started
    ranking = nss.groundtruth(out=out, resume=True, resources=Resources(inline=True), progress=False)
    assert len(ranking) == 4 and set(ranking["status"]) == {"done"}
    assert all((out / "trials" / name / "trial.json").read_text() == text for name, text in finished.items())
    # the ones under way went on in their own folders (a restart would have made them anew)
    assert all((out / "trials" / name / "config.yaml").stat().st_ino == inode for name, inode in started.items())


def test_bad_groundtruth_input(tmp_path, capsys):
    assert main(["groundtruth", "--sample", "99", "--out", str(tmp_path / "gt")]) == 1
    assert "a sample holds 2" in capsys.readouterr().err and not (tmp_path / "gt").exists()
    assert main(["groundtruth", "--space", "nope", "--out", str(tmp_path / "gt")]) == 1
    assert "unknown space 'nope'" in capsys.readouterr().err and not (tmp_path / "gt").exists()
    assert main(["rank", str(tmp_path / "nowhere"), str(tmp_path)]) == 1
    assert "not a groundtruth folder" in capsys.readouterr().err
