"""Task balancers: ATB's constraints on every step, DWA's epoch ratios, RLW's simplex, UW's learning."""
import pytest
import torch

from nss.config import OPTIONS
from nss.training import balancing
from search_spaces import TASKS

TASK_SPECS = [TASKS["restoration"], TASKS["segmentation"], TASKS["flow"]]


def _losses(*values, grad=False):
    return {t.name: torch.tensor(v, requires_grad=grad) for t, v in zip(TASK_SPECS, values)}


def test_every_balancer_is_listed_and_unknown_names_are_refused():
    assert balancing.list_balancers() == ["ls", "atb", "dwa", "rlw", "uw"]
    assert balancing.list_balancers() == list(OPTIONS["balancing"].choices)  # what --balancing offers is there
    with pytest.raises(ValueError, match="unknown balancing 'nope'"):
        balancing.make("nope", TASK_SPECS)


def test_ls_uses_the_task_weights():
    weights = balancing.make("ls", TASK_SPECS).weights(_losses(1.0, 2.0, 3.0))
    assert {k: round(v.item(), 6) for k, v in weights.items()} == {"restoration": 0.1, "segmentation": 0.2,
                                                                   "flow": 0.1}


@pytest.mark.parametrize("values", [(0.05, 0.7, 2.0), (1.0, 1.0, 1.0), (1e-4, 3.0, 0.3)])
def test_atb_equalises_weighted_losses_and_keeps_their_sum(values):
    losses = _losses(*values, grad=True)
    weights = balancing.make("atb", TASK_SPECS).weights(losses)
    weighted = [weights[k] * losses[k].detach() for k in losses]
    for w in weighted:
        assert w.item() == pytest.approx(weighted[0].item(), rel=1e-6)
    assert sum(weighted).item() == pytest.approx(sum(values), rel=1e-6)
    assert not any(w.requires_grad for w in weights.values())


def test_dwa_uses_the_ratio_of_the_last_two_epoch_means():
    dwa = balancing.make("dwa", TASK_SPECS)
    for epoch_losses in [(1.0, 1.0, 1.0), (0.5, 1.0, 2.0)]:
        assert all(w.item() == 1.0 for w in dwa.weights(_losses(*epoch_losses)).values())
        dwa.end_epoch()
    weights = dwa.weights(_losses(9.0, 9.0, 9.0))
    ratios = torch.tensor([0.5, 1.0, 2.0])
    expected = 3 * torch.softmax(ratios / 2, dim=0)
    torch.testing.assert_close(torch.stack([weights[t.name] for t in TASK_SPECS]), expected)
    # a resumed run gets the same weights back
    restored = balancing.make("dwa", TASK_SPECS)
    restored.load_state_dict(dwa.state_dict())
    torch.testing.assert_close(torch.stack(list(restored.weights(_losses(1.0, 1.0, 1.0)).values())), expected)


def test_rlw_weights_lie_on_the_simplex_and_change_every_step():
    rlw = balancing.make("rlw", TASK_SPECS)
    first, second = (torch.stack(list(rlw.weights(_losses(1.0, 1.0, 1.0)).values())) for _ in range(2))
    assert first.sum().item() == pytest.approx(1.0) and (first > 0).all()
    assert not torch.equal(first, second)


def test_uw_learns_to_down_weight_the_larger_loss():
    uw = balancing.make("uw", TASK_SPECS)
    optimizer = torch.optim.Adam(uw.parameters(), lr=0.05)
    for _ in range(200):
        losses = _losses(0.1, 1.0, 10.0)
        weights = uw.weights(losses)
        loss = sum(weights[k] * losses[k] for k in losses) + uw.regularizer()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = uw.weights(_losses(1.0, 1.0, 1.0))
    assert final["restoration"] > final["segmentation"] > final["flow"]


def test_dwa_history_is_restored_where_its_running_sums_live():
    # a checkpoint loads on the CPU (and here in float32) while the module lives elsewhere (here float64, on a GPU
    # in training): the restored history must follow the module, or the next epoch boundary mixes the two
    tasks = [TASKS["restoration"], TASKS["flow"]]
    trained = balancing.make("dwa", tasks)
    for _ in range(3):
        trained.weights({"restoration": torch.tensor(1.0), "flow": torch.tensor(2.0)})
        trained.end_epoch()
    resumed = balancing.make("dwa", tasks).double()
    resumed.load_state_dict(trained.state_dict())
    assert resumed.history.dtype == resumed.running.dtype == torch.float64
    assert resumed.history.device == resumed.running.device
    torch.testing.assert_close(resumed.history, trained.history.double())
    resumed.weights({"restoration": torch.tensor(1.0, dtype=torch.float64), "flow": torch.tensor(2.0,
                                                                                              dtype=torch.float64)})
    resumed.end_epoch()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_dwa_resumed_on_a_gpu_keeps_its_history_there():
    tasks = [TASKS["restoration"], TASKS["flow"]]
    trained = balancing.make("dwa", tasks)
    trained.end_epoch()
    resumed = balancing.make("dwa", tasks).cuda()
    resumed.load_state_dict(trained.state_dict())
    assert resumed.history.device.type == "cuda"
