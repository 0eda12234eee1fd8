"""`nss predict`: a trained run on a video, an image folder or a data folder, streaming (each frame encoded once,
the previous frame's features cached, as `nss profile` measures it), batch 1, on the CPU or a GPU.

Per clip it writes, for every frame: the restored frame, the mask and the mask laid over the frame, the flow as
Middlebury .flo and as a colour-wheel PNG, the homography as .txt (each for the tasks the network has), a
side-by-side preview video (input | restored | mask overlay | flow colour), and predict.json with the frames
processed and the measured speed. On a data folder, where labels exist, metrics.csv holds every metric of every
predicted head on every labelled frame.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import default_collate
from tqdm import tqdm

from search_spaces import head_name, parse_head
from supernet import homography_from_offsets

from ..config import check_frame_size
from ..data import FolderDataset
from ..data.fit import Fit
from ..data.formats import read_image, write_flo
from ..data.importer import clips_of, frame_files
from ..data.video import VideoWriter, is_video, read_video, video_info
from ..data.visualize import flow_to_colour, overlay_mask, side_by_side, to_uint8
from ..device import OtherLoad, busy_note, choose_threads, using_threads
from ..errors import NSSError
from ..evaluation.evaluate import MetricSums, as_prediction
from ..io import atomic_write_text, staged_directory
from ..model.forward import compiled
from ..model.outputs import to_full_resolution
from ..model.step import batch_to
from ..runs.trained import TrainedModel

log = logging.getLogger("nss")

Frame = tuple[str, np.ndarray, dict | None, bool]  # name, (H, W, 3) float in [0, 1], labelled sample, starts a run


def _data_folder_frames(data: FolderDataset, clip: str) -> Iterator[Frame]:
    """A data folder's clip frame by frame, with the labels of each pair's current frame; a gap in the numbering
    starts a new run (the cached features of the frame before the gap are not used)."""
    last = None
    for index, (folder, previous, current) in enumerate(data.pairs):
        if folder.name != clip:
            continue
        sample = data[index]
        if previous != last:
            yield previous, sample["previous"].permute(1, 2, 0).numpy(), None, True
        yield current, sample["current"].permute(1, 2, 0).numpy(), sample, False
        last = current


def _clips(source: Path, split: str) -> Iterator[tuple[str, Iterator[Frame]]]:
    """(clip, its frames) of a video, a frame folder, a folder of clips or a data folder (its `split`)."""
    if (source / "meta.json").is_file():
        data = FolderDataset(source, split)
        for clip in data.clips:
            yield clip, _data_folder_frames(data, clip)
        return
    for clip, where in clips_of(source):
        if is_video(where):
            yield clip, ((f"{i:06d}", frame.astype(np.float32) / 255.0, None, i == 0)
                         for i, frame in enumerate(read_video(where)))
        else:
            yield clip, ((p.stem, read_image(p), None, i == 0) for i, p in enumerate(frame_files(where)))


def chosen_heads(kept: tuple[str, ...], tasks: dict[str, str], heads: str | None) -> dict[str, str]:
    """task → the head whose output is written: the finest kept head of each task, or the ones asked for."""
    if heads is None:
        return {task: head_name(task, min(parse_head(h)[1] for h in kept if parse_head(h)[0] == task))
                for task in tasks}
    chosen = {}
    for head in (h.strip() for h in heads.split(",") if h.strip()):
        if head not in kept:
            raise NSSError(f"--heads: {head} is not a head of this network (it has {', '.join(kept)})")
        chosen[parse_head(head)[0]] = head
    return chosen


def predict(run: str | Path, source: str | Path, out: str | Path, *, heads: str | None = None,
            device: str | None = None, size: tuple[int, int] | None = None, split: str = "test",
            fps: float | None = None, max_frames: int | None = None, force: bool = False,
            progress: bool = True, threads: int | None = None, compile: str = "off") -> dict:
    """Run `run`'s trained network (a search run's derived architecture) over `source` and write its outputs to
    `out`; returns predict.json's content. `compile`: torch.compile's backend for the encoder and decoder ("off":
    eager; the network FPS then includes the compile time of the first frames)."""
    source = Path(source)
    if not source.exists():
        raise NSSError(f"{source}: no such video, frame folder or data folder")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise NSSError(f"--fps: the preview's frame rate must be a finite number > 0, got {fps:g}")
    if max_frames is not None and max_frames < 1:
        raise NSSError(f"--max-frames: must be >= 1, got {max_frames}")
    model = TrainedModel.load(run, device).deployable()
    network, space, checkpoint = model.network, model.space, model.checkpoint
    encode, decode = compiled(network.encode, compile), compiled(network.decode, compile)
    kinds = {t.name: t.kind for t in space.tasks}
    chosen = chosen_heads(tuple(network.heads), kinds, heads)
    height, width = size or model.config.frame_height_width
    check_frame_size(space, height, width, "--size")
    fps = fps or (video_info(source)["fps"] if is_video(source) else 25.0)
    rows, counts, network_seconds = [], {}, 0.0
    began, load = time.perf_counter(), OtherLoad()
    # the output folder first: a refused --out is the one line said, before any note on the timing threads
    with staged_directory(out, force, "prediction folder") as folder, torch.no_grad(), \
            using_threads(threads := choose_threads(threads, timing=True)), load.measuring():
        for clip, frames in _clips(source, split):
            writer, cached, count = None, None, 0  # the first frame of a run is its own previous frame
            for name, frame, sample, starts_run in tqdm(frames, desc=clip, unit="frame", disable=not progress):
                if max_frames is not None and count >= max_frames:
                    break
                fit = Fit(*frame.shape[:2], height, width)
                image = fit.image(frame)
                current = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(model.device)
                start = time.perf_counter()
                features = encode(current)
                outputs = decode(features, features if starts_run else cached, current)
                if model.device.type == "cuda":
                    torch.cuda.synchronize()
                network_seconds += time.perf_counter() - start
                cached = features
                full = to_full_resolution(space, {h: outputs[h] for h in chosen.values()})
                panels = _write_outputs(folder / clip, name, image, full, chosen, kinds)
                if writer is None:
                    row = side_by_side(panels)
                    writer = VideoWriter(folder / clip / "preview.mp4", row.shape[1], row.shape[0], fps)
                writer.write(side_by_side(panels))
                if sample is not None and fit.is_identity:
                    rows += _frame_metrics(clip, name, sample, full, chosen, space, model.device)
                count += 1
            if writer is not None:
                writer.close()
            counts[clip] = count
        frames_done = sum(counts.values())
        if not frames_done:
            raise NSSError(f"{source}: no frames to predict")
        report = {"run": str(run), "checkpoint": checkpoint, "input": str(source), "heads": chosen,
                  "size": [height, width], "device": str(model.device), "compile": compile, "clips": counts,
                  "frames": frames_done, "network_fps": frames_done / network_seconds,
                  "total_fps": frames_done / (time.perf_counter() - began), "preview_fps": fps,
                  "torch_threads": threads}
        if rows:
            pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
            report["metrics"] = "metrics.csv"
    report.update(other_load_cores=load.cores, cpus=os.cpu_count())  # the machine while the frames went through
    atomic_write_text(Path(out) / "predict.json", json.dumps(report, indent=2) + "\n")
    note = busy_note(load.cores, f"the prediction of {run}")
    if note:
        log.warning("note: %s", note)
    return report


def _write_outputs(folder: Path, name: str, image: np.ndarray, full: dict[str, torch.Tensor],
                   chosen: dict[str, str], kinds: dict[str, str]) -> list[np.ndarray]:
    """Every file of one frame; returns the preview's panels."""
    frame = to_uint8(image)
    panels = [frame]
    for task, head in chosen.items():
        kind, value = kinds[task], full[head][0]
        sub = folder / task
        sub.mkdir(parents=True, exist_ok=True)
        if kind == "image":
            restored = to_uint8(value.clamp(0, 1).permute(1, 2, 0).cpu().numpy())
            Image.fromarray(restored).save(sub / f"{name}.png")
            panels.append(restored)
        elif kind == "mask":
            probability = torch.sigmoid(value[0]).cpu().numpy()
            Image.fromarray(((probability >= 0.5) * 255).astype(np.uint8), "L").save(sub / f"{name}.png")
            overlay = overlay_mask(frame, probability)
            (folder / f"{task}_overlay").mkdir(exist_ok=True)
            Image.fromarray(overlay).save(folder / f"{task}_overlay" / f"{name}.png")
            panels.append(overlay)
        elif kind == "flow":
            flow = value.permute(1, 2, 0).cpu().numpy()
            write_flo(sub / f"{name}.flo", flow)
            colour = flow_to_colour(flow)
            (folder / f"{task}_colour").mkdir(exist_ok=True)
            Image.fromarray(colour).save(folder / f"{task}_colour" / f"{name}.png")
            panels.append(colour)
        else:
            h, w = image.shape[:2]
            hom = homography_from_offsets(value[None].double().cpu(), h, w)[0].numpy()
            np.savetxt(sub / f"{name}.txt", hom / hom[2, 2])
    return panels


def _frame_metrics(clip: str, name: str, sample: dict, full: dict[str, torch.Tensor], chosen: dict[str, str],
                   space, device: torch.device) -> list[dict]:
    """Every metric of every predicted head against this frame's labels (the ones it has)."""
    batch = batch_to(default_collate([sample]), device)
    sums = MetricSums()
    for task in space.tasks:
        if task.name in chosen and bool(batch["valid"][task.kind]):
            head = chosen[task.name]
            weight = batch["weight"].get(task.kind)
            for metric in task.metrics:
                sums.add((head, task.name), metric.name, as_prediction(task.kind, full[head]), batch[task.kind],
                         weight)
    return [{"clip": clip, "frame": name, "head": head, "task": task, "metric": metric, "value": value}
            for (head, task, metric), value in sums.values().items()]
