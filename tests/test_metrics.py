"""Metrics against scikit-image and hand computations; Δ_MTL on a hand-made case."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from nss.evaluation.metrics import delta_mtl, epe, iou, mace, psnr, ssim
from nss.model.losses import euclidean
from search_spaces import TASKS


def _pair(seed: int, shape=(2, 3, 40, 48)):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(shape, generator=g)
    noisy = (clean + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    return noisy, clean


@pytest.mark.parametrize("seed", range(3))
def test_psnr_and_ssim_equal_scikit_image(seed):
    pred, target = _pair(seed)
    ref_psnr = np.mean([peak_signal_noise_ratio(t.numpy(), p.numpy(), data_range=1) for p, t in zip(pred, target)])
    ref_ssim = np.mean([structural_similarity(t.numpy(), p.numpy(), gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, data_range=1, channel_axis=0)
                        for p, t in zip(pred, target)])
    assert psnr(pred, target).item() == pytest.approx(ref_psnr, abs=1e-4)
    assert ssim(pred, target).item() == pytest.approx(ref_ssim, abs=1e-4)


def test_ssim_of_identical_images_is_one_and_single_channel_works():
    image = torch.rand(1, 1, 32, 32)
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-6)
    ref = structural_similarity(image[0, 0].numpy(), (image[0, 0] * 0.5).numpy(), gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=1)
    assert ssim(image * 0.5, image).item() == pytest.approx(ref, abs=1e-4)


def test_iou_is_accumulated_over_the_batch():
    pred = torch.zeros(2, 1, 2, 2)
    target = torch.zeros(2, 1, 2, 2)
    pred[0, 0, 0, :] = 1.0  # 2 pixels predicted, 1 right
    target[0, 0, 0, 0] = 1.0
    pred[1, 0, :, :] = 0.7  # 4 pixels predicted, 2 right
    target[1, 0, 1, :] = 1.0
    # intersection 1 + 2, union 2 + 4: 0.5 (a per-image mean would also be 0.5, so also check a skewed case)
    assert iou(pred, target).item() == pytest.approx(3 / 6)
    target[1] = 1.0
    assert iou(pred, target).item() == pytest.approx((1 + 4) / (2 + 4))
    assert iou(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 1.0


def test_epe_and_mace_by_hand():
    flow = torch.zeros(1, 2, 2, 2)
    flow[0, 0, 0, 0], flow[0, 1, 0, 0] = 3.0, 4.0  # one pixel off by 5 px
    assert epe(flow, torch.zeros_like(flow)).item() == pytest.approx(5 / 4)
    offsets = torch.zeros(2, 4, 2)
    offsets[1, :, 0] = 2.0
    assert mace(offsets, torch.zeros_like(offsets)).item() == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_flow_norm_is_vector_norms_with_its_gradient_at_zero(dtype):
    v = torch.randn(3, 2, 8, 8, dtype=dtype)
    v[0, :, 0, 0] = 0  # a pixel where prediction and label agree: vector_norm's gradient there is 0, not NaN
    ours, theirs = v.clone().requires_grad_(), v.clone().requires_grad_()
    torch.testing.assert_close(euclidean(v, 1), torch.linalg.vector_norm(v, dim=1, keepdim=True))
    weights = torch.rand(3, 1, 8, 8, dtype=dtype)
    (euclidean(ours, 1) * weights).sum().backward()
    (torch.linalg.vector_norm(theirs, dim=1, keepdim=True) * weights).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad)
    assert torch.equal(ours.grad[0, :, 0, 0], torch.zeros(2, dtype=dtype))


def test_delta_mtl_signs_by_metric_direction():
    tasks = [TASKS["restoration"], TASKS["flow"]]
    reference = {"restoration": {"psnr": 20.0, "ssim": 0.5}, "flow": {"epe": 2.0}}
    values = {"restoration": {"psnr": 22.0, "ssim": 0.5}, "flow": {"epe": 1.0}}
    # restoration: (+10% + 0%) / 2 = +5%; flow: EPE halved = +50%; mean +27.5%
    assert delta_mtl(values, reference, tasks) == pytest.approx(27.5)
    assert delta_mtl(reference, reference, tasks) == 0.0


def test_delta_mtl_is_finite_against_a_zero_reference():
    tasks = [TASKS["segmentation"], TASKS["flow"]]
    reference = {"segmentation": {"iou": 0.0}, "flow": {"epe": 0.0}}  # an empty mask, a static scene
    values = {"segmentation": {"iou": 0.5}, "flow": {"epe": 0.02}}
    # +0.5 / 0.01 and −0.02 / 0.01, as fractions, averaged over the two tasks
    assert delta_mtl(values, reference, tasks) == pytest.approx(100 * (50 - 2) / 2)


def test_psnr_of_identical_images_is_capped():
    image = torch.rand(2, 3, 8, 8)
    assert psnr(image, image).item() == 100.0
