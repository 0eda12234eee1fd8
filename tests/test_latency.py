"""Latency-aware search: the measured per-head cost table, the latency terms of the objective, bi-level search."""
import copy
import itertools
import json

import pandas as pd
import pytest
import torch

import nss
from nss.cli import main
from nss.deploy.cost_table import measure_cost_table
from nss.model.costs import count_flops, count_parameters
from nss.runs.folder import RunFolder
from nss.scale_search.gates import Gates
from nss.scale_search.latency import CostTable, LatencyTerm, optional_stages
from nss.training.phases import PretrainPhase, SearchPhase
from nss.training.session import Session
from nss.training.trainer import Trainer
from search_spaces import Architecture, SearchSpace, get_size, get_space
from supernet import build_network

from conftest import TINY_FLAGS, tiny_batch, tiny_config

SPACE = get_space("most_net_plus")


@pytest.fixture(scope="module")
def measured():
    """A cost table measured on the torch backend at a size where every head costs more than the timer's noise."""
    return measure_cost_table(SPACE, size="cpu", height=128, width=128, backend="torch", iters=50, warmup=3)


def test_heads_and_stages_cost_time_and_the_counts_are_exact(measured):
    full = build_network(SPACE, get_size("cpu"))
    for head in SPACE.searchable:
        cost = measured["heads"][head]
        assert cost["latency_ms"] >= 0, head  # one head's share can drown in a loaded machine's noise: clamped at 0
        without = build_network(Architecture(SPACE, tuple(h for h in SPACE.heads if h != head)), get_size("cpu"))
        assert cost["params"] == count_parameters(full) - count_parameters(without)
        assert cost["flops"] == count_flops(full, 128, 128) - count_flops(without, 128, 128)
    assert sum(measured["heads"][h]["latency_ms"] for h in SPACE.searchable) > 0  # together they cannot
    assert set(measured["stages"]) == {"1", "2"} and all(s["latency_ms"] > 0 for s in measured["stages"].values())
    assert measured["stages"]["1"]["needed_by"] == ["restoration@1", "segmentation@1", "flow@1"]
    base = build_network(Architecture(SPACE, SPACE.fixed), get_size("cpu"))
    assert measured["base"]["params"] == count_parameters(base)
    assert {"backend", "device", "precision", "input_size", "network", "space"} <= set(measured)
    # the model (base, the stages the kept heads need, their own costs) is exact on counts: heads and stages add up,
    # where summing the heads' own costs alone misses the decoder stage each of these sub-networks computes
    for heads in [("restoration@1",), ("flow@2",), ("segmentation@1", "flow@2"), ("restoration@2", "segmentation@2")]:
        architecture = Architecture(SPACE, SPACE.fixed + heads)
        network = build_network(architecture, get_size("cpu"))
        assert CostTable.from_dict(measured, SPACE, "t", "params").predicted(architecture) == count_parameters(network)
        flops = count_flops(network, 128, 128)
        assert CostTable.from_dict(measured, SPACE, "t", "flops").predicted(architecture) == flops
        assert measured["base"]["flops"] + sum(measured["heads"][h]["flops"] for h in heads) < flops
    # on latency it is a model, not an identity: within timing noise of the random sub-networks it was checked on (a
    # loaded machine's noise alone reaches ~25%; `nss profile --per-head` prints the error on a quiet one)
    assert len(measured["checks"]) == 4
    errors = [abs(c["predicted_ms"] / c["measured_ms"] - 1) for c in measured["checks"]]
    assert sum(errors) / len(errors) < 0.5, errors


def test_optional_stages_follow_the_finest_fixed_head():
    tasks = SPACE.tasks
    # segmentation's heads stop at scale 2, so its fixed head decodes stages 3 and 2 in every sub-network
    space = SearchSpace("finest_fixed_at_2", 3, tasks, ("restoration@1", "restoration@2", "restoration@3",
                                                         "segmentation@1", "segmentation@2", "flow@3"),
                        ("restoration@3", "segmentation@2", "flow@3"))
    assert optional_stages(space) == {1: ("restoration@1", "segmentation@1")}
    assert optional_stages(SPACE) == {1: ("restoration@1", "segmentation@1", "flow@1"),
                                      2: SPACE.searchable}
    one_scale = SearchSpace("one_scale", 1, tasks, ("restoration@1", "segmentation@1", "flow@1"),
                            ("restoration@1", "segmentation@1", "flow@1"))
    assert optional_stages(one_scale) == {}
    no_finest_heads = SearchSpace("no_scale_1", 3, tasks, ("restoration@2", "restoration@3", "segmentation@3",
                                                          "flow@3"), ("restoration@3", "segmentation@3", "flow@3"))
    assert optional_stages(no_finest_heads) == {2: ("restoration@2",)}  # scale 1 is never decoded
    table = measure_cost_table(space, size="tiny", height=32, width=32, iters=2, warmup=1, checks=1)
    for heads in itertools.product(*[((), (h,)) for h in space.searchable]):
        architecture = Architecture(space, space.fixed + sum(heads, ()))
        assert CostTable.from_dict(table, space, "t", "params").predicted(architecture) == \
            count_parameters(build_network(architecture, get_size("tiny")))


def test_a_stage_is_paid_once_whichever_heads_need_it(tmp_path):
    table = CostTable.load(hand_made_table(tmp_path), SPACE)

    def predicted(*heads):
        return table.predicted(Architecture(SPACE, SPACE.fixed + heads))

    assert predicted() == 10
    assert predicted("flow@2") == 10 + 5 + 1  # stage 2, the head
    assert predicted("flow@2", "restoration@2") == 10 + 5 + 2
    assert predicted("restoration@1") == 10 + 20 + 5 + 1  # stages 1 and 2
    assert predicted("restoration@1", "segmentation@1", "segmentation@2") == 10 + 20 + 5 + 3
    # with soft gates a stage's cost weighs on a head by the chance that no other head needs the stage
    alphas = {h: torch.tensor(0.5, requires_grad=True) for h in SPACE.searchable}
    grads = dict(zip(alphas, torch.autograd.grad(table.expected(alphas), list(alphas.values()))))
    assert grads["restoration@2"].item() == pytest.approx(1 + 5 * 0.5 ** 5)
    assert grads["restoration@1"].item() == pytest.approx(1 + 20 * 0.5 ** 2 + 5 * 0.5 ** 5)
    assert grads["flow@1"].item() == pytest.approx(100 + 20 * 0.5 ** 2 + 5 * 0.5 ** 5)


def hand_made_table(tmp_path, **changes) -> str:
    """flow@1 costs 100 ms, every other searchable head 1 ms, the base 10 ms, decoder stage 1 20 ms, stage 2 5 ms."""
    heads = {h: {"latency_ms": 100.0 if h == "flow@1" else 1.0, "params": 1, "flops": 1} for h in SPACE.searchable}
    table = {"space": SPACE.to_dict(), "backend": "torch", "device": "cpu", "precision": "fp32",
             "input_size": [32, 32], "network": "tiny", "iters": 3, "base": {"latency_ms": 10.0},
             "full": {"latency_ms": 140.0}, "heads": heads,
             "stages": {"1": {"latency_ms": 20.0}, "2": {"latency_ms": 5.0}}}
    for key, value in changes.items():
        if value is None:
            (table if key in table else table["heads"] if key in table["heads"] else table["stages"]).pop(key)
        elif key in table["heads"]:
            table["heads"][key]["latency_ms"] = value
        else:
            table[key] = value
    path = tmp_path / f"table{len(list(tmp_path.glob('table*')))}.json"
    path.write_text(json.dumps(table))
    return str(path)


def predicted_by_hand(heads) -> float:
    """The hand-made table's cost of keeping `heads`: the base, the stages they need, their own costs."""
    scales = [int(h.split("@")[1]) for h in heads]
    return 10 + 20 * (1 in scales) + 5 * (min(scales, default=3) <= 2) + sum(100 if h == "flow@1" else 1 for h in heads)


@pytest.mark.parametrize("target, direction", [(None, 1), (20.0, 1), (200.0, -1)])
def test_the_latency_gradient_lowers_the_cost_and_a_target_pulls_from_below(tmp_path, target, direction):
    table = CostTable.load(hand_made_table(tmp_path), SPACE)
    gates = Gates(SPACE.searchable, "softmax")
    expected = table.expected(gates.sample(tau=1.0).draw)
    assert expected.item() == 140  # even odds: softmax's noise-free draw keeps every head (ties on, as argmax)
    term = LatencyTerm(table, 1.0 if target is None else 0.0, target)
    grad, = torch.autograd.grad(term.penalty(expected), gates.logits)
    # descending the gradient lowers every on-logit (cost falls); below the target it raises them
    assert (torch.sign(grad[:, 0]) == direction).all() and (torch.sign(grad[:, 1]) == -direction).all()
    costliest = SPACE.searchable.index("flow@1")
    assert grad[costliest, 0].abs() == grad[:, 0].abs().max()


def test_a_latency_weight_drops_the_costliest_head_first(tmp_path):
    # Adam moves every gate whose gradient keeps its sign at the same speed, whatever its size: the cost decides
    # which heads' latency gradient outweighs what the tasks say of them, and the costliest one goes first.
    table = hand_made_table(tmp_path)
    final = {}
    for weight in (0.0, 0.01):
        config = tiny_config(latency_table=table, latency_weight=weight, pretrain_steps=2, search_steps=40,
                             conflicts_every=0)
        final[weight] = nss.search(config, out=tmp_path / f"run{weight}", progress=False)
    lowered = {h: final[0.0].probabilities[h] - final[0.01].probabilities[h] for h in SPACE.searchable}
    assert max(lowered, key=lowered.get) == "flow@1" and lowered["flow@1"] > 0.1
    assert "flow@1" in final[0.0].architecture.heads and "flow@1" not in final[0.01].architecture.heads
    result = final[0.01]
    gates = pd.read_csv(result.run_dir / "gates.csv")
    assert {"expected_ms", "relaxation"} <= set(gates) and set(gates["relaxation"]) == {"gumbel"}
    expected = gates.groupby("step")["expected_ms"].first()  # the cost of each logged step's drawn architecture
    assert expected.nunique() > 1
    every_cost = {round(predicted_by_hand(kept), 6) for n in range(7) for kept in
                  itertools.combinations(SPACE.searchable, n)}
    assert set(expected.round(6)) <= every_cost
    assert result.predicted_latency_ms == pytest.approx(
        predicted_by_hand([h for h in result.architecture.heads if h in SPACE.searchable]))
    assert result.measured_latency_ms is not None and result.measured_latency_ms > 0  # torch on this CPU
    saved = json.loads((result.run_dir / "architecture.json").read_text())
    assert saved["predicted_latency_ms"] == result.predicted_latency_ms
    assert (result.run_dir / "latency.json").is_file()  # the run's own copy, for --resume


@pytest.mark.parametrize("changes, message", [
    ({"space": get_space("most_net_pp").to_dict()}, "measured for space 'most_net_pp'"),
    ({"flow@2": None}, "no cost for head(s) flow@2"),
    ({"1": None}, "decoder stages [2] given, the space's optional ones are [1, 2]"),
    ({"stages": None}, "not a latency table (missing or wrong field 'stages'; measure it again"),
    ({"flow@2": -1.0}, "the cost of flow@2 is -1.0; costs must be finite and >= 0"),
    ({"flow@2": float("nan")}, "the cost of flow@2 is nan"),
    ({"stages": {"1": {"latency_ms": 1.0}, "2": {"latency_ms": -2.0}}}, "the cost of decoder stage 2 is -2.0"),
])
def test_bad_cost_tables_are_one_line_errors_and_write_nothing(tmp_path, capsys, changes, message):
    table = hand_made_table(tmp_path, **changes)
    out = tmp_path / "run"
    assert main(["search", *TINY_FLAGS, "--latency-table", table, "--latency-weight", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--latency-target", "0"], "--latency-target: must be a finite number of milliseconds > 0"),
    (["--latency-weight", "1"], "--latency-weight and --latency-target need --latency-table"),
    (["--relaxation", "enas"], "--relaxation: must be one of gumbel, softmax, gdas, concrete, dirichlet"),
])
def test_bad_latency_and_relaxation_options(tmp_path, capsys, flags, message):
    assert main(["search", *TINY_FLAGS, *flags, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not (tmp_path / "run").exists()


def test_bilevel_on_a_data_folder_without_a_validation_split_is_refused(data_copy, tmp_path, capsys):
    meta = json.loads((data_copy / "meta.json").read_text())
    del meta["splits"]["val"]
    (data_copy / "meta.json").write_text(json.dumps(meta))
    assert main(["search", *TINY_FLAGS, "--data", str(data_copy), "--bilevel", "--out", str(tmp_path / "run")]) == 1
    assert "no split 'val'" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_bilevel_alpha_step_moves_the_gates_and_not_the_weights(tmp_path):
    config = tiny_config(bilevel=True, pretrain_steps=0, search_steps=2).validate()
    session = Session.open(config)
    phase = SearchPhase(session)
    trainer = Trainer(session, RunFolder(tmp_path / "run").create(force=False), progress=False)
    weights = {k: v.clone() for k, v in session.network.state_dict().items() if v.dtype.is_floating_point}
    logits = phase.gates.logits.detach().clone()
    phase.start(trainer, 0)
    phase.loss(trainer, 1, tiny_batch())  # the α step on a validation batch, then the loss of the training batch
    assert not torch.equal(logits, phase.gates.logits.detach())
    after = session.network.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in weights.items() if "running" not in k)  # BN statistics aside
    assert trainer.batches_seen == {"train": 0, "val": 1}


def test_bilevel_alternates_batches_from_the_two_splits(tmp_path):
    config = tiny_config(bilevel=True, pretrain_steps=3, search_steps=5, log_every=1).validate()
    session = Session.open(config)
    run = RunFolder(tmp_path / "run").create(force=False)
    trainer = Trainer(session, run, progress=False)
    search = SearchPhase(session)
    before = copy.deepcopy(search.gates.state_dict())
    trainer.run_phases([PretrainPhase(session)])
    assert trainer.batches_seen == {"train": 3, "val": 0}
    assert torch.equal(before["logits"], search.gates.logits.detach())  # pretraining leaves the gates alone
    trainer.run_phases([search])
    assert trainer.batches_seen == {"train": 8, "val": 5}  # one validation batch per search step
    metrics = pd.read_csv(run.path / "metrics.csv")
    assert metrics[metrics["phase"] == "search"]["alpha_loss"].notna().all()
