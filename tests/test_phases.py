"""Phases as objects: a command is a list of phases, and adding one is a class and a line; TensorBoard beside the
CSV logs."""
import pandas as pd
import pytest
import torch

import nss
from nss.training import api
from nss.training.phases import PretrainPhase, SearchPhase

from conftest import tiny_config


class GateWarmupPhase(SearchPhase):
    """The worked example of ARCHITECTURE.md: the weights learn the gated composite while the gate logits stay
    put, so that no gate is judged before its head has learnt anything."""

    name, stream = "warmup", 4

    def __init__(self, session, steps: int = 4):
        super().__init__(session, steps)

    def updated(self, step: int) -> tuple[str, ...]:
        return ("theta",)  # the weights only

    def loss(self, trainer, step, batch):
        return self.objective.loss(self.network, batch)  # and no bi-level gate step either

    def finish(self, trainer) -> None:
        """Nothing to derive yet: the search that follows does."""


def test_a_new_phase_is_one_class_and_one_line_where_the_list_is_made(tmp_path, monkeypatch):
    monkeypatch.setitem(api.COMMANDS, "search", lambda s: [PretrainPhase(s), GateWarmupPhase(s), SearchPhase(s)])
    result = nss.search(tiny_config(), out=tmp_path / "run", progress=False)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(metrics.groupby("phase", sort=False)["step"].max().items()) == [("pretrain", 4), ("warmup", 4),
                                                                                ("search", 6)]
    gates = pd.read_csv(tmp_path / "run" / "gates.csv")
    assert (gates.loc[gates["phase"] == "warmup", "prob"] == 0.5).all()  # logged, never stepped
    assert (gates.loc[gates["phase"] == "search", "prob"] != 0.5).all()
    # a run stopped after its warm-up resumes there, to the same gates
    trainer, phases, _ = api.open_run("search", tiny_config(), tmp_path / "stopped", force=False, resume=False)
    trainer.progress = False
    trainer.run_phases(phases[:2])
    assert torch.load(tmp_path / "stopped" / "checkpoints" / "last.pt", weights_only=True)["phase"] == "warmup"
    resumed = nss.search(out=tmp_path / "stopped", resume=True, progress=False)
    assert resumed.probabilities == pytest.approx(result.probabilities, abs=1e-6)


def test_tensorboard_holds_what_the_csv_logs_hold(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = nss.search(tiny_config(tensorboard=True), out=tmp_path / "search", progress=False).run_dir
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    metrics, gates = pd.read_csv(run / "metrics.csv"), pd.read_csv(run / "gates.csv")
    search = metrics[metrics["phase"] == "search"]
    loss = events.Scalars("search/loss")  # one step axis across the phases: the search's follows pretraining's 4
    assert [e.step for e in loss] == list(4 + search["step"])
    assert [e.value for e in loss] == pytest.approx(list(search["loss"]), rel=1e-6)
    prob = gates[gates["head"] == "flow@1"]
    assert [e.value for e in events.Scalars("gates/prob/flow@1")] == pytest.approx(list(prob["prob"]), rel=1e-6)
    assert {"pretrain/lambda/flow", "pretrain/loss/restoration@1", "search/sparsity", "search/lr"} <= \
        set(events.Tags()["scalars"])
    architecture = str(run / "architecture.json")
    retrained = nss.retrain(tiny_config(architecture=architecture, retrain_steps=4, val_every=2, tensorboard=True),
                            out=tmp_path / "retrain", progress=False)
    events = EventAccumulator(str(retrained / "tensorboard")).Reload()
    validation = pd.read_csv(retrained / "validation.csv")
    score = validation[validation["metric"] == "delta_mtl"]
    assert [e.value for e in events.Scalars("validation/all/delta_mtl")] == pytest.approx(list(score["value"]))
