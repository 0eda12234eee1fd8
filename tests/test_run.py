"""End to end: run folders, resume after SIGKILL, --from, configuration files and every bad input."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import nss
from nss.cli import main
from search_spaces import Architecture

from conftest import TINY_FLAGS, kill_mid_run, tiny_config

# Later flags win, so a test can append its own "--pretrain-steps 8" and the like.
TINY_FLAGS = TINY_FLAGS + ["--pretrain-steps", "2", "--search-steps", "2"]


def test_search_writes_a_complete_run_folder(tmp_path):
    result = nss.search(tiny_config(), out=tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.yaml", "space.json", "metrics.csv", "gates.csv", "deltas.csv", "architecture.json",
                 "checkpoints/last.pt", "checkpoints/pretrained.pt"):
        assert (run / name).is_file(), name
    space = result.architecture.space

    gates = pd.read_csv(run / "gates.csv")
    assert list(gates.columns[:4]) == ["phase", "epoch", "step", "tau"] and {"head", "logit", "prob"} <= set(gates)
    trajectory = gates.pivot(index="step", columns="head", values="prob")
    assert set(trajectory.columns) == set(space.searchable) and list(trajectory.index) == [2, 4, 6]
    assert trajectory.iloc[-1].to_dict() == pytest.approx(result.probabilities, abs=1e-7)

    deltas = pd.read_csv(run / "deltas.csv")
    assert {"phase", "epoch", "step", "head", "value"} <= set(deltas) and (deltas["value"] >= 0).all()
    assert set(deltas.pivot_table(index=["phase", "step"], columns="head", values="value").columns) == set(
        space.searchable)

    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.groupby("phase").step.max().items()) == [("pretrain", 4), ("search", 6)]
    assert {"loss/restoration@1", "loss/flow", "lambda/flow", "lr", "wall_time"} <= set(metrics)

    saved = json.loads((run / "architecture.json").read_text())
    assert {"id", "space", "heads"} <= set(saved) and saved["id"] == result.architecture.id
    assert Architecture.load(run / "architecture.json") == result.architecture
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["command"] == "search" and config["network"] == "tiny" and config["lr"] == 1e-3
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert (state["phase"], state["step"]) == ("search", 6)


# the default run keeps the default relaxation and bi-level (two batch streams); the other relaxations, the hard
# one (straight-through draws) among them, resume through the same code and run with `-m slow`
SLOW = pytest.mark.slow


@pytest.mark.parametrize("variant", [[], *(pytest.param(["--relaxation", r], marks=SLOW)
                                          for r in ("softmax", "gdas", "concrete", "dirichlet")), ["--bilevel"]],
                         ids=["gumbel", "softmax", "gdas", "concrete", "dirichlet", "bilevel"])
def test_a_search_killed_with_sigkill_resumes_to_the_same_result(tmp_path, variant):
    options = dict(pretrain_steps=6, search_steps=30, checkpoint_every=3, log_every=3,
                   relaxation=variant[1] if variant[:1] == ["--relaxation"] else "gumbel",
                   bilevel=variant == ["--bilevel"])
    reference = nss.search(tiny_config(**options), out=tmp_path / "reference", progress=False)

    flags = TINY_FLAGS + ["--select", "gates", "--pretrain-steps", "6", "--search-steps", "30",
                          "--checkpoint-every", "3", "--log-every", "3"] + variant
    run = kill_mid_run(["search"] + flags, tmp_path / "killed", "search", before=30)
    resumed = nss.search(out=run, resume=True, progress=False)
    assert resumed.architecture == reference.architecture
    for head, prob in reference.probabilities.items():
        assert resumed.probabilities[head] == pytest.approx(prob, abs=1e-5)
    ours, theirs = pd.read_csv(run / "gates.csv"), pd.read_csv(tmp_path / "reference" / "gates.csv")
    assert len(ours) == len(theirs)
    np.testing.assert_allclose(ours["prob"], theirs["prob"], atol=1e-5)


def test_search_from_a_pretrained_run_equals_the_search_of_a_whole_run(tmp_path):
    whole = nss.search(tiny_config(), out=tmp_path / "whole", progress=False)
    pretrained = nss.pretrain(tiny_config(), out=tmp_path / "pre", progress=False)
    assert not (pretrained / "gates.csv").exists() and (pretrained / "checkpoints" / "pretrained.pt").exists()
    searched = nss.search(tiny_config(from_run=str(pretrained)), out=tmp_path / "search", progress=False)
    assert set(pd.read_csv(tmp_path / "search" / "metrics.csv").phase) == {"search"}
    for head, prob in whole.probabilities.items():
        assert searched.probabilities[head] == pytest.approx(prob, abs=1e-6)


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("tau: 2.0\nsearch-steps: 3\nsparsity_kind: l1\n")
    assert main(["search", "--config", str(config), "--tau", "3", "--out", str(tmp_path / "run")] + TINY_FLAGS
                + ["--conflicts-every", "1"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["tau"], saved["search_steps"], saved["sparsity_kind"]) == (3.0, 2, "l1")
    conflicts = pd.read_csv(tmp_path / "run" / "conflicts.csv")  # every step of both phases measured
    assert sorted(set(zip(conflicts.phase, conflicts.step))) == [("pretrain", 1), ("pretrain", 2), ("search", 1),
                                                                 ("search", 2)]
    out = capsys.readouterr().out
    assert f"run folder: {tmp_path / 'run'}" in out and "scale 1" in out and "kept (fixed)" in out
    # the default selection (oneshot, contiguous): how many sub-networks it measured, the best and the one kept
    measured = pd.read_csv(tmp_path / "run" / "subnetworks.csv", dtype={"heads": str}, keep_default_na=False)
    best = measured.loc[measured["delta_mtl_val"].idxmax(), "heads"] or "no searchable head"
    assert len(measured) == 27 and f"27 sub-networks measured on validation; best {best} (Δ_MTL" in out


def _fails_with_one_line(argv, capsys, message, code=1):
    try:
        rc = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        rc = exit_.code
    err = capsys.readouterr().err.strip()
    assert rc == code and message in err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("flags, message", [
    (["--tau", "0"], "--tau: the temperature must be a finite number > 0"),
    (["--tau", "-1"], "--tau: the temperature must be a finite number > 0"),
    (["--tau", "nan"], "--tau: the temperature must be a finite number > 0"),
    (["--space", "nope"], "unknown space 'nope'"),
    (["--threshold", "1.5"], "--threshold: must be in (0, 1)"),
    (["--frame-size", "30x32"], "multiples of 16"),
    (["--data-seed", "-1"], "--data-seed: must be >= 0, got -1"),
    (["--eval-clips", "0"], "--eval-clips: must be >= 1, got 0"),
])
def test_bad_options_fail_with_one_line_and_leave_no_folder(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    _fails_with_one_line(["search", "--out", str(out)] + TINY_FLAGS + flags, capsys, message)
    assert not out.exists()


def test_a_tau_that_is_not_a_number_is_a_usage_error(capsys):
    _fails_with_one_line(["search", "--tau", "abc"], capsys, "--tau: invalid float value: 'abc'", code=2)


def test_missing_and_malformed_data_folders(tmp_path, capsys, data_copy):
    _fails_with_one_line(["search", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")] + TINY_FLAGS,
                         capsys, "data folder not found")
    (data_copy / "meta.json").write_text("{")
    _fails_with_one_line(["search", "--data", str(data_copy), "--out", str(tmp_path / "r")] + TINY_FLAGS,
                         capsys, "meta.json: not valid JSON")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("damage", ["corrupt frame", "size mismatch"])
def test_bad_frames_are_named(tmp_path, capsys, data_copy, damage):
    clip = data_copy / "clips" / "train_000"
    if damage == "corrupt frame":
        target = clip / "input" / "000001.png"
        target.write_bytes(b"\x89PNG broken")
    else:
        from PIL import Image
        target = clip / "target" / "000001.png"
        Image.new("RGB", (32, 16)).save(target)
    flags = TINY_FLAGS + ["--data", str(data_copy), "--out", str(tmp_path / "r"), "--pretrain-steps", "4"]
    _fails_with_one_line(["search"] + flags, capsys, str(target))
    assert main(["data", "check", str(data_copy)]) == 1
    problem, summary = capsys.readouterr().err.strip().split("\n")
    assert problem.startswith(str(target)) and summary.endswith("1 problem(s) found")


def test_an_existing_run_folder_needs_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--out", str(out)] + TINY_FLAGS) == 0
    capsys.readouterr()
    first = (out / "config.yaml").stat().st_mtime_ns
    _fails_with_one_line(["search", "--out", str(out)] + TINY_FLAGS, capsys, "already exists (use --force")
    assert (out / "config.yaml").stat().st_mtime_ns == first
    assert main(["search", "--out", str(out), "--force"] + TINY_FLAGS) == 0


def test_resume_refuses_new_options_and_non_runs(tmp_path, capsys):
    _fails_with_one_line(["search", "--out", str(tmp_path), "--resume"], capsys, "not a run folder")
    _fails_with_one_line(["search", "--out", str(tmp_path), "--resume", "--tau", "2"], capsys,
                         "--tau: a resumed run keeps its saved configuration")


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    # a learning rate no network survives: the first step leaves weights of ~1e30, the next losses overflow
    out = tmp_path / "run"
    err = _fails_with_one_line(["search", "--out", str(out)] + TINY_FLAGS
                               + ["--checkpoint-every", "1", "--pretrain-steps", "8", "--lr", "1e30"], capsys,
                               "the loss of ")
    failed_step = int(err.split("pretrain step ")[1].split(":")[0])
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["phase"] == "pretrain" and state["step"] == failed_step - 1
    assert all(torch.isfinite(v).all() for v in state["network"].values() if v.is_floating_point())


def test_spaces_and_data_commands(tmp_path, capsys):
    assert main(["spaces"]) == 0 and "most_net_pp" in capsys.readouterr().out
    assert main(["spaces", "show", "most_net_plus"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "most_net_plus"
    out = tmp_path / "d"
    assert main(["data", "synth", "--out", str(out), "--clips", "2", "--frames", "3", "--size", "32x48",
                 "--quiet"]) == 0
    assert json.loads((out / "meta.json").read_text())["frame_size"] == [32, 48]
    assert main(["data", "check", str(out)]) == 0 and "ok" in capsys.readouterr().out
    _fails_with_one_line(["data", "synth", "--out", str(out), "--quiet"], capsys, "already exists")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".d.")]  # no staging leftovers


def test_the_installed_console_script_reports_errors_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "nss.cli", "search", "--space", "nope"], capture_output=True,
                          text=True)
    assert done.returncode == 1 and done.stderr.strip() == ("nss: error: unknown space 'nope': choose one of "
                                                            "most_net_plus, most_net_pp or give a path to a JSON file")


@pytest.mark.slow
def test_the_default_search_finishes_on_a_cpu(tmp_path):
    done = subprocess.run([sys.executable, "-m", "nss.cli", "search", "--tau", "5", "--quiet", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert Architecture.load(tmp_path / "run" / "architecture.json").heads


def test_search_on_a_data_folder_with_hard_gates_and_epoch_schedules(tmp_path, synthetic_folder):
    result = nss.search(tiny_config(data=str(synthetic_folder), hard=True, pretrain_epochs=1.0, search_epochs=1.5),
                        out=tmp_path / "run", progress=False)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    # 2 clips × 2 pairs = 4 training pairs, batch 2: 2 steps per epoch
    assert (saved["pretrain_steps"], saved["search_steps"], saved["frame_size"]) == (2, 3, "32x32")
    gates = pd.read_csv(tmp_path / "run" / "gates.csv")
    assert set(gates["alpha"]) <= {0.0, 1.0}
    assert set(result.probabilities) == set(result.architecture.space.searchable)


def test_folder_frames_must_fit_the_scales(tmp_path, capsys):
    data = nss.write_synthetic(tmp_path / "d", nss.SyntheticSpec(clips=2, frames=3, height=40, width=32),
                               progress=False)
    _fails_with_one_line(["search", "--data", str(data), "--out", str(tmp_path / "r")] + TINY_FLAGS, capsys,
                         "frames are 40x32; with 3 scales both sides must be multiples of 16")


def test_derive_from_a_search_run_and_from_a_list_of_heads(tmp_path, capsys):
    result = nss.search(tiny_config(), out=tmp_path / "run", progress=False)
    assert main(["derive", str(tmp_path / "run"), "--threshold", "0.01", "--out", str(tmp_path / "all.json")]) == 0
    assert set(Architecture.load(tmp_path / "all.json").heads) == set(result.architecture.space.heads)
    assert main(["derive", str(tmp_path / "run"), "--out", str(tmp_path / "same.json")]) == 0
    assert Architecture.load(tmp_path / "same.json") == result.architecture

    heads = "restoration@1,restoration@3,segmentation@2,segmentation@3,flow@3"
    assert main(["derive", "--space", "most_net_plus", "--heads", heads, "--out", str(tmp_path / "mine.json")]) == 0
    assert set(Architecture.load(tmp_path / "mine.json").heads) == set(heads.split(","))
    assert "dropped" in capsys.readouterr().out
    # the space's fixed heads are kept whether listed or not, as --help says
    assert main(["derive", "--heads", "restoration@1", "--out", str(tmp_path / "fixed.json")]) == 0
    assert set(Architecture.load(tmp_path / "fixed.json").heads) == {"restoration@1", *result.architecture.space.fixed}
    _fails_with_one_line(["derive", "--heads", heads + ",flow@7", "--out", str(tmp_path / "bad.json")], capsys,
                         "does not have")
    _fails_with_one_line(["derive", "--heads", heads, "--out", str(tmp_path / "mine.json")], capsys,
                         "already exists")
    assert not (tmp_path / "bad.json").exists()


def test_gates_near_the_threshold_are_reported_undecided(tmp_path, capsys):
    # a short search leaves every gate near 0.5: with a margin of 0.15 all are undecided, with 0 none is
    gates = ["--select", "gates"]
    assert main(["search", *TINY_FLAGS, *gates, "--margin", "0.15", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "architecture.json").read_text())
    probabilities = saved["gates"]
    undecided = [h for h, p in probabilities.items() if abs(p - 0.5) < 0.15]
    assert saved["undecided"] == undecided and saved["margin"] == 0.15 and undecided
    assert f"{len(undecided)} undecided: {', '.join(undecided)}" in out and out.count(", undecided)") == len(undecided)
    assert main(["search", *TINY_FLAGS, *gates, "--margin", "0", "--out", str(tmp_path / "sure")]) == 0
    assert "decisive: every gate ended at least 0.0 away" in capsys.readouterr().out
    assert nss.search(out=tmp_path / "sure", resume=True, progress=False).undecided == ()
    _fails_with_one_line(["search", "--margin", "0.5", "--out", str(tmp_path / "bad")], capsys,
                         "--margin: must be in [0, 0.5)")


def test_logs_are_appended_not_rewritten_at_every_checkpoint(tmp_path):
    from nss.runs.folder import Table
    table = Table(tmp_path / "metrics.csv")
    table.extend([{"phase": "pretrain", "step": 1, "loss": 1.0}])
    table.flush()
    inode, sizes = (tmp_path / "metrics.csv").stat().st_ino, []
    for step in range(2, 200):
        table.extend([{"phase": "pretrain", "step": step, "loss": 1.0 / step}])
        table.flush()
        sizes.append((tmp_path / "metrics.csv").stat().st_size)
    assert (tmp_path / "metrics.csv").stat().st_ino == inode  # never replaced: appended to
    assert table.bytes_written <= 1.01 * sizes[-1]  # each row written once
    table.extend([{"phase": "search", "step": 1, "loss": 0.5, "sparsity": -3.0}])  # a new phase's new column
    table.flush()
    frame = pd.read_csv(tmp_path / "metrics.csv")
    assert len(frame) == 200 and list(frame.columns) == ["phase", "step", "loss", "sparsity"]
    assert frame["sparsity"].isna().sum() == 199 and frame["loss"].iloc[-2] == pytest.approx(1 / 199)
    table.cut_back(150)  # what a resumed run keeps: the rows its checkpoint had flushed
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 150 and table.rows_written == 150
    with open(tmp_path / "metrics.csv", "a") as file:  # killed in the middle of appending a row
        file.write("pretrain,151,0.00")
    Table(tmp_path / "metrics.csv").cut_back(150)
    frame = pd.read_csv(tmp_path / "metrics.csv")
    assert len(frame) == 150 and frame["step"].iloc[-1] == 150
