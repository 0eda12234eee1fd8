"""Options declared once, on the RunConfig fields: the command line, config files, sweep grids and run folders
all read them from there; and the command line answers without loading torch."""
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml

import nss
from nss.cli import build_parser, main
from nss.commands.options import run_config
from nss.config import OPTIONS, RunConfig, inherited_options, load_config_file, options_of, resolve_config
from nss.experiments.sweep import parse_grid
from nss.scale_search.derive import save_architecture
from search_spaces import Architecture, get_space

from conftest import TINY_FLAGS, tiny_config

SPACE = get_space("most_net_plus")
# a value unlike the default for every kind of option, valid on its own
SAMPLE = {int: "3", float: "0.25", str: None}


def _other_value(name):
    """A command-line value for option `name` that differs from its default and passes validation."""
    option = OPTIONS[name]
    if option.choices:
        return next(c for c in option.choices if c != option.default)
    special = {"space": "most_net_pp", "frame_size": "32x32", "device": "cpu", "data": "synthetic", "tau": "2.5",
               "threshold": "0.4", "margin": "0.1", "frames": "4", "latency_table": None, "from_run": None,
               "architecture": None, "retrain_epochs": "1.5", "pretrain_epochs": "1.5", "search_epochs": "1.5",
               "latency_weight": None, "latency_target": None}  # (the latency terms need a cost table)
    return special.get(name, SAMPLE.get(option.kind))


@pytest.mark.parametrize("command", ["search", "pretrain", "retrain"])
def test_every_option_of_a_command_is_a_typed_flag_that_reaches_its_configuration(command):
    parser = build_parser()
    for name in options_of(command):
        option, value = OPTIONS[name], _other_value(name)
        if option.kind is bool:
            argv, expected = [option.flag], not option.default
        elif value is None:
            continue  # a file or run to point at: checked where such files exist
        else:
            argv, expected = [option.flag, value], option.kind(value)
        args = parser.parse_args([command, *argv])
        config = run_config(args, command)
        assert getattr(config, name) == expected, (command, name)
        for alias in option.flags[1:]:  # --steps is --retrain-steps
            assert getattr(parser.parse_args([command, alias, value]), name) == expected


def test_options_of_other_commands_are_not_flags_and_types_come_from_the_annotations(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pretrain", "--tau", "2"])  # a search option
    assert "unrecognized arguments: --tau" in capsys.readouterr().err
    assert OPTIONS["eval_clips"].kind is int and OPTIONS["eval_clips"].optional  # int | None
    assert OPTIONS["latency_target"].kind is float and OPTIONS["hard"].kind is bool
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--eval-clips", "2.5"])
    assert "--eval-clips: invalid int value: '2.5'" in capsys.readouterr().err


def test_a_config_file_and_a_sweep_grid_read_the_same_types():
    assert parse_grid({"eval_clips": "2,3", "hard": "true,false", "tau": [1, 2.5]}) == {
        "eval_clips": [2, 3], "hard": [True, False], "tau": [1.0, 2.5]}
    with pytest.raises(nss.NSSError, match="eval_clips: expected an integer, got 2.5"):
        parse_grid({"eval_clips": [2.5]})


def test_a_runs_own_config_yaml_is_a_config_file(tmp_path, capsys):
    assert main(["pretrain", *TINY_FLAGS, "--pretrain-steps", "2", "--seed", "7", "--out", str(tmp_path / "a")]) == 0
    values = load_config_file(tmp_path / "a" / "config.yaml")
    assert "command" not in values and values["seed"] == 7 and values["network"] == "tiny"
    assert main(["pretrain", "--config", str(tmp_path / "a" / "config.yaml"), "--quiet", "--out",
                 str(tmp_path / "b")]) == 0
    again = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    first = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert again == first  # the same run again
    # a retraining's config.yaml holds the network it trains: a search given it would search another network
    save_architecture(tmp_path / "arch.json", Architecture(SPACE, SPACE.fixed))
    assert main(["retrain", str(tmp_path / "arch.json"), *TINY_FLAGS, "--retrain-steps", "1", "--out",
                 str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["search", "--config", str(tmp_path / "r" / "config.yaml"), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "architecture is" in err and "this command takes no --architecture" in err and not (tmp_path / "s").exists()


def test_inherited_options_clash_with_from_and_paths_are_recorded_absolute(tmp_path, monkeypatch, capsys):
    assert set(inherited_options()) == {"space", "network", "data", "frame_size", "clips", "eval_clips", "scene",
                                        "frames", "data_seed"}
    assert main(["search", "--from", str(tmp_path), "--clips", "3", "--out", str(tmp_path / "x")]) == 1
    assert "--clips: taken from the pretrained run given with --from; leave out" in capsys.readouterr().err
    pretrained = nss.pretrain(tiny_config(pretrain_steps=1), out=tmp_path / "pre", progress=False)
    with pytest.raises(nss.NSSError, match="--clips 3: the pretrained run given with --from was made with 2"):
        nss.search(tiny_config(from_run=str(pretrained), clips=3), out=tmp_path / "x", progress=False)  # (a file)
    assert not (tmp_path / "x").exists()
    # a run made with relative paths records them absolute: it can be used from anywhere
    monkeypatch.chdir(tmp_path)
    nss.write_synthetic("data", nss.SyntheticSpec(clips=2, frames=3, height=32, width=32), progress=False)
    config = replace(RunConfig(), data="data", network="tiny", batch_size=2, pretrain_steps=1, device="cpu")
    run = nss.pretrain(config, out="run", progress=False)
    saved = yaml.safe_load((tmp_path / run / "config.yaml").read_text())
    assert saved["data"] == str(tmp_path / "data") and saved["frame_size"] == "32x32"
    monkeypatch.chdir(tmp_path / "run")  # from elsewhere, the run goes on
    assert nss.pretrain(out=".", resume=True, progress=False)


def test_validation_names_the_flag_and_the_allowed_values():
    with pytest.raises(nss.NSSError, match=r"--sparsity-kind: must be one of log, l1, skip-ce, got 'l2'"):
        resolve_config(sparsity_kind="l2")
    with pytest.raises(nss.NSSError, match=r"--retrain-steps: must be >= 1, got 0"):
        resolve_config(retrain_steps=0)
    with pytest.raises(nss.NSSError, match=r"--frame-size: sides must be at most 8192"):
        resolve_config(frame_size="65536x65536")


def test_help_and_argument_errors_do_not_load_torch_ray_or_optuna():
    code = ("import sys\nfrom nss.cli import main\n"
            "for argv in (['--help'], ['search', '--help'], ['sweep', '--help'], ['search', '--tau', 'x']):\n"
            "    try: main(argv)\n    except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'ray', 'optuna', 'pandas', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr
