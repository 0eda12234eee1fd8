"""Tuning on a real local Ray (one session for the module) with a real SQLite Optuna study."""
import json

import optuna
import pandas as pd
import pytest

from nss.cli import main
from nss.trials import Resources, ray_session
from nss.errors import NSSError
from nss.tune import STUDY_NAME, distributions, load_params

TUNE_FLAGS = ["--network", "tiny", "--frame-size", "32x32", "--clips", "2", "--frames", "3", "--batch-size", "2",
              "--device", "cpu", "--pretrain-steps", "4", "--search-steps", "4", "--retrain-steps", "2",
              "--val-every", "2", "--iters", "2", "--workers", "2", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    with ray_session(Resources(workers=2)):
        yield


def load(out):
    return optuna.load_study(storage=f"sqlite:///{out / 'study.db'}", study_name=STUDY_NAME)


def test_a_two_objective_tune_writes_a_study_that_optuna_reads_and_resumes_it(tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", *TUNE_FLAGS, "--trials", "3", "--objectives", "delta_mtl,latency", "--out", str(out)]) == 0
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
    assert main(["tune", *TUNE_FLAGS, "--trials", "2", "--objectives", "params", "--params", str(params),
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
    assert main(["tune", *TUNE_FLAGS, "--trials", "2", "--params", str(params), "--out", str(out)]) == 1
    assert "every one of the 2 trials failed" in capsys.readouterr().err
    assert [t.state for t in load(out).trials] == [optuna.trial.TrialState.FAIL] * 2
    assert set(pd.read_csv(out / "trials.csv")["message"].str[:12]) == {"--threshold:"}
    assert main(["tune", "--objectives", "speed", "--out", str(tmp_path / "x")]) == 1
    assert "--objectives: choose distinct ones from delta_mtl, latency, params, flops" in capsys.readouterr().err


def test_default_space_is_the_issue_s():
    from nss.tune import DEFAULT_PARAMS
    space = distributions(DEFAULT_PARAMS)
    assert space["tau"].low == 0.5 and space["tau"].high == 10 and space["tau"].log
    assert space["sparsity"].low == 1e-6 and space["sparsity"].high == 1e-2 and space["sparsity"].log
    assert space["sparsity_kind"].choices == ("log", "l1")
    assert (space["threshold"].low, space["threshold"].high) == (0.3, 0.7)
