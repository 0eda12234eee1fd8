"""Real data in: the label encodings common tools write (checked against hand-written bytes of the published
formats), importing videos and frame folders, and the defects the review found in the folder reader."""
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import nss
from nss.cli import main
from nss.data import FolderDataset, check_folder
from nss.data.folder import inspect_folder
from nss.data.formats import read_flo, read_flow, read_mask, write_flo, write_kitti_flow
from nss.data.importer import import_data, split_clips
from nss.data.video import VideoWriter, read_video
from nss.data.visualize import colour_wheel, flow_to_colour

from conftest import TINY_FLAGS


# -- label encodings --------------------------------------------------------------------------------------------
def _mask_truth():
    truth = np.zeros((6, 8), bool)
    truth[1:4, 2:6] = True
    return truth


@pytest.mark.parametrize("encoding", ["grey 0/1", "grey 0/255", "grey 16-bit", "palette", "rgb"])
def test_every_mask_encoding_reads_as_the_same_mask(tmp_path, encoding):
    truth, path = _mask_truth(), tmp_path / "m.png"
    if encoding == "grey 0/1":
        Image.fromarray(truth.astype(np.uint8), "L").save(path)
    elif encoding == "grey 0/255":
        Image.fromarray(truth.astype(np.uint8) * 255, "L").save(path)
    elif encoding == "grey 16-bit":
        Image.fromarray(truth.astype(np.uint16) * 65535).save(path)
    elif encoding == "palette":  # VOC style: class 15 (a person) on background 0
        image = Image.fromarray(truth.astype(np.uint8) * 15, "P")
        image.putpalette([0, 0, 0] * 15 + [192, 128, 128] + [0, 0, 0] * 240)
        image.save(path)
    else:  # colour-coded: any non-black colour is foreground
        colour = np.zeros((6, 8, 3), np.uint8)
        colour[truth] = (0, 128, 0)
        Image.fromarray(colour, "RGB").save(path)
    foreground, weight = read_mask(path, (6, 8))
    np.testing.assert_array_equal(foreground, truth.astype(np.float32))
    assert (weight == 1).all()


def test_palette_index_255_is_ignored(tmp_path):
    index = _mask_truth().astype(np.uint8)
    index[0, :] = 255  # VOC's boundary / void label
    image = Image.fromarray(index, "P")
    image.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 253 + [224, 224, 192])  # VOC's void colour last
    image.save(tmp_path / "m.png")
    foreground, weight = read_mask(tmp_path / "m.png")
    assert (weight[0] == 0).all() and (weight[1:] == 1).all() and foreground[0].sum() == 0


def test_a_mask_of_an_unaccepted_mode_is_named(tmp_path):
    Image.new("CMYK", (8, 6)).save(tmp_path / "m.tif")
    with pytest.raises(nss.DataError, match=r"m.tif: a mask of mode 'CMYK' is not accepted"):
        read_mask(tmp_path / "m.tif")


def test_flo_round_trip_against_the_published_bytes(tmp_path):
    flow = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2) / 7 - 1
    by_hand = struct.pack("<f", 202021.25) + struct.pack("<ii", 4, 3) + flow.astype("<f4").tobytes()
    (tmp_path / "hand.flo").write_bytes(by_hand)
    np.testing.assert_array_equal(read_flo(tmp_path / "hand.flo"), flow)
    write_flo(tmp_path / "ours.flo", flow)
    assert (tmp_path / "ours.flo").read_bytes() == by_hand and by_hand[:4] == b"PIEH"  # the magic's bytes
    (tmp_path / "bad.flo").write_bytes(b"FLOW" + by_hand[4:])
    with pytest.raises(nss.DataError, match="bad.flo: not a Middlebury .flo file"):
        read_flo(tmp_path / "bad.flo")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _kitti_png_by_hand(samples: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written from the PNG specification: IHDR, one zlib IDAT of unfiltered rows, IEND."""
    height, width = samples.shape[:2]
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows)) + \
        _png_chunk(b"IEND", b"")


def test_kitti_flow_png_round_trip_against_the_published_encoding(tmp_path):
    flow = np.array([[[1.5, -2.25], [0.0, 0.5]], [[-3.0, 4.0], [10.0, -0.015625]]], np.float32)
    valid = np.array([[1, 0], [1, 1]])
    samples = np.stack([flow[..., 0] * 64 + 2 ** 15, flow[..., 1] * 64 + 2 ** 15, valid], -1).astype(np.uint16)
    (tmp_path / "hand.png").write_bytes(_kitti_png_by_hand(samples))
    read, weight = read_flow(tmp_path / "hand.png")
    np.testing.assert_array_equal(weight, valid)
    np.testing.assert_array_equal(read, flow * valid[..., None])  # invalid pixels carry no flow
    write_kitti_flow(tmp_path / "ours.png", flow, valid)
    again, weight_again = read_flow(tmp_path / "ours.png")
    np.testing.assert_array_equal(again, read) and np.testing.assert_array_equal(weight_again, valid)


def test_an_8_bit_png_is_not_taken_for_flow(tmp_path):
    Image.new("RGB", (4, 3)).save(tmp_path / "f.png")
    with pytest.raises(nss.DataError, match="f.png: a flow PNG must be KITTI's 16-bit RGB"):
        read_flow(tmp_path / "f.png")


def test_the_colour_wheel_has_its_documented_colours():
    wheel = colour_wheel()
    assert len(wheel) == 55
    # the six hues the wheel passes through, at the starts of its segments (15, 6, 4, 11, 13, 6 steps)
    for index, colour in [(0, (255, 0, 0)), (15, (255, 255, 0)), (21, (0, 255, 0)), (25, (0, 255, 255)),
                          (36, (0, 0, 255)), (49, (255, 0, 255))]:
        np.testing.assert_array_equal(wheel[index], colour)
    flow = np.array([[[1.0, 0.0], [0.0, 0.0], [0.5, 0.0]]])
    colours = flow_to_colour(flow)
    assert tuple(colours[0, 0]) == (255, 0, 0)  # pointing right (+x), at the largest radius: red
    assert tuple(colours[0, 1]) == (255, 255, 255)  # no motion: white
    assert tuple(colours[0, 2]) == (255, 128, 128)  # half the radius: half-way to white


# -- the folder reader's defects ------------------------------------------------------------------------------
def test_zero_one_and_palette_masks_in_a_data_folder_are_not_empty(data_copy):
    for path in (data_copy / "clips" / "train_000" / "mask").glob("*.png"):
        truth = np.asarray(Image.open(path)) > 127
        if path.stem == "000001":
            Image.fromarray(truth.astype(np.uint8), "L").save(path)  # 0/1
        else:
            image = Image.fromarray(truth.astype(np.uint8) * 3, "P")
            image.putpalette([0, 0, 0] * 3 + [255, 0, 0] + [0, 0, 0] * 252)
            image.save(path)
    data = FolderDataset(data_copy, "train")
    masks = [data[i]["mask"] for i in range(2)]
    assert all(m.sum() > 0 for m in masks) and check_folder(data_copy) == []


def test_a_misnamed_label_folder_is_reported_and_refused(data_copy, tmp_path, capsys):
    for clip in (data_copy / "clips").iterdir():
        (clip / "mask").rename(clip / "masks")
    problems = check_folder(data_copy)
    assert any("task 'segmentation'" in p and "found masks/, a misnamed mask/ folder?" in p for p in problems)
    out = tmp_path / "run"
    assert main(["search", *TINY_FLAGS, "--data", str(data_copy), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "task 'segmentation' of the training split has no mask/ labels" in err and not out.exists()


def test_a_gap_in_frame_numbers_splits_the_clip(data_copy):
    clip = data_copy / "clips" / "train_000"
    for sub in ("input", "target", "mask", "flow", "homography"):
        for path in sorted((clip / sub).glob("000001.*")):
            path.rename(path.with_name("000003" + path.suffix))  # frames 0, 2, 3: a gap after 0
    data = FolderDataset(data_copy, "train")
    pairs = [(a, b) for folder, a, b in data.pairs if folder == clip]
    assert pairs == [("000002", "000003")]  # 0 → 2 is not a pair (its flow label would be 0 → 1's)
    problems, notes = inspect_folder(data_copy)  # a gap is worth knowing, not a fault
    assert problems == [] and any("frames jump from 000000 to 000002" in n for n in notes)


def test_a_validation_split_without_labels_for_a_task_is_refused_at_the_start(data_copy, tmp_path, capsys):
    for clip in json.loads((data_copy / "meta.json").read_text())["splits"]["val"]:
        for path in (data_copy / "clips" / clip / "flow").glob("*"):
            path.unlink()
    notes = inspect_folder(data_copy)[1]
    assert any("split 'val' has no flow labels" in n for n in notes)
    out = tmp_path / "run"
    assert main(["retrain", "most_net_plus", "--data", str(data_copy), "--network", "tiny", "--batch-size", "2",
                 "--steps", "2", "--device", "cpu", "--out", str(out), "--quiet"]) == 1
    assert "the validation split has no labels for flow" in capsys.readouterr().err and not out.exists()


def test_a_data_folder_without_a_validation_split_fails_before_training(data_copy, tmp_path, capsys):
    meta = json.loads((data_copy / "meta.json").read_text())
    del meta["splits"]["val"]
    (data_copy / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "run"
    assert main(["retrain", "most_net_plus", "--data", str(data_copy), "--network", "tiny", "--batch-size", "2",
                 "--steps", "2", "--device", "cpu", "--out", str(out), "--quiet"]) == 1
    assert "no split 'val'" in capsys.readouterr().err and not out.exists()


# -- import ---------------------------------------------------------------------------------------------------
def _write_video(path, frames):
    with VideoWriter(path, frames[0].shape[1], frames[0].shape[0], fps=10) as writer:
        for frame in frames:
            writer.write(frame)


def test_import_a_video_into_a_data_folder_that_passes_the_check(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = [(rng.random((40, 72, 3)) * 255).astype(np.uint8) for _ in range(6)]
    _write_video(tmp_path / "surgery_01.mp4", frames)
    assert len(list(read_video(tmp_path / "surgery_01.mp4"))) == 6
    out = tmp_path / "data"
    assert main(["data", "import", str(tmp_path / "surgery_01.mp4"), "--out", str(out), "--size", "32x64",
                 "--quiet"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"] == {"train": ["surgery_01"]} and meta["frame_size"] == [32, 64] and meta["tasks"] == []
    assert sorted(p.name for p in (out / "clips" / "surgery_01" / "input").iterdir())[:2] == ["000000.png",
                                                                                               "000001.png"]
    assert len(list((out / "clips" / "surgery_01" / "input").iterdir())) == 6
    assert check_folder(out) == [] and main(["data", "check", str(out)]) == 0
    assert main(["data", "import", str(tmp_path / "surgery_01.mp4"), "--out", str(out), "--size", "30x64"]) == 1
    assert "--size 30x64; with 3 scales both sides must be multiples of 16" in capsys.readouterr().err


def test_import_frame_folders_with_labels_in_every_encoding(tmp_path):
    """Two clips of 40×48 frames; masks 0/1 and palette, flow .flo and KITTI, homographies; fitted to 32×32."""
    rng = np.random.default_rng(1)
    frames, masks, flows, homs = (tmp_path / n for n in ("frames", "masks", "flows", "homs"))
    for clip in ("a", "b"):
        for folder in (frames, masks, flows, homs):
            (folder / clip).mkdir(parents=True)
        for t in range(3):
            Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(frames / clip / f"img_{t:04d}.jpg")
            truth = np.zeros((40, 48), np.uint8)
            truth[10:30, 12:36] = 1
            if clip == "a":
                Image.fromarray(truth, "L").save(masks / clip / f"img_{t:04d}.png")
            else:
                palette_mask = Image.fromarray(np.where(truth, 2, 0).astype(np.uint8), "P")
                palette_mask.putpalette([0, 0, 0, 0, 0, 0, 0, 128, 0] + [0, 0, 0] * 253)
                palette_mask.save(masks / clip / f"img_{t:04d}.png")
            flow = np.full((40, 48, 2), (2.0, -1.0), np.float32)
            if t:
                if clip == "a":
                    write_flo(flows / clip / f"img_{t:04d}.flo", flow)
                else:
                    write_kitti_flow(flows / clip / f"img_{t:04d}.png", flow)
                np.savetxt(homs / clip / f"img_{t:04d}.txt", [[1, 0, 2.0], [0, 1, -1.0], [0, 0, 1]])
    out = import_data([frames], tmp_path / "data", labels={"mask": masks, "flow": flows, "homography": homs},
                      size=(32, 32), split=(0.5, 0.5, 0.0), progress=False)
    assert check_folder(out) == []
    meta = json.loads((out / "meta.json").read_text())
    assert meta["tasks"] == ["segmentation", "flow", "homography"] and sorted(meta["splits"]) == ["train", "val"]
    # scaled by 0.8 to 32×38, 3 columns cropped on the left: a translation (2, −1) becomes (2 · 38/48, −0.8)
    shift = [2.0 * 38 / 48, -0.8]
    for split in ("train", "val"):
        sample = FolderDataset(out, split)[0]
        assert sample["valid"]["mask"] and sample["mask"].sum() > 0
        np.testing.assert_allclose(sample["flow"][:, 4:-4, 4:-4].mean((1, 2)), shift, atol=0.02)
    for path in out.glob("clips/*/homography/*.txt"):
        np.testing.assert_allclose(np.loadtxt(path), [[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]], atol=1e-9)


def test_forward_flow_is_imported_as_the_backward_flow_of_the_reversed_clip(tmp_path):
    frames, flows = tmp_path / "frames", tmp_path / "flows"
    frames.mkdir(), flows.mkdir()
    for t in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * t, np.uint8)).save(frames / f"frame_{t:04d}.png")
        if t < 2:  # Sintel's convention: flow t points from frame t to t+1, on frame t's grid
            write_flo(flows / f"frame_{t:04d}.flo", np.full((32, 32, 2), (t + 1.0, -t), np.float32))
    out = import_data([frames], tmp_path / "data", labels={"flow": flows}, flow_direction="forward", split=(1, 0, 0),
                      progress=False)
    data = FolderDataset(out, "train")
    assert [(a, b) for _, a, b in data.pairs] == [("000000", "000001"), ("000001", "000002")]
    # new frame 1 is old frame 1, its previous (new 0) old frame 2: its backward flow is old frame 1's forward flow
    sample = data[0]
    assert sample["current"].mean() * 255 == pytest.approx(40, abs=1) and sample["previous"].mean() * 255 == \
        pytest.approx(80, abs=1)
    np.testing.assert_allclose(sample["flow"].mean((1, 2)), [2.0, -1.0])
    np.testing.assert_allclose(data[1]["flow"].mean((1, 2)), [1.0, 0.0])  # new 2 = old 0: its flow 0 → 1
    with pytest.raises(nss.DataError, match="homography labels cannot follow"):
        import_data([frames], tmp_path / "other", labels={"flow": flows, "homography": flows},
                    flow_direction="forward", progress=False)


def test_a_grey_class_map_is_refused_not_read_as_empty(tmp_path):
    Image.fromarray(np.array([[0, 1, 2], [2, 1, 0]], np.uint8), "L").save(tmp_path / "m.png")
    with pytest.raises(nss.DataError, match=r"m.png: a grey mask of mode 'L' with values \{0, 1, 2\}"):
        read_mask(tmp_path / "m.png")


def test_clips_are_split_by_clip_and_every_asked_split_gets_one():
    assert split_clips(["a"], (0.8, 0.1, 0.1), 0) == {"train": ["a"]}
    splits = split_clips(list("abc"), (0.8, 0.1, 0.1), 0)
    assert sorted(len(v) for v in splits.values()) == [1, 1, 1] and set(sum(splits.values(), [])) == set("abc")
    splits = split_clips([str(i) for i in range(10)], (0.8, 0.1, 0.1), 3)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 1, 1]
