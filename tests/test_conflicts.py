"""Gradient conflicts: hand-made cosines, the shared-parameter set, and updates equal to a plain backward."""
import copy

import pandas as pd
import pytest
import torch

import nss
from nss.model.step import supervised_loss
from nss.scale_search.gates import Gates
from nss.scale_search.objective import SearchObjective
from nss.training.balancing import make as make_balancer
from nss.training.conflicts import backward_per_task, conflict_rows, cosine_matrix, module_group, shared_parameters
from search_spaces import get_size, get_space
from supernet import build_network

from conftest import tiny_batch, tiny_config


def test_cosines_of_identical_orthogonal_and_opposite_gradients():
    g = torch.tensor([1.0, 2.0, 0.0])
    matrix = cosine_matrix({"a": g, "same": 3 * g, "orthogonal": torch.tensor([2.0, -1.0, 5.0]), "opposite": -g})
    assert matrix.loc["a", "same"] == pytest.approx(1.0)
    assert matrix.loc["a", "orthogonal"] == pytest.approx(0.0)
    assert matrix.loc["a", "opposite"] == pytest.approx(-1.0)
    assert list(matrix.index) == list(matrix.columns) == ["a", "same", "orthogonal", "opposite"]


def test_hand_made_rows_count_conflicts_per_group():
    w = torch.tensor([1.0, 0.0])
    per_task = {  # encoder: a and b agree, c opposes; decoder: only a and c reach it
        "a": {"encoder.scales.0.w": w, "decoder.1.w": w},
        "b": {"encoder.scales.0.w": 2 * w, "heads.x@1.w": w},
        "c": {"encoder.scales.0.w": -w, "decoder.1.w": torch.tensor([0.0, 1.0])},
    }
    rows = pd.DataFrame(conflict_rows(per_task, {"encoder.scales.0.w", "decoder.1.w", "heads.x@1.w"}))
    encoder = rows[rows.group == "encoder@1"].set_index(["task_a", "task_b"]).cosine
    assert encoder[("a", "b")] == pytest.approx(1.0) and encoder[("a", "c")] == pytest.approx(-1.0)
    decoder = rows[rows.group == "decoder@1"].set_index(["task_a", "task_b"]).cosine
    assert decoder[("a", "c")] == pytest.approx(0.0) and decoder[("a", "b")] == pytest.approx(0.0)
    assert set(rows.group) == {"all", "encoder@1", "decoder@1"}  # the head reached by one task is not shared
    assert (rows[rows.group == "encoder@1"].cosine < 0).sum() == 2  # a–c and b–c conflict


def test_module_groups():
    assert module_group("encoder.scales.0.deep.0.weight") == "encoder@1"
    assert module_group("encoder.fusion.2.body.0.weight") == "encoder@2"
    assert module_group("alignment.3.fuse.weight") == "alignment@3"
    assert module_group("decoder.1.blocks.0.body.0.weight") == "decoder@1"
    assert module_group("heads.flow@2.body.0.weight") == "head flow@2"


@pytest.mark.parametrize("phase", ["supervised", "search"])
def test_per_task_gradients_give_the_same_update_as_a_plain_backward(phase):
    # float64, so that only the algorithm is compared and not the order of float32 additions
    space = get_space("most_net_plus")
    torch.manual_seed(0)
    network, gates = build_network(space, get_size("tiny")).double(), Gates(space.searchable).double()
    twin, twin_gates = copy.deepcopy(network), copy.deepcopy(gates)
    batch = batch_to_double(tiny_batch())

    def loss_of(net, g):
        torch.manual_seed(1)  # the same Gumbel noise for both
        if phase == "search":
            return SearchObjective(space, g, tau=5.0, sparsity=1e-2, sparsity_kind="log").loss(net, batch)
        return supervised_loss(space, net, batch, make_balancer("atb", space.tasks))

    def sgd_step(params):
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p -= 0.1 * p.grad

    loss_of(twin, twin_gates).loss.backward()
    sgd_step(list(twin.parameters()) + list(twin_gates.parameters()))
    result = loss_of(network, gates)
    terms = {t: result.weights[t] * v for t, v in result.task_losses.items()}
    named = list(network.named_parameters()) + [("gates.logits", gates.logits)]
    per_task = backward_per_task(terms, result.extra, named)
    sgd_step(list(network.parameters()) + list(gates.parameters()))
    for (name, p), (_, q) in zip(named, list(twin.named_parameters()) + [("gates.logits", twin_gates.logits)]):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)
    shared = shared_parameters({t: {n: g for n, g in grads.items() if not n.startswith("gates.")}
                                for t, grads in per_task.items()})
    # head-only parameters are not shared; the coarser flow heads are, since their motion aligns finer scales
    shared_heads = {n.split(".")[1] for n in shared if n.startswith("heads.")}
    assert shared_heads == {"flow@2", "flow@3"}
    assert {n.split(".")[0] for n in shared} == {"encoder", "alignment", "decoder", "heads"}
    assert not [n for n in shared if n.startswith("gates.")]


def batch_to_double(batch: dict) -> dict:
    return {k: batch_to_double(v) if isinstance(v, dict) else (v.double() if v.is_floating_point() else v)
            for k, v in batch.items()}


def test_a_run_measures_conflicts_every_k_steps(tmp_path):
    run = nss.search(tiny_config(conflicts_every=2), out=tmp_path / "run", progress=False).run_dir
    conflicts = pd.read_csv(run / "conflicts.csv")
    assert list(conflicts.columns) == ["phase", "epoch", "step", "group", "task_a", "task_b", "cosine"]
    assert sorted(set(zip(conflicts.phase, conflicts.step))) == [("pretrain", 2), ("pretrain", 4), ("search", 2),
                                                                 ("search", 4), ("search", 6)]
    assert {"all", "encoder@1", "decoder@1", "alignment@3"} <= set(conflicts.group)
    assert conflicts.cosine.between(-1, 1).all()
    pairs = conflicts[(conflicts.group == "all") & (conflicts.step == 2) & (conflicts.phase == "search")]
    assert set(zip(pairs.task_a, pairs.task_b)) == {("restoration", "segmentation"), ("restoration", "flow"),
                                                    ("segmentation", "flow")}
