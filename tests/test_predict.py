"""`nss predict` on a tiny trained run: every file of every frame, a playable preview, metrics on a data folder."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import nss
import nss.data
from nss.cli import main
from nss.data.formats import read_flo
from nss.data.video import VideoWriter, read_video, video_info
from nss.deploy.profile import profile_network
from nss.runs.trained import TrainedModel
from search_spaces import Architecture, get_size, get_space
from supernet import build_network

from conftest import tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A retrained network of each space (a few steps: what is checked is the plumbing, not the quality)."""
    root = tmp_path_factory.mktemp("trained")
    runs = {}
    for space in ("most_net_plus", "most_net_pp"):
        arch = Architecture(get_space(space), get_space(space).heads)
        nss.save_architecture(root / f"{space}.json", arch)
        runs[space] = nss.retrain(tiny_config(architecture=str(root / f"{space}.json"), retrain_steps=2,
                                              val_every=2), out=root / space, progress=False)
    return runs


def test_predict_on_a_video_writes_every_output_and_a_playable_preview(trained, tmp_path, capsys):
    rng = np.random.default_rng(0)
    with VideoWriter(tmp_path / "clip.mp4", 48, 40, fps=12) as writer:
        for _ in range(5):
            writer.write((rng.random((40, 48, 3)) * 255).astype(np.uint8))
    out = tmp_path / "pred"
    assert main(["predict", str(trained["most_net_plus"]), "--input", str(tmp_path / "clip.mp4"), "--out", str(out),
                 "--quiet"]) == 0
    assert "5 frames of 1 clip(s) at 32x32" in capsys.readouterr().out
    report = json.loads((out / "predict.json").read_text())
    assert report["frames"] == 5 and report["network_fps"] > 0 and report["preview_fps"] == pytest.approx(12)
    assert report["heads"] == {"restoration": "restoration@1", "segmentation": "segmentation@1", "flow": "flow@1"}
    clip = out / "clip"
    for folder, suffix in (("restoration", "png"), ("segmentation", "png"), ("segmentation_overlay", "png"),
                           ("flow", "flo"), ("flow_colour", "png")):
        assert sorted(p.name for p in (clip / folder).iterdir()) == [f"{i:06d}.{suffix}" for i in range(5)], folder
    assert read_flo(clip / "flow" / "000003.flo").shape == (32, 32, 2)
    assert set(np.unique(np.asarray(Image.open(clip / "segmentation" / "000000.png")))) <= {0, 255}
    frames = list(read_video(clip / "preview.mp4"))  # input | restored | mask overlay | flow colour
    assert len(frames) == 5 and frames[0].shape == (32, 4 * 32, 3)
    assert video_info(clip / "preview.mp4")["fps"] == pytest.approx(12)


def test_predict_on_a_data_folder_writes_homographies_and_metrics(trained, synthetic_folder, tmp_path):
    out = tmp_path / "pred"
    report = nss.predict(trained["most_net_pp"], synthetic_folder, out, heads="homography@2,segmentation@3",
                         split="val", progress=False)
    assert report["heads"] == {"homography": "homography@2", "segmentation": "segmentation@3"}
    clip = out / "val_000"
    hom = np.loadtxt(clip / "homography" / "000001.txt")
    assert hom.shape == (3, 3) and hom[2, 2] == pytest.approx(1.0)
    assert len(list(clip.glob("homography/*.txt"))) == 3  # every frame of the clip, the first one too
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["metric"]) == {"iou", "mace"} and set(metrics["head"]) == {"homography@2", "segmentation@3"}
    assert len(metrics[metrics["metric"] == "mace"]) == 2 * 2  # labelled frames 1, 2 of two val clips
    with pytest.raises(nss.NSSError, match="--heads: flow@1 is not a head of this network"):
        nss.predict(trained["most_net_pp"], synthetic_folder, tmp_path / "bad", heads="flow@1", progress=False)
    assert not (tmp_path / "bad").exists()


def test_streaming_predictions_equal_the_two_frame_forward(trained, synthetic_folder, tmp_path):
    """Frame t's outputs from the cached features of t−1 are the network's on the pair (t−1, t)."""
    model = TrainedModel.load(trained["most_net_plus"], "cpu")
    out = tmp_path / "pred"
    nss.predict(trained["most_net_plus"], synthetic_folder, out, split="val", progress=False)
    data = nss.data.FolderDataset(synthetic_folder, "val")
    sample = data[1]  # clip val_000, frames 1 → 2
    with torch.no_grad():
        outputs = model.network(sample["previous"][None], sample["current"][None])
    restored = np.asarray(Image.open(out / "val_000" / "restoration" / "000002.png"), np.float32) / 255
    expected = outputs["restoration@1"][0].clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.abs(restored - expected).max() <= 0.5 / 255 + 1e-6  # PNG quantisation only
    flow = read_flo(out / "val_000" / "flow" / "000002.flo")
    np.testing.assert_allclose(flow, outputs["flow@1"][0].permute(1, 2, 0).numpy(), atol=1e-5)


def test_a_compiled_prediction_writes_what_the_eager_one_does(trained, synthetic_folder, tmp_path):
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    nss.predict(trained["most_net_plus"], synthetic_folder, eager, split="val", max_frames=2, progress=False)
    report = nss.predict(trained["most_net_plus"], synthetic_folder, compiled, split="val", max_frames=2,
                         progress=False, compile="aot_eager")
    assert report["compile"] == "aot_eager" and report["frames"] == 4
    flows = sorted(p.relative_to(compiled) for p in compiled.glob("*/flow/*.flo"))
    assert len(flows) == 4 and flows == sorted(p.relative_to(eager) for p in eager.glob("*/flow/*.flo"))
    for flow in flows:
        np.testing.assert_allclose(read_flo(compiled / flow), read_flo(eager / flow), atol=1e-5)


def test_profiling_leaves_the_callers_network_as_it_was():
    network = build_network(get_space("most_net_plus"), get_size("tiny")).train()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    profile_network(network, height=32, width=32, backend="torch", device="cpu", fp16=True, iters=2, warmup=1)
    assert network.training and all(p.dtype == torch.float32 for p in network.parameters())
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
