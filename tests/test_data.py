import json

import numpy as np
import pytest
import torch

from nss import DataError, RunConfig, check_folder, open_dataset
from nss.data import FolderDataset, SyntheticDataset, SyntheticSpec, corner_offsets, render_clip, synthetic_spec
from supernet import flow_from_homography, homography_from_offsets, warp

from conftest import TINY_SPEC

# Band-limited frames (no sub-Nyquist detail), so bilinear warping itself is exact up to float error.
SMOOTH = SyntheticSpec(clips=3, frames=4, height=64, width=64, seed=1, detail=0.0)


def _chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None].float()


def _visible_in_both(clip: dict, t: int, flow: np.ndarray, margin: float = 1.5) -> np.ndarray:
    """Pixels of frame t whose source in frame t-1 is inside the frame and on the same layer (not occluded)."""
    h, w = flow.shape[:2]
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    sx, sy = xs + flow[..., 0], ys + flow[..., 1]
    inside = (sx > margin) & (sx < w - margin) & (sy > margin) & (sy < h - margin)
    col = np.clip(sx.astype(int), 0, w - 1)
    row = np.clip(sy.astype(int), 0, h - 1)
    same = clip["layer"][t - 1][row, col] == clip["layer"][t]
    # stay away from layer edges, where a bilinear sample mixes two layers
    edges = np.zeros_like(same)
    for axis in (0, 1):
        for step in (1, -1):
            edges |= np.roll(clip["layer"][t], step, axis) != clip["layer"][t]
    return inside & same & ~edges


@pytest.mark.parametrize("clip_index", range(3))
def test_warping_the_previous_frame_by_the_flow_reproduces_the_current_one(clip_index):
    clip = render_clip(SMOOTH, "train", clip_index)
    for t in range(1, SMOOTH.frames):
        warped = warp(_chw(clip["clean"][t - 1]), _chw(clip["flow"][t]))[0].permute(1, 2, 0).numpy()
        error = np.abs(warped - clip["clean"][t]).mean(-1)
        visible = _visible_in_both(clip, t, clip["flow"][t])
        assert visible.mean() > 0.5
        assert np.median(error[visible]) < 2e-3 and error[visible].mean() < 1e-2
        assert np.abs(clip["clean"][t - 1] - clip["clean"][t]).mean(-1)[visible].mean() > 5 * error[visible].mean()


@pytest.mark.parametrize("clip_index", range(3))
def test_the_homography_maps_the_background_plane(clip_index):
    clip = render_clip(SMOOTH, "train", clip_index)
    for t in range(1, SMOOTH.frames):
        # the homography alone (not the flow) must align the background plane of frame t-1 onto frame t
        hom = torch.from_numpy(clip["homography"][t])[None]
        plane_flow = flow_from_homography(hom, 64, 64)[0].permute(1, 2, 0).numpy()
        background = (clip["layer"][t] == 0) & _visible_in_both(clip, t, plane_flow)
        np.testing.assert_allclose(plane_flow[background], clip["flow"][t][background], atol=1e-3)
        # and its 4-point form (what the network regresses) gives back the same matrix
        offsets = torch.from_numpy(corner_offsets(clip["homography"][t], 64, 64)).double()[None]
        recovered = homography_from_offsets(offsets, 64, 64)[0].numpy()
        np.testing.assert_allclose(recovered, clip["homography"][t] / clip["homography"][t][2, 2], atol=1e-4)


def test_synthetic_data_is_deterministic_from_its_seed():
    a, b = render_clip(TINY_SPEC, "train", 1), render_clip(TINY_SPEC, "train", 1)
    other = render_clip(SyntheticSpec(**{**TINY_SPEC.__dict__, "seed": 5}), "train", 1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["degraded"], other["degraded"])
    assert not np.array_equal(render_clip(TINY_SPEC, "val", 1)["clean"], a["clean"])


def test_the_data_seed_draws_the_clips_and_the_seed_does_not_when_it_is_given():
    def first_clip(**options) -> np.ndarray:
        spec = synthetic_spec(RunConfig(frame_size="32x32", clips=2, frames=3, **options))
        return open_dataset("synthetic", "test", spec)[0]["current"]

    assert torch.equal(first_clip(seed=0), first_clip(seed=0, data_seed=0))  # unset: the seed draws them
    assert torch.equal(first_clip(seed=1, data_seed=0), first_clip(seed=2, data_seed=0))
    assert not torch.equal(first_clip(seed=1, data_seed=0), first_clip(seed=1, data_seed=3))
    assert not torch.equal(first_clip(seed=0), first_clip(seed=1))


def test_more_eval_clips_extend_the_validation_and_test_splits_without_redrawing_them():
    def split(split: str, **options) -> SyntheticDataset:
        return open_dataset("synthetic", split, synthetic_spec(RunConfig(frame_size="32x32", clips=8, frames=3,
                                                                                 **options)))

    default, more = split("test"), split("test", eval_clips=5)
    assert (len(default), len(more), len(split("val", eval_clips=5))) == (2 * 2, 5 * 2, 5 * 2)  # 2 pairs a clip
    assert len(split("train", eval_clips=5)) == 8 * 2
    for i in range(len(default)):  # the default's two clips are the first two of the longer split
        assert torch.equal(default[i]["current"], more[i]["current"])
        assert torch.equal(default[i]["flow"], more[i]["flow"])


def test_degradation_is_real_and_masks_are_large_shapes():
    clip = render_clip(SyntheticSpec(), "train", 0)
    assert np.abs(clip["degraded"] - clip["clean"]).mean() > 0.05
    assert 0.05 < clip["mask"].mean() < 0.8


def test_folder_round_trip_matches_the_on_the_fly_data(synthetic_folder):
    assert check_folder(synthetic_folder) == []
    folder, live = FolderDataset(synthetic_folder, "train"), SyntheticDataset(TINY_SPEC, "train")
    assert len(folder) == len(live) == 2 * 2
    a, b = folder[3], live[3]
    for key in ("previous", "current", "image", "mask"):
        assert (a[key] - b[key]).abs().max() <= 0.5 / 255 + 1e-6  # PNG quantisation only
    torch.testing.assert_close(a["flow"], b["flow"])
    torch.testing.assert_close(a["homography"], b["homography"], atol=1e-4, rtol=0)
    assert open_dataset(synthetic_folder, "val").frame_size == (32, 32)


def test_missing_labels_are_sparse_not_errors(data_copy):
    (data_copy / "clips" / "train_000" / "mask" / "000002.png").unlink()
    data = FolderDataset(data_copy, "train")
    assert [data[i]["valid"]["mask"] for i in range(len(data))] == [True, False, True, True]
    assert all(data[i]["valid"]["flow"] for i in range(len(data)))
    assert check_folder(data_copy) == []


def _damage(root, kind):
    clip = root / "clips" / "train_001"
    if kind == "corrupt frame":
        target = clip / "input" / "000001.png"
        target.write_bytes(b"not a png")
    elif kind == "size mismatch":
        from PIL import Image
        target = clip / "mask" / "000002.png"
        Image.new("L", (16, 32)).save(target)
    elif kind == "bad flow":
        target = clip / "flow" / "000002.npy"
        np.save(target, np.zeros((32, 32, 3), np.float32))
    elif kind == "bad homography":
        target = clip / "homography" / "000001.txt"
        target.write_text("1 0 0\n0 1 0\n")
    elif kind == "orphan label":
        target = clip / "target" / "000009.png"
        target.write_bytes((clip / "target" / "000001.png").read_bytes())
    return target


@pytest.mark.parametrize("kind", ["corrupt frame", "size mismatch", "bad flow", "bad homography", "orphan label"])
def test_check_names_the_file_that_has_the_problem(data_copy, kind):
    target = _damage(data_copy, kind)
    problems = check_folder(data_copy)
    assert len(problems) == 1 and problems[0].startswith(str(target))


@pytest.mark.parametrize("kind", ["corrupt frame", "size mismatch", "bad flow", "bad homography"])
def test_loading_a_damaged_file_raises_a_data_error_naming_it(data_copy, kind):
    target = _damage(data_copy, kind)
    data = FolderDataset(data_copy, "train")
    with pytest.raises(DataError, match=str(target).replace("\\", "\\\\")):
        for i in range(len(data)):
            data[i]


@pytest.mark.parametrize("meta, message", [
    (None, "meta.json: file not found"),
    ("{broken", "not valid JSON"),
    (json.dumps({"tasks": ["restoration"], "splits": {}}), "missing key 'frame_size'"),
    (json.dumps({"tasks": ["depth"], "frame_size": [32, 32], "splits": {}}), "unknown tasks"),
])
def test_malformed_meta_is_reported(data_copy, meta, message):
    path = data_copy / "meta.json"
    path.unlink() if meta is None else path.write_text(meta)
    problems = check_folder(data_copy)
    assert len(problems) == 1 and message in problems[0]
    with pytest.raises(DataError, match=message):
        FolderDataset(data_copy, "train")


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        open_dataset(tmp_path / "nowhere", "train")
