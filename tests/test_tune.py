"""Tuning with a real SQLite Optuna study: on a real local Ray once, inline (in this process) otherwise, and the
study's trials planned in-process."""
import json

import optuna
import pandas as pd
import pytest

from nss.cli import main
from nss.errors import NSSError
from nss.experiments.experiment import Experiment
from nss.experiments.runner import Resources, ray_session
from nss.experiments.tune import DEFAULT_PARAMS, STUDY_NAME, StudySource, distributions, load_params, open_study

TUNE_FLAGS = ["--network", "tiny", "--frame-size", "32x32", "--clips", "2", "--frames", "3", "--batch-size", "2",
              "--device", "cpu", "--pretrain-steps", "4", "--search-steps", "4", "--retrain-steps", "2",
              "--val-every", "2", "--iters", "2", "--quiet"]


@pytest.fixture
def ray_cluster():
    with ray_session(Resources(workers=2)):
        yield


def load(out):
    return optuna.load_study(storage=f"sqlite:///{out / 'study.db'}", study_name=STUDY_NAME)


def test_a_two_objective_tune_writes_a_study_that_optuna_reads_and_resumes_it(tmp_path, capsys, ray_cluster):
    out = tmp_path / "tune"
    assert main(["tune", *TUNE_FLAGS, "--workers", "2", "--trials", "3", "--objectives", "delta_mtl,latency", "--out",
                 str(out)]) == 0
    assert "Pareto set (pareto.csv)" in capsys.readouterr().out
    study = load(out)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert study.best_trials and study.user_attrs["sampler"] == "NSGAIISampler"
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials["trial"]) == ["t000", "t001", "t002"] and set(trials["status"]) == {"done"}
    assert {"tau", "sparsity", "sparsity_kind", "threshold", "delta_mtl", "latency_ms", "params", "flops"} <= set(trials)
    pareto = pd.read_csv(out / "pareto.csv")
    assert set(pareto["number"]) == {t.number for t in study.best_trials}
    for row in trials.itertuples():  # the study's values are the trial's measurements
        values = study.trials[row.number].values
        assert values == pytest.approx([row.delta_mtl, row.latency_ms])
        for folder in ("search", "retrain"):
            assert (out / "trials" / row.trial / folder / "config.yaml").is_file()
        assert (out / "trials" / row.trial / "retrain" / "eval.csv").is_file()

    # resuming with a larger budget adds trials to the same study, with new parameters
    assert main(["tune", "--out", str(out), "--resume", "--trials", "5", "--workers", "2", "--quiet"]) == 0
    study = load(out)
    assert len(study.trials) == 5 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len({t.params["tau"] for t in study.trials}) == 5
    assert json.loads((out / "tune.json").read_text())["trials"] == 5
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "tune_pareto.png").is_file()


def test_one_objective_uses_tpe_and_a_parameter_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("tau: {low: 1, high: 8, log: true}\nbalancing: {choices: [ls, atb]}\n")
    out = tmp_path / "tune"
    assert main(["tune", *TUNE_FLAGS, "--inline", "--trials", "2", "--objectives", "params", "--params", str(params),
                 "--out", str(out)]) == 0
    study = load(out)
    assert study.user_attrs["sampler"] == "TPESampler" and len(study.trials) == 2
    assert all(1 <= t.params["tau"] <= 8 and t.params["balancing"] in ("ls", "atb") for t in study.trials)


@pytest.mark.parametrize("text, message", [
    ("lr: {low: 1e-4, high: 1e-2}", "'lr': not a tunable option"),
    ("tau: {low: 5, high: 1}", "tau: needs low < high"),
    ("sparsity_kind: {low: 1, high: 2}", "sparsity_kind: a str option takes {choices: [...]}"),
    ("[1, 2]", "expected a mapping"),
    ("tau: {low: 1, high: 8, log: true, step: 0.5}", "tau: "),
])
def test_bad_parameter_files_are_named(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(NSSError, match=message.replace("[", r"\[").replace("{", r"\{")):
        load_params(path)


def test_integer_options_and_steps_are_sampled_as_integers(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("search_steps: {low: 100, high: 600}\nretrain_steps: {low: 100, high: 500, step: 100}\n")
    space = distributions(load_params(path))
    assert isinstance(space["search_steps"], optuna.distributions.IntDistribution)
    assert space["retrain_steps"].step == 100


def test_trials_that_fail_are_failed_trials_of_the_study(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("threshold: {low: 1.5, high: 2.0}\n")  # outside (0, 1): every trial's setting is bad
    out = tmp_path / "tune"
    assert main(["tune", *TUNE_FLAGS, "--inline", "--trials", "2", "--params", str(params), "--out", str(out)]) == 1
    assert "every one of the 2 trials failed" in capsys.readouterr().err
    assert [t.state for t in load(out).trials] == [optuna.trial.TrialState.FAIL] * 2
    assert set(pd.read_csv(out / "trials.csv")["message"].str[:12]) == {"--threshold:"}
    assert main(["tune", "--objectives", "speed", "--out", str(tmp_path / "x")]) == 1
    assert "--objectives: choose distinct ones from delta_mtl, latency, params, flops" in capsys.readouterr().err


def test_the_study_asks_new_trials_in_the_default_space_and_resumes_the_ones_left_running(tmp_path):
    """StudySource on a real SQLite study, no Ray: each trial is the base configuration with the parameters the
    study asked for; a trial left running by a killed tune is run again with the same parameters, in its folder."""
    experiment = Experiment(tmp_path / "tune", "tune")
    experiment.create({})
    base = {"seed": 0, "tau": 5.0}
    study = open_study(experiment.path / "study.db", ("delta_mtl",), 6, seed=0)
    space = distributions(DEFAULT_PARAMS)
    source = StudySource(study, space, ("delta_mtl",), base, {"iters": 2}, 3, experiment)
    asked = [source.next_trial() for _ in range(3)]
    assert source.next_trial() is None and [t.name for t in asked] == ["t000", "t001", "t002"]
    for trial in asked:
        params = {k: trial.config[k] for k in DEFAULT_PARAMS}
        assert params["sparsity_kind"] in ("log", "l1", "skip-ce") and 0.3 <= params["threshold"] <= 0.7
        assert 0.5 <= params["tau"] <= 10 and 1e-6 <= params["sparsity"] <= 1e-2
        assert trial.config["seed"] == 0 and trial.settings == {"number": int(trial.name[1:]), **params}
    source.complete(asked[0], {"status": "done", "result": {"delta_mtl": 12.5}})
    source.complete(asked[1], {"status": "error", "result": {}})
    reopened = load(experiment.path)
    assert [t.state.name for t in reopened.trials] == ["COMPLETE", "FAIL", "RUNNING"]
    assert reopened.trials[0].values == [12.5]
    # a tune killed with t002 running: resumed, t002 comes first with its parameters, then one new trial
    again = StudySource(open_study(experiment.path / "study.db", ("delta_mtl",), 6, seed=0), space, ("delta_mtl",),
                        base, {"iters": 2}, 4, experiment)
    resumed, new = again.next_trial(), again.next_trial()
    assert resumed.name == "t002" and resumed.config == asked[2].config
    assert new.name == "t003" and again.next_trial() is None
