"""Sweeps: the grid and its shared pretrainings planned in-process, trials run inline (in this process, no Ray), and
on a real local Ray (2 CPUs, one session for the two tests that need it): run folders, errors, resume after SIGKILL
of the driver and its Ray, bad input refused before anything runs."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

import nss
from nss.cli import main
from nss.experiments.experiment import Experiment
from nss.experiments.runner import WAIT, Resources, progress_bar, ray_session
from nss.experiments.sweep import PretrainingsFirst, parse_grid, plan_trials

from conftest import tiny_config

TWO, INLINE = Resources(workers=2), Resources(inline=True)
SWEEP_FLAGS = ["--network", "tiny", "--frame-size", "32x32", "--clips", "2", "--frames", "3", "--batch-size", "2",
               "--device", "cpu", "--pretrain-steps", "4", "--search-steps", "6", "--log-every", "2",
               "--checkpoint-every", "2", "--select", "gates"]  # as tiny_config


@pytest.fixture(scope="module")
def ray_cluster():
    with ray_session(TWO):
        yield


def base(**overrides):
    return tiny_config(**dict(dict(pretrain_steps=4, search_steps=6), **overrides))


def test_a_two_by_two_sweep_writes_a_run_folder_per_trial(tmp_path, ray_cluster):
    out = tmp_path / "sweep"
    table = nss.sweep({"tau": [1.0, 5.0], "seed": [0, 1]}, out, base=base(), resources=TWO, progress=False)
    assert list(table["trial"]) == ["tau1-seed0", "tau1-seed1", "tau5-seed0", "tau5-seed1"]
    assert set(table["status"]) == {"done"} and table["architecture"].str.len().eq(12).all()
    assert {f"prob/{h}" for h in nss.get_space("most_net_plus").searchable} <= set(table)
    written = pd.read_csv(out / "sweep.csv")
    columns = ["trial", "tau", "seed", "status", "architecture", "heads"] + [c for c in table if c.startswith("prob/")]
    pd.testing.assert_frame_equal(written[columns], table[columns])
    # one shared pretraining per seed, and every search started from its own seed's
    assert sorted(p.name for p in (out / "trials").glob("pretrain*")) == ["pretrain-seed0", "pretrain-seed1"]
    for row in table.itertuples():
        run = out / "trials" / row.trial
        for name in ("config.yaml", "space.json", "metrics.csv", "gates.csv", "deltas.csv", "architecture.json",
                     "checkpoints/last.pt", "trial.json"):
            assert (run / name).is_file(), (row.trial, name)
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["from_run"].endswith(f"pretrain-seed{row.seed}") and config["tau"] == row.tau
        assert set(pd.read_csv(run / "metrics.csv")["phase"]) == {"search"}
        assert json.loads((run / "architecture.json").read_text())["id"] == row.architecture
    # the trials are ordinary run folders: every command works on them
    assert main(["derive", str(out / "trials" / "tau5-seed0"), "--out", str(tmp_path / "a.json")]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "architecture_frequency.png").is_file()
    modal = pd.read_csv(tmp_path / "report" / "architecture_modal.csv")
    assert list(modal["runs"]) == [2, 2]


def test_the_grid_plans_one_pretraining_per_pretraining_setting():
    grid = parse_grid({"tau": "1,5", "seed": [0, 1], "pretrain_steps": "2,120"})
    assert grid == {"tau": [1.0, 5.0], "seed": [0, 1], "pretrain_steps": [2, 120]}
    pretrainings, searches = plan_trials(grid, base().to_dict(), "shared")
    assert [t.name for t in pretrainings] == ["pretrain-seed0-psteps2", "pretrain-seed0-psteps120",
                                              "pretrain-seed1-psteps2", "pretrain-seed1-psteps120"]
    assert len(searches) == 8 and searches[0].name == "tau1-seed0-psteps2"
    for search in searches:  # each starts from the pretraining of its own seed and length, τ aside
        made = next(t for t in pretrainings if t.name == search.options["pretraining"])
        assert {k: made.config[k] for k in ("seed", "pretrain_steps")} == \
            {k: search.config[k] for k in ("seed", "pretrain_steps")}
    assert plan_trials(grid, base().to_dict(), "per-trial")[0] == []


def test_a_search_is_released_as_soon_as_its_own_pretraining_has_ended(tmp_path):
    experiment = Experiment(tmp_path / "sweep", "sweep")
    experiment.create({})
    pretrainings, searches = plan_trials(parse_grid({"pretrain_steps": [2, 120]}), base().to_dict(), "shared")
    source = PretrainingsFirst(pretrainings + searches, experiment, progress_bar(2, "sweep", False))
    short, long = source.next_trial(), source.next_trial()
    assert (short.name, long.name) == ("pretrain-psteps2", "pretrain-psteps120")
    assert source.next_trial() == WAIT  # both searches wait for a pretraining
    source.complete(short, {"status": "done", "message": ""})
    released = source.next_trial()  # the short one's search, while the long pretraining still runs
    assert released.name == "psteps2" and released.config["from_run"] == str(experiment.trial_dir(short.name))
    assert source.next_trial() == WAIT
    source.complete(long, {"status": "error", "message": "out of memory"})  # its search fails without running
    assert source.next_trial() is None
    assert experiment.record("psteps120")["message"] == "its pretraining pretrain-psteps120 failed: out of memory"


def test_per_trial_pretraining_and_the_command_line(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", *SWEEP_FLAGS, "--sparsity", "1e-4,1e-2", "--pretrain", "per-trial", "--inline",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 trials: 2 done, 0 failed" in printed
    assert not list((out / "trials").glob("pretrain*"))
    for trial in ("mu0.0001", "mu0.01"):
        assert set(pd.read_csv(out / "trials" / trial / "metrics.csv")["phase"]) == {"pretrain", "search"}


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path, capsys):
    # (a bad value is refused before the sweep starts, below: a trial fails at run time, here its loss overflows)
    out = tmp_path / "sweep"
    assert main(["sweep", *SWEEP_FLAGS, "--lr", "1e30,1e-3", "--pretrain", "per-trial", "--inline", "--out", str(out),
                 "--quiet"]) == 0
    table = pd.read_csv(out / "sweep.csv").set_index("trial")
    assert table.loc["lr1e+30", "status"] == "error" and table.loc["lr0.001", "status"] == "done"
    assert table.loc["lr1e+30", "message"].startswith("pretrain step 2: the loss of ")
    assert "1 failed" in capsys.readouterr().out
    # every trial failing is a failed command, with one line saying so
    assert main(["sweep", *SWEEP_FLAGS, "--lr", "1e30,1e31", "--pretrain", "per-trial", "--inline", "--out",
                 str(tmp_path / "bad"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "every one of the 2 trials failed" in err and "\n" not in err


@pytest.mark.parametrize("flags, message", [
    (["--tau", "1,,5"], "--tau: an empty value"),
    (["--tau", "1,2", "--seed", "0,1,2", "--max-trials", "5"], "the grid has 6 trials, more than --max-trials 5"),
    (["--seed", "one"], "seed: expected an integer, got 'one'"),
    (["--tau", "1", "--address", "127.0.0.1:9"], "--address 127.0.0.1:9: no Ray cluster answers there"),
    (["--tau", "0,1"], "--tau: the temperature must be a finite number > 0, got 0.0"),  # before Ray starts
    (["--relaxation", "softmax,gdas", "--hard", "true"], "--hard: only gumbel samples hard or soft"),
    (["--data", "synthetic,nowhere"], "--data: nowhere: no such file or folder"),
    (["--tau", "1", "--inline", "--workers", "2"], "--inline runs one trial at a time in this process"),
    (["--taux", "1"], "unrecognized arguments: --taux"),
])
def test_bad_sweeps_are_one_line_errors_and_write_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "sweep"
    code = main(["sweep", *flags, "--out", str(out), "--quiet"]) if "--taux" not in flags else None
    if code is None:
        with pytest.raises(SystemExit) as exit_:
            main(["sweep", *flags, "--out", str(out)])
        code = exit_.value.code
    assert code in (1, 2)
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_a_grid_is_checked_as_a_run_would_check_it_before_anything_runs(tmp_path, capsys, synthetic_folder):
    out = tmp_path / "sweep"
    assert main(["sweep", *SWEEP_FLAGS, "--seed", "0,1", "--data", str(synthetic_folder), "--frame-size", "64x64",
                 "--inline", "--out", str(out), "--quiet"]) == 1
    assert f"--frame-size 64x64: {synthetic_folder} has 32x32 frames" in capsys.readouterr().err
    assert not out.exists()


def test_an_existing_sweep_needs_resume_or_force_and_the_api_names_unknown_options(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "something").write_text("x")
    assert main(["sweep", "--tau", "1", "--out", str(out), "--quiet"]) == 1
    assert "already exists (use --force to overwrite, or --resume to continue it)" in capsys.readouterr().err
    with pytest.raises(nss.NSSError, match="'taux': not an option a sweep can vary"):
        nss.sweep({"taux": [1]}, tmp_path / "other")
    assert not (tmp_path / "other").exists()


@pytest.mark.slow  # ~25 s on Ray; the default run keeps the Ray sweep above and the in-process resumes
def test_a_sweep_killed_with_sigkill_resumes_to_the_same_table(tmp_path, ray_cluster):
    flags = ["--tau", "1,5", "--seed", "0,1", "--search-steps", "24", "--workers", "2"]
    grid = {"tau": [1.0, 5.0], "seed": [0, 1]}
    reference = nss.sweep(grid, tmp_path / "reference", base=base(search_steps=24), resources=INLINE, progress=False)

    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    driver = subprocess.Popen([sys.executable, "-m", "nss.cli", "sweep", *SWEEP_FLAGS, *flags, "--out", str(out),
                               "--quiet"], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    finished, deadline = None, time.monotonic() + 240
    while time.monotonic() < deadline:  # kill once one search has ended and another is under way
        records = sorted(out.glob("trials/tau*/trial.json"))
        running = [p for p in out.glob("trials/tau*/checkpoints/last.pt") if not (p.parents[1] / "trial.json").exists()]
        if records and running and _step(running[0]) > 0:
            finished = records[0].parent.name
            break
        assert driver.poll() is None, driver.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    else:
        raise AssertionError("no search ended while another ran")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver, its Ray and every worker
    driver.wait()
    before = json.loads((out / "trials" / finished / "trial.json").read_text())
    under_way = running[0].parents[1]
    inode = (under_way / "config.yaml").stat().st_ino

    resumed = nss.sweep(out=out, resume=True, resources=TWO, progress=False)
    assert json.loads((out / "trials" / finished / "trial.json").read_text()) == before  # not rerun
    assert (under_way / "config.yaml").stat().st_ino == inode  # went on in its own folder, not made anew
    steps = pd.read_csv(under_way / "metrics.csv")["step"]
    assert steps.is_unique and steps.max() == 24
    probabilities = [c for c in reference if c.startswith("prob/")]
    assert list(resumed["architecture"]) == list(reference["architecture"])
    assert list(resumed["status"]) == ["done"] * 4
    pd.testing.assert_frame_equal(resumed[probabilities], reference[probabilities], atol=1e-5, rtol=0)


def _step(checkpoint) -> int:
    try:
        return torch.load(checkpoint, weights_only=True)["step"]
    except Exception:  # noqa: BLE001 - renamed into place while we looked
        return 0
