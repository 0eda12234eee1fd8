import numpy as np
import pytest
import torch

from nss.config import check_frame_size
from nss.errors import NSSError
from nss.model.step import supervised_loss
from nss.scale_search.gates import Gates
from nss.scale_search.objective import SearchObjective
from nss.training.balancing import make as make_balancer
from search_spaces import Architecture, get_size, get_space, list_spaces, parse_head
from supernet import build_network, flow_from_homography, homography_from_offsets, motion_to_flow, rescale_output, warp
from supernet.alignment import COST_CHANNELS, cost_volume

from conftest import tiny_batch

PRESETS = list_spaces()
EVERY_HEAD = [(p, h) for p in PRESETS for h in get_space(p).heads]
TINY = get_size("tiny")


def expected_shape(kind: str, batch: int, scale: int, size: int = 32) -> tuple[int, ...]:
    side = size // 2 ** (scale - 1)
    return {"image": (batch, 3, side, side), "mask": (batch, 1, side, side), "flow": (batch, 2, side, side),
            "homography": (batch, 4, 2)}[kind]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_head_has_the_right_shape(preset):
    space = get_space(preset)
    batch = tiny_batch()
    outputs = build_network(space, TINY)(batch["previous"], batch["current"])
    assert set(outputs) == set(space.heads)
    for head, out in outputs.items():
        task, scale = parse_head(head)
        assert out.shape == expected_shape(space.task(task).kind, 2, scale)
        assert torch.isfinite(out).all()


@pytest.fixture(scope="module")
def trained_grads():
    """One backward pass per (preset, phase); the tests below read the gradients per head."""
    torch.manual_seed(0)
    batch, results = tiny_batch(), {}
    for preset in PRESETS:
        space = get_space(preset)
        for phase in ("pretrain", "search"):
            network, gates = build_network(space, TINY), Gates(space.searchable)
            if phase == "pretrain":
                loss = supervised_loss(space, network, batch, make_balancer("ls", space.tasks)).loss
            else:
                loss = SearchObjective(space, gates, tau=5.0, sparsity=1e-3, sparsity_kind="log").loss(network,
                                                                                                        batch).loss
            loss.backward()
            results[preset, phase] = network
    return results


@pytest.mark.parametrize("phase", ["pretrain", "search"])
@pytest.mark.parametrize("preset, head", EVERY_HEAD)
def test_every_parameter_of_every_head_gets_a_gradient(trained_grads, preset, head, phase):
    network = trained_grads[preset, phase]
    for name, param in network.heads[head].named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"{head}.{name} got no gradient in {phase}"


@pytest.mark.parametrize("preset", PRESETS)
def test_shared_parameters_get_gradients_and_exclude_heads(trained_grads, preset):
    network = trained_grads[preset, "pretrain"]
    shared = {id(p) for p in network.shared_parameters()}
    assert not shared & {id(p) for p in network.heads.parameters()}
    assert shared | {id(p) for p in network.heads.parameters()} == {id(p) for p in network.parameters()}
    assert all(p.grad is not None for p in network.shared_parameters())


@pytest.mark.parametrize("preset, head", [(p, h) for p in PRESETS for h in get_space(p).searchable])
def test_dropping_a_head_removes_its_module(preset, head):
    space = get_space(preset)
    full = build_network(space, TINY)
    pruned = build_network(Architecture(space, tuple(h for h in space.heads if h != head)), TINY)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in full.parameters())
    assert head not in pruned.heads and head not in pruned.state_dict().__str__()
    batch = tiny_batch()
    outputs = pruned(batch["previous"], batch["current"])
    assert head not in outputs and set(outputs) == set(space.heads) - {head}


@pytest.mark.parametrize("preset", PRESETS)
def test_a_derived_network_trains_every_kept_head(preset):
    space = get_space(preset)
    motion = space.motion_task.name
    arch = Architecture(space, ("restoration@1", "restoration@3", "segmentation@2", "segmentation@3", f"{motion}@3"))
    network = build_network(arch, TINY)
    supervised_loss(space, network, tiny_batch(), make_balancer("ls", space.tasks)).loss.backward()
    for head in arch.heads:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.heads[head].parameters())


def test_no_decoder_stage_that_no_kept_head_needs():
    space = get_space("most_net_plus")
    coarse_only = build_network(Architecture(space, space.fixed), TINY)
    assert set(coarse_only.decoder) == {"3"} and set(coarse_only.alignment) == {"3"}
    assert len(coarse_only.encoder.fusion) == 0
    middle = build_network(Architecture(space, space.fixed + ("segmentation@2",)), TINY)
    assert set(middle.decoder) == {"2", "3"} and set(middle.encoder.fusion) == {"2"}


def test_streaming_with_cached_features_matches_the_two_frame_forward():
    network = build_network(get_space("most_net_plus"), TINY).eval()
    batch = tiny_batch()
    with torch.no_grad():
        both = network(batch["previous"], batch["current"])
        cached = network.encode(batch["previous"])
        streamed = network.decode(network.encode(batch["current"]), cached, batch["current"])
    for head in both:
        torch.testing.assert_close(streamed[head], both[head], atol=1e-5, rtol=1e-5)


# -- geometry ------------------------------------------------------------------------------------------------
def test_homography_from_corner_offsets_recovers_the_matrix():
    hom = np.array([[1.02, 0.03, 1.5], [-0.02, 0.99, -2.0], [2e-4, -1e-4, 1.0]])
    corners = np.array([[0, 0], [64, 0], [64, 48], [0, 48]], float)
    mapped = np.c_[corners, np.ones(4)] @ hom.T
    offsets = torch.tensor(mapped[:, :2] / mapped[:, 2:] - corners)[None]
    recovered = homography_from_offsets(offsets, 48, 64)[0].numpy()
    np.testing.assert_allclose(recovered, hom, atol=1e-9)


def test_flow_of_a_translation_is_constant():
    shift = torch.tensor([[[1.0, 0, 3.0], [0, 1.0, -2.0], [0, 0, 1.0]]])
    flow = flow_from_homography(shift, 8, 12)
    torch.testing.assert_close(flow[0, 0], torch.full((8, 12), -3.0))
    torch.testing.assert_close(flow[0, 1], torch.full((8, 12), 2.0))


def test_warp_by_an_integer_flow_shifts_the_image():
    image = torch.rand(1, 3, 16, 16)
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 2.0  # sample two pixels to the right
    torch.testing.assert_close(warp(image, flow)[..., :, :14], image[..., :, 2:])


def test_cost_volume_against_a_loop_and_peaking_at_the_true_displacement():
    current = torch.randn(2, 256, 10, 12, dtype=torch.float64)  # many channels: a sharp peak
    dx, dy = 1, -2
    aligned = torch.roll(current, shifts=(dy, dx), dims=(2, 3))  # aligned(q + (dx, dy)) = current(q)
    volume = cost_volume(current, aligned)
    assert volume.shape == (2, COST_CHANNELS, 10, 12)
    cur, ali = current.numpy(), aligned.numpy()
    for channel, (ddy, ddx) in enumerate((a, b) for a in range(-2, 3) for b in range(-2, 3)):
        expected = np.zeros((2, 10, 12))
        for y in range(10):
            for x in range(12):
                if 0 <= y + ddy < 10 and 0 <= x + ddx < 12:  # zero outside the frame
                    expected[:, y, x] = (cur[:, :, y, x] * ali[:, :, y + ddy, x + ddx]).mean(1)
        np.testing.assert_allclose(volume[:, channel].numpy(), expected, atol=1e-12)
    peak = volume[:, :, 3:-3, 3:-3].argmax(1)  # away from the borders and the roll's wrap-around
    assert (peak == (dy + 2) * 5 + (dx + 2)).all()


def test_upsampling_operator_scales_flow_and_offsets():
    flow = torch.ones(1, 2, 4, 4)
    assert torch.allclose(rescale_output("flow", flow, 2), torch.full((1, 2, 8, 8), 2.0))
    assert torch.allclose(rescale_output("homography", torch.ones(1, 4, 2), 4), torch.full((1, 4, 2), 4.0))
    image = torch.rand(1, 3, 4, 4)
    assert torch.allclose(rescale_output("image", image, 2).mean(), image.mean(), atol=1e-6)


@pytest.mark.parametrize("preset", PRESETS)
def test_frames_that_are_multiples_of_the_divisor_run_and_others_are_refused(preset):
    space = get_space(preset)
    d = space.frame_divisor
    network = build_network(space, TINY).eval()
    with torch.no_grad():  # the smallest frames the check accepts go through every head, the coarsest flow's too
        outputs = network(torch.rand(1, 3, d, 2 * d), torch.rand(1, 3, d, 2 * d))
    assert set(outputs) == set(space.heads)
    check_frame_size(space, d, 2 * d, "--size")
    with pytest.raises(NSSError, match=f"--size {d + 4}x{2 * d}; with {space.scales} scales both sides must be "
                                       f"multiples of {d}"):
        check_frame_size(space, d + 4, 2 * d, "--size")


def test_homography_geometry_in_a_half_precision_network_stays_exact_at_512():
    # fp16 overflows the square-to-quad determinant (~ −w·h) above ~256×256, which zeroes the perspective terms
    offsets = torch.tensor([[[6.0, 4.0], [-5.0, 3.0], [-4.0, -6.0], [5.0, -3.0]]])
    reference = motion_to_flow("homography", offsets, 1, 512, 512)
    half = motion_to_flow("homography", offsets.half(), 1, 512, 512)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), reference, atol=5e-3, rtol=0)
