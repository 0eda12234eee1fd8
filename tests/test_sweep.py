"""Sweeps on a real local Ray (2 CPUs, one session for the module): run folders, shared pretraining, errors,
resume after SIGKILL of the driver and its Ray, bad input."""
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
from nss.trials import Resources, ray_session

from conftest import TINY_FLAGS, tiny_config

TWO = Resources(workers=2)
SWEEP_FLAGS = ["--network", "tiny", "--frame-size", "32x32", "--clips", "2", "--frames", "3", "--batch-size", "2",
               "--device", "cpu", "--pretrain-steps", "4", "--search-steps", "6", "--log-every", "2",
               "--checkpoint-every", "2"]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    with ray_session(TWO):
        yield


def base(**overrides):
    return tiny_config(**dict(dict(pretrain_steps=4, search_steps=6), **overrides))


def test_a_two_by_two_sweep_writes_a_run_folder_per_trial(tmp_path):
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


def test_a_search_starts_as_soon_as_its_own_pretraining_has_ended(tmp_path):
    out = tmp_path / "sweep"
    table = nss.sweep({"pretrain_steps": [2, 120]}, out, base=base(), resources=TWO, progress=False)
    assert set(table["status"]) == {"done"}
    trials = out / "trials"
    pretrainings = {p.name: p for p in trials.glob("pretrain*")}
    assert len(pretrainings) == 2
    short_search = trials / table.loc[table["pretrain_steps"] == 2, "trial"].item()
    long_pretraining = next(p for p in pretrainings.values() if "120" in p.name)
    # the short pretraining's search ran while the long pretraining was still going
    assert (short_search / "trial.json").stat().st_mtime < (long_pretraining / "trial.json").stat().st_mtime


def test_per_trial_pretraining_and_the_command_line(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", *SWEEP_FLAGS, "--sparsity", "1e-4,1e-2", "--pretrain", "per-trial", "--workers", "2",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 trials: 2 done, 0 failed" in printed
    assert not list((out / "trials").glob("pretrain*"))
    for trial in ("mu0.0001", "mu0.01"):
        assert set(pd.read_csv(out / "trials" / trial / "metrics.csv")["phase"]) == {"pretrain", "search"}


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", *SWEEP_FLAGS, "--tau=-1,5", "--workers", "2", "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out / "sweep.csv").set_index("trial")
    assert table.loc["tau-1", "status"] == "error" and table.loc["tau5", "status"] == "done"
    assert table.loc["tau-1", "message"].startswith("--tau: the temperature must be a finite number > 0")
    assert "1 failed" in capsys.readouterr().out
    # every trial failing is a failed command, with one line saying so
    assert main(["sweep", *SWEEP_FLAGS, "--tau=-1,-2", "--out", str(tmp_path / "bad"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "every one of the 2 trials failed" in err and "\n" not in err


@pytest.mark.parametrize("flags, message", [
    (["--tau", "1,,5"], "--tau: an empty value"),
    (["--tau", "1,2", "--seed", "0,1,2", "--max-trials", "5"], "the grid has 6 trials, more than --max-trials 5"),
    (["--seed", "one"], "seed: expected an integer, got 'one'"),
    (["--tau", "1", "--address", "127.0.0.1:9"], "--address 127.0.0.1:9: no Ray cluster answers there"),
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


def test_an_existing_sweep_needs_resume_or_force_and_the_api_names_unknown_options(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "something").write_text("x")
    assert main(["sweep", "--tau", "1", "--out", str(out), "--quiet"]) == 1
    assert "already exists (use --force to overwrite, or --resume to continue it)" in capsys.readouterr().err
    with pytest.raises(nss.NSSError, match="'taux': not an option a sweep can vary"):
        nss.sweep({"taux": [1]}, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_a_sweep_killed_with_sigkill_resumes_to_the_same_table(tmp_path):
    flags = ["--tau", "1,5", "--seed", "0,1", "--search-steps", "24", "--workers", "2"]
    grid = {"tau": [1.0, 5.0], "seed": [0, 1]}
    reference = nss.sweep(grid, tmp_path / "reference", base=base(search_steps=24), resources=TWO, progress=False)

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
