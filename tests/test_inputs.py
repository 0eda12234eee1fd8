"""What a new user hit: inputs that used to give a traceback, fail hours in, or be accepted silently, each now a
one-line error (or note) before anything is written."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

import nss
from nss.cli import main
from nss.device import using_threads as torch_threads
from nss.training import api
from search_spaces import Architecture, get_space

from conftest import TINY_FLAGS, tiny_config

FLAGS = TINY_FLAGS + ["--pretrain-steps", "2", "--search-steps", "2"]


def one_line_error(argv, capsys, message):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code in (1, 2) and message in err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("damage, message", [
    ("flow of the wrong shape", "flow"),  # the file is named, and the shape it has
    ("a target without its input frame", "label without an input frame"),
])
def test_a_data_folder_is_checked_whole_before_a_run_starts(data_copy, tmp_path, capsys, damage, message):
    clip = data_copy / "clips" / "val_001"  # a split training never draws from: found only by the check
    if damage == "flow of the wrong shape":
        np.save(clip / "flow" / "000002.npy", np.zeros((16, 32, 2), np.float32))
        named = clip / "flow" / "000002.npy"
    else:
        (clip / "input" / "000002.png").unlink()
        named = clip / "target" / "000002.png"
    err = one_line_error(["search", *FLAGS, "--data", str(data_copy), "--out", str(tmp_path / "run")], capsys,
                         str(named))
    assert message in err and not (tmp_path / "run").exists()


def test_a_frame_size_beside_a_data_folder_must_be_the_folders(synthetic_folder, tmp_path, capsys):
    one_line_error(["search", *FLAGS, "--data", str(synthetic_folder), "--frame-size", "64x64", "--out",
                    str(tmp_path / "run")], capsys, f"--frame-size 64x64: {synthetic_folder} has 32x32 frames")
    assert not (tmp_path / "run").exists()


def test_outputs_that_cannot_be_written_are_one_line_errors(tmp_path, capsys, synthetic_folder):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder would go")
    one_line_error(["search", *FLAGS, "--out", str(blocker / "run")], capsys, str(blocker))
    one_line_error(["data", "synth", "--out", str(blocker / "data"), "--clips", "1", "--quiet"], capsys, str(blocker))
    run = nss.retrain(tiny_config(architecture=None, retrain_steps=1, val_every=1), out=tmp_path / "run",
                      progress=False)
    one_line_error(["export", str(run), "--out", str(blocker / "m.onnx")], capsys, str(blocker))
    one_line_error(["predict", str(run), "--input", str(synthetic_folder), "--out", str(blocker / "p"), "--quiet"],
                   capsys, str(blocker))
    one_line_error(["report", str(run), "--out", str(blocker / "r")], capsys, str(blocker))
    (run / "eval.csv").mkdir()  # where evaluate writes its table
    one_line_error(["evaluate", str(run)], capsys, "eval.csv")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One retrained run for the refusals below to point at (none of them writes to it)."""
    return nss.retrain(tiny_config(retrain_steps=1, val_every=1), out=tmp_path_factory.mktemp("refused") / "RUN",
                       progress=False)


@pytest.mark.parametrize("argv, message", [
    (["export", "RUN", "--out", "m.onnx", "--size", "30x30"], "--size 30x30; with 3 scales both sides must be "
                                                               "multiples of 16"),
    (["predict", "RUN", "--input", "RUN", "--out", "p", "--fps", "-5"], "--fps: the preview's frame rate must be a "
                                                                        "finite number > 0, got -5"),
    (["predict", "RUN", "--input", "RUN", "--out", "p", "--fps", "0"], "--fps: the preview's frame rate must be"),
    (["search", "--frame-size", "65536x65536"], "--frame-size: sides must be at most 8192"),
    (["data", "synth", "--out", "d", "--size", "30x30"], "--size 30x30; with 3 scales both sides must be multiples"),
])
def test_bad_values_are_refused_before_any_work(tmp_path, capsys, monkeypatch, argv, message, trained_run):
    monkeypatch.chdir(tmp_path)
    run = trained_run
    one_line_error([str(run) if a == "RUN" else a for a in argv], capsys, message)
    assert not any((tmp_path / name).exists() for name in ("m.onnx", "p", "d", "runs"))


def test_a_run_that_fails_at_its_start_leaves_nothing_that_blocks_the_rerun(tmp_path, capsys, monkeypatch):
    from supernet.network import MostNet
    forward = MostNet.forward

    def out_of_memory(self, *args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(MostNet, "forward", out_of_memory)
    out = tmp_path / "run"
    one_line_error(["search", *FLAGS, "--out", str(out)], capsys, "pretrain step 1: out of memory on cpu")
    assert not out.exists()
    monkeypatch.setattr(MostNet, "forward", forward)
    assert main(["search", *FLAGS, "--out", str(out)]) == 0  # the plain re-run, no --force
    # one the operating system killed at its start (no Python error to clean up after) is made anew too
    api.open_run("search", tiny_config(), tmp_path / "killed", force=False, resume=False)
    capsys.readouterr()
    assert main(["search", *FLAGS, "--out", str(tmp_path / "killed")]) == 0
    assert "held a run killed before its first logged step; it is made anew" in capsys.readouterr().err
    assert main(["search", *FLAGS, "--out", str(tmp_path / "killed")]) == 1  # a run that logged is kept


def test_a_killed_data_synth_leaves_nothing_behind_the_next_one_removes(tmp_path):
    out = tmp_path / "data"
    writer = subprocess.Popen([sys.executable, "-m", "nss", "data", "synth", "--out", str(out), "--clips", "400",
                               "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".data.*/clips/*")):  # staging under way
        assert writer.poll() is None and time.monotonic() < deadline, writer.communicate()[1]
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert list(tmp_path.glob(".data.*")) and not out.exists()
    assert main(["data", "synth", "--out", str(out), "--clips", "1", "--quiet"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_derive_keeps_the_fixed_heads_it_is_not_given(tmp_path):
    assert main(["derive", "--heads", "restoration@1,flow@2", "--out", str(tmp_path / "a.json")]) == 0
    space = get_space("most_net_plus")
    assert set(Architecture.load(tmp_path / "a.json").heads) == {"restoration@1", "flow@2", *space.fixed}


def test_a_data_check_notes_frames_the_networks_cannot_take(tmp_path, capsys):
    nss.write_synthetic(tmp_path / "d", nss.SyntheticSpec(clips=1, frames=2, height=40, width=32), progress=False)
    assert main(["data", "check", str(tmp_path / "d")]) == 0
    assert "frames are 40x32, which the network of most_net_plus, most_net_pp cannot take" in capsys.readouterr().out


def test_a_latency_table_of_another_size_is_said_so(tmp_path, capsys):
    table = tmp_path / "lut.json"
    assert main(["profile", "most_net_plus", "--per-head", "--network", "tiny", "--size", "64x64", "--iters", "2",
                 "--warmup", "0", "--backend", "torch", "--device", "cpu", "--out", str(table)]) == 0
    capsys.readouterr()
    assert main(["search", *FLAGS, "--latency-table", str(table), "--latency-weight", "0.1", "--out",
                 str(tmp_path / "run")]) == 0
    assert f"note: {table} was measured on the tiny network at 64x64; this search trains the tiny network at " \
           "32x32" in capsys.readouterr().err


def test_threads_are_set_recorded_and_a_busy_machine_is_measured_and_said(tmp_path, capsys):
    assert main(["search", *FLAGS, "--threads", "1", "--out", str(tmp_path / "run")]) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["threads"] == 1
    profile = ["profile", "most_net_plus", "--network", "tiny", "--size", "32x32", "--iters", "30", "--warmup", "1",
               "--backend", "torch", "--device", "cpu"]
    assert main([*profile, "--threads", "1", "--out", str(tmp_path / "p.json")]) == 0
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["torch_threads"] == 1 and report["cpus"] == os.cpu_count()
    capsys.readouterr()
    # another process keeps a core busy while the profile times: measured, said, and one thread fewer by default
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        with torch_threads(os.cpu_count()):
            assert main([*profile, "--out", str(tmp_path / "busy.json")]) == 0
    finally:
        burner.kill()
        burner.wait()
    busy = json.loads((tmp_path / "busy.json").read_text())
    err = capsys.readouterr().err
    assert busy["other_load_cores"] >= 0.5 and "other processes kept" in err and "cores busy while it was timed" in err
    if os.cpu_count() > 1:
        assert busy["torch_threads"] == os.cpu_count() - 1 and "timing with" in err
