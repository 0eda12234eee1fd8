"""The NSS objective, gates, losses and derivation, checked against hand computations."""
import math

import pytest
import torch

from nss import Gates, derive_architecture, sparsity_penalty
from nss.model.losses import bce, charbonnier, corner_error, epe, masked_loss
from nss.model.outputs import refinements, to_full_resolution
from nss.scale_search.objective import SearchObjective, composites
from search_spaces import get_size, get_space
from supernet import build_network

from conftest import tiny_batch

SPACE = get_space("most_net_plus")


def test_losses_match_hand_computations():
    pred, target = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    assert torch.allclose(charbonnier(pred, target, eps=0.0), torch.ones(2))
    assert torch.allclose(bce(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)), torch.tensor([math.log(2)]))
    flow = torch.zeros(1, 2, 2, 2)
    flow[:, 0], flow[:, 1] = 3.0, 4.0
    assert torch.allclose(epe(flow, torch.zeros_like(flow)), torch.tensor([5.0]))
    offsets = torch.zeros(1, 4, 2)
    offsets[0, 0] = torch.tensor([3.0, 4.0])
    assert torch.allclose(corner_error(offsets, torch.zeros_like(offsets)), torch.tensor([1.25]))


def test_unlabelled_samples_add_no_loss():
    pred, target = torch.zeros(3, 1, 2, 2), torch.stack([torch.ones(1, 2, 2) * v for v in (1.0, 9.0, 3.0)])
    valid = torch.tensor([True, False, True])
    assert masked_loss("charbonnier", pred, target, valid).item() == pytest.approx(2.0, abs=1e-5)
    none = masked_loss("charbonnier", pred.requires_grad_(), target, torch.zeros(3, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def _outputs():
    torch.manual_seed(1)
    return {h: torch.randn(1, 3, 8, 8) for h in ("restoration@1", "restoration@2", "restoration@3")}


def test_composite_follows_the_formula():
    space = get_space("most_net_plus")
    full = _outputs()
    full.update({f"{t}@{s}": torch.zeros(1, 1, 8, 8) for t in ("segmentation", "flow") for s in (1, 2, 3)})
    deltas = refinements(space, full)
    torch.testing.assert_close(deltas["restoration@1"], full["restoration@1"] - full["restoration@2"])
    alphas = {h: torch.tensor(a) for h, a in zip(space.searchable, (0.25, 0.5, 0.1, 0.2, 0.3, 0.4))}
    out = composites(space, full, deltas, alphas)
    expected = (full["restoration@3"] + 0.5 * (full["restoration@2"] - full["restoration@3"])
                + 0.25 * (full["restoration@1"] - full["restoration@2"]))
    torch.testing.assert_close(out["restoration"], expected)
    # every gate on: the refinements telescope to the finest output; every gate off: the coarsest
    ones = {h: torch.tensor(1.0) for h in space.searchable}
    zeros = {h: torch.tensor(0.0) for h in space.searchable}
    torch.testing.assert_close(composites(space, full, deltas, ones)["restoration"], full["restoration@1"])
    torch.testing.assert_close(composites(space, full, deltas, zeros)["restoration"], full["restoration@3"])


def test_full_resolution_operator_scales_flow_by_two_per_scale():
    out = {"flow@3": torch.ones(1, 2, 4, 4), "restoration@1": torch.ones(1, 3, 16, 16)}
    full = to_full_resolution(SPACE, out)
    assert full["flow@3"].shape == (1, 2, 16, 16) and torch.allclose(full["flow@3"], torch.tensor(4.0))
    assert full["restoration@1"] is out["restoration@1"]


def test_sparsity_penalties():
    alphas = {"a": torch.tensor(0.5), "b": torch.tensor(0.25)}
    assert sparsity_penalty(alphas, "log").item() == pytest.approx(math.log(0.5) + math.log(0.25))
    assert sparsity_penalty(alphas, "l1").item() == pytest.approx(0.75)


RELAXATION_CASES = [("gumbel", False), ("gumbel", True), ("softmax", False), ("gdas", False), ("concrete", False),
                    ("dirichlet", False)]


@pytest.mark.parametrize("relaxation, hard", RELAXATION_CASES)
def test_every_relaxation_samples_in_the_unit_interval_and_reaches_every_logit(relaxation, hard):
    torch.manual_seed(1)
    gates = Gates(("a", "b", "c", "d"), relaxation)
    with torch.no_grad():
        gates.logits.copy_(torch.tensor([[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0], [0.3, 0.2]]))
    sample = gates.sample(tau=2.0, hard=hard)
    alphas, costs = torch.stack(list(sample.alphas.values())), torch.stack(list(sample.costs.values()))
    if relaxation == "gdas" or hard:
        assert set(alphas.tolist()) <= {0.0, 1.0}  # the forward is one-hot …
        assert ((costs > 0) & (costs < 1)).all()  # … the cost terms see the soft sample
    else:
        assert ((alphas >= 0) & (alphas <= 1)).all()
    gradient = alphas.sum() + costs.sum() + (sample.log_prob if sample.log_prob is not None else 0)
    gradient.backward(retain_graph=True)
    assert (gates.logits.grad.abs().sum(dim=1) > 0).all(), "some logit got no gradient"
    probabilities = gates.probabilities()
    assert probabilities["a"] > 0.5 > probabilities["c"] and all(0 < p < 1 for p in probabilities.values())
    # the latency term sees one architecture (0/1 per head) and, but for concrete's z, reaches every logit
    drawn = torch.stack(list(sample.draw.values()))
    assert set(drawn.tolist()) <= {0.0, 1.0}
    if relaxation == "concrete":
        assert torch.equal(drawn, costs)
    else:
        reached, = torch.autograd.grad(drawn.sum(), gates.logits)
        assert (reached.abs().sum(dim=1) > 0).all()
    if relaxation == "softmax":  # no noise: the derived architecture itself
        assert drawn.tolist() == [float(p >= 0.5) for p in probabilities.values()]


def test_the_gumbel_draw_keeps_each_head_with_its_on_probability():
    torch.manual_seed(0)
    gates = Gates(("a", "b", "c"), "gumbel")
    with torch.no_grad():
        gates.logits.copy_(torch.tensor([[1.0, -1.0], [0.0, 0.0], [-0.5, 1.0]]))
    draws = torch.stack([torch.stack(list(gates.sample(tau=5.0).draw.values())).detach()
                         for _ in range(4000)])
    assert draws.mean(0).tolist() == pytest.approx(list(gates.probabilities().values()), abs=0.03)


def test_softmax_has_no_noise_and_gdas_equals_hard_gumbel():
    gates = Gates(("a", "b"), "softmax")
    with torch.no_grad():
        gates.logits.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    first, second = gates.sample(tau=2.0).alphas, gates.sample(tau=2.0).alphas
    assert first["a"].item() == second["a"].item() == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item())
    torch.manual_seed(3)
    gdas = Gates(("a", "b"), "gdas").sample(tau=1.0).alphas
    torch.manual_seed(3)
    hard = Gates(("a", "b"), "gumbel").sample(tau=1.0, hard=True).alphas
    assert {k: v.item() for k, v in gdas.items()} == {k: v.item() for k, v in hard.items()}


def test_hard_gates_with_the_log_penalty_keep_pressure_on_gates_sampled_off():
    # a gate sampled off has α = 0 in the forward; the penalty must stay finite and still push its on-logit down
    gates = Gates(tuple("abcdefgh"), "gumbel")
    torch.manual_seed(0)
    sample = gates.sample(tau=1.0, hard=True)
    off = [h for h, a in sample.alphas.items() if a.item() == 0.0]
    assert off, "pick a seed that samples some gate off"
    penalty = sparsity_penalty(sample.costs, "log")
    assert penalty.item() > len(gates.heads) * math.log(1e-3)  # not a sum of log(1e-6) clamps
    grad, = torch.autograd.grad(penalty, gates.logits)
    index = {h: i for i, h in enumerate(gates.heads)}
    assert all(grad[index[h], 0] > 0 for h in off)  # minimising the penalty lowers their on-logit too


def test_concrete_credits_the_costs_through_the_log_probability():
    space = get_space("most_net_plus")
    network, gates = build_network(space, get_size("tiny")), Gates(space.searchable, "concrete")
    torch.manual_seed(0)
    result = SearchObjective(space, gates, tau=5.0, sparsity=1.0, sparsity_kind="log").loss(network, tiny_batch())
    z = torch.stack(list(result.sample.costs.values()))  # the discrete sample the costs were taken on
    assert set(z.tolist()) <= {0.0, 1.0}
    assert result.sparsity.item() == z.sum().item()  # its L0 count: the heads it keeps, not Σ log α
    grad, = torch.autograd.grad(result.extra, gates.logits)
    assert (grad.abs().sum(dim=1) > 0).all()  # score function: cost · ∇ log p(z) reaches every logit


@pytest.mark.parametrize("preset", ["most_net_plus", "most_net_pp"])
@pytest.mark.parametrize("source", ["task losses", "sparsity"])
def test_gate_logits_get_gradients_from_each_term(preset, source):
    space = get_space(preset)
    network, gates = build_network(space, get_size("tiny")), Gates(space.searchable)
    result = SearchObjective(space, gates, tau=5.0, sparsity=1.0, sparsity_kind="log").loss(network, tiny_batch())
    term = result.loss - result.sparsity if source == "task losses" else result.sparsity
    grad, = torch.autograd.grad(term, gates.logits)
    assert (grad.abs().sum(dim=1) > 0).all(), f"some gate got no gradient from the {source}"
    if source == "sparsity":  # minimising Σ log α pushes every on-logit down
        assert (grad[:, 0] > 0).all()


def test_derivation_keeps_fixed_heads_and_thresholds_the_rest():
    probs = {h: 0.1 for h in SPACE.searchable} | {"restoration@1": 0.9, "segmentation@2": 0.5}
    arch = derive_architecture(SPACE, probs, threshold=0.5)
    assert set(arch.heads) == set(SPACE.fixed) | {"restoration@1", "segmentation@2"}
    assert set(derive_architecture(SPACE, probs, threshold=0.6).heads) == set(SPACE.fixed) | {"restoration@1"}
