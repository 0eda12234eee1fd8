"""Reports on real (tiny) run folders, and conflict percentages on a hand-made conflicts.csv."""
import pandas as pd
import pytest
from PIL import Image

import analysis
import nss
from nss.cli import main
from search_spaces import Architecture

from conftest import tiny_config


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two searches at different τ, and ATB and LS retrainings of the first one's architecture, all evaluated and
    profiled: what an analyst hands to `nss report`."""
    root = tmp_path_factory.mktemp("study")
    common = dict(conflicts_every=2)
    searches = [nss.search(tiny_config(tau=tau, **common), out=root / f"search-tau{tau:g}", progress=False).run_dir
                for tau in (5.0, 1.0)]
    retrains = [nss.retrain(tiny_config(architecture=str(searches[0] / "architecture.json"), balancing=b,
                                        retrain_steps=4, val_every=2, **common), out=root / f"retrain-{b}",
                            progress=False) for b in ("atb", "ls")]
    runs = searches + retrains
    for run in runs:
        nss.evaluate_run(run, "val")
        nss.profile_target(run, backend="torch", device="cpu", size=(32, 32), iters=3, warmup=1)
    return runs


def test_conflict_percentages_on_a_hand_made_table(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("command: retrain\n")
    rows = []
    # epoch 0: two measured updates, one with a conflict; epoch 1: one update, no conflict
    for epoch, step, cosines in [(0, 1, (0.5, -0.2, 0.1)), (0, 2, (0.5, 0.2, 0.1)), (1, 3, (0.9, 0.0, 0.3))]:
        for (a, b), cosine in zip([("r", "s"), ("r", "f"), ("s", "f")], cosines):
            rows.append({"phase": "retrain", "epoch": epoch, "step": step, "group": "all", "task_a": a,
                         "task_b": b, "cosine": cosine})
            rows.append({"phase": "retrain", "epoch": epoch, "step": step, "group": "decoder@1", "task_a": a,
                         "task_b": b, "cosine": -abs(cosine) if a == "r" else abs(cosine)})
    pd.DataFrame(rows).to_csv(run / "conflicts.csv", index=False)
    rates = analysis.conflict_rates([run]).set_index("epoch")
    assert rates.loc[0, "conflict_pct"] == pytest.approx(50.0) and rates.loc[1, "conflict_pct"] == 0.0
    assert list(rates["updates"]) == [2, 1]
    pairs = analysis.pair_conflict_rates([run]).set_index("pair")["conflict_pct"]
    assert pairs["r – f"] == pytest.approx(100 / 3) and pairs["r – s"] == 0.0
    groups = analysis.group_conflict_rates([run]).set_index("group")["conflict_pct"]
    assert groups["decoder@1"] == pytest.approx(100 * 5 / 9)  # r–s and r–f below zero except one exact 0


def test_tables_from_real_runs(study):
    search, _, atb, ls = study
    conflicts = analysis.conflict_table(atb)
    assert {"run", "phase", "step", "group", "task_a", "task_b", "cosine", "conflict"} <= set(conflicts)
    assert set(analysis.architecture_table(study)["tau"].dropna()) == {5.0, 1.0}
    gains = analysis.scale_gain_table(study)
    derived = Architecture.load(search / "architecture.json")
    assert derived.dropped  # the retrainings train a network smaller than the supernet …
    assert set(gains["network"]) == {"supernet", "derived"}  # … so their rows are the derived network's
    assert set(gains.loc[gains["network"] == "derived", "head"]) == set(derived.heads)
    assert set(gains.loc[gains["network"] == "supernet", "head"]) == set(derived.space.heads)
    assert set(analysis.validation_table([atb, ls])["balancing"]) == {"atb", "ls"}
    pareto = analysis.pareto_table(study)
    assert len(pareto) == 4 and pareto["pareto"].any()


@pytest.mark.parametrize("plot", ["plot_conflicts", "plot_gate_convergence", "plot_temperature_robustness",
                                  "plot_scale_gains", "plot_training_curves", "plot_pareto"])
def test_every_figure_draws(study, plot, tmp_path):
    figure = getattr(analysis, plot)(study)
    assert figure.axes and all(ax.get_xlabel() or ax.get_title() for ax in figure.axes)
    figure.savefig(tmp_path / "f.png")
    assert Image.open(tmp_path / "f.png").size[0] > 300


def test_nss_report_writes_figures_tables_and_markdown(study, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", *map(str, study), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for name in ("conflicts", "gate_convergence", "temperature_robustness", "scale_gains", "training_curves",
                 "pareto"):
        assert f"({name}.png)" in report and (out / f"{name}.png").stat().st_size > 1000
        assert len(pd.read_csv(out / f"{name}.csv")) > 0
    assert "search-tau5" in report and "retrain-atb" in report
    assert main(["report", str(study[0]), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r2")]) == 1


def test_a_latency_timed_on_a_busy_machine_is_marked_in_the_pareto_figure(study, tmp_path):
    import json
    import shutil
    runs = [shutil.copytree(run, tmp_path / name) for run, name in ((study[0], "quiet-run"), (study[2], "busy-run"))]
    for run, cores in zip(runs, (0.0, 1.5)):  # what profiling measured of the other processes while it timed
        profile = json.loads((run / "profile.json").read_text())
        assert "other_load_cores" in profile and profile["torch_threads"] >= 1  # every profile says so
        (run / "profile.json").write_text(json.dumps(dict(profile, other_load_cores=cores)))
    table = analysis.pareto_table(runs).set_index("run")
    assert table["other_load_cores"].to_dict() == {"quiet-run": 0.0, "busy-run": 1.5}
    texts = [t.get_text() for t in analysis.plot_pareto(runs).texts]
    assert texts == ["timed on a busy machine: busy-run (1.5 cores taken)"]
