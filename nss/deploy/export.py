"""ONNX export of a network, checked against PyTorch under ONNX Runtime: the two-frame graph (as the network's
forward, both frames through the encoder in one batch) and the streaming one (the previous frame's features
cached)."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from supernet import MostNet

from ..config import check_frame_size
from ..errors import NSSError
from ..io import atomic_write, atomic_write_text, refuse_existing
from ..runs.trained import TrainedModel
from . import DEFAULT_OPSET


class TwoFrameGraph(nn.Module):
    """(previous, current) → one output per head, in `heads` order (ONNX wants tuples, not dicts)."""

    def __init__(self, network: MostNet):
        super().__init__()
        self.network, self.heads = network, list(network.heads)

    def forward(self, previous: torch.Tensor, current: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.network(previous, current)
        return tuple(outputs[h] for h in self.heads)


class StreamingGraph(nn.Module):
    """(current, *cached features of the previous frame) → (*outputs, *features of the current frame): the
    per-frame cost of a video stream, where the previous frame is never encoded again."""

    def __init__(self, network: MostNet):
        super().__init__()
        self.network, self.heads = network, list(network.heads)

    def forward(self, current: torch.Tensor, *previous: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.network.encode(current)
        outputs = self.network.decode(features, list(previous), current)
        return tuple(outputs[h] for h in self.heads) + tuple(features)


def graph_inputs(network: MostNet, height: int, width: int, streaming: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Named example inputs: two frames, or one frame and the previous frame's cached features."""
    generator = torch.Generator().manual_seed(seed)
    frame = lambda: torch.rand(1, 3, height, width, generator=generator)  # noqa: E731
    if not streaming:
        return {"previous": frame(), "current": frame()}
    with torch.no_grad():
        cached = network.encode(frame())
    return {"current": frame(), **{f"previous_features_{s + 1}": f for s, f in enumerate(cached)}}


def export_onnx(network: MostNet, path: str | Path, height: int, width: int, *, fp16: bool = False,
                streaming: bool = False, opset: int = DEFAULT_OPSET) -> dict:
    """Write `path` (ONNX) and check it under ONNX Runtime (CPU) against the fp32 PyTorch outputs on a random
    input. Returns the report: opset, precision, input and output names and shapes, max_abs_diff."""
    import onnx  # the exporter's and the runtime's imports take a second: only here
    import onnxruntime as ort
    if opset < 17:
        raise NSSError(f"--opset: grid_sample needs opset 17 or later, got {opset}")
    model = (StreamingGraph if streaming else TwoFrameGraph)(copy.deepcopy(network).cpu().float().eval())
    inputs = graph_inputs(model.network, height, width, streaming)
    with torch.no_grad():
        reference = [o.numpy() for o in model(*inputs.values())]
    output_names = model.heads + ([f"features_{s + 1}" for s in range(model.network.scales)] if streaming else [])
    if fp16:
        model = model.half()
    example = tuple(v.half() if fp16 else v for v in inputs.values())

    def write(tmp: Path) -> None:
        # The exporter talks a lot (progress on stdout, notes on optional torchvision ops): keep the CLI quiet.
        exporter_log = logging.getLogger("torch.onnx")
        level = exporter_log.level
        exporter_log.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(tmp), input_names=list(inputs), output_names=output_names,
                              opset_version=opset, dynamo=True, external_data=False)
        exporter_log.setLevel(level)
    atomic_write(path, write)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: value.numpy() for name, value in zip(inputs, example)}
    produced = session.run(None, feed)
    max_abs_diff = max(float(np.abs(p.astype(np.float32) - r).max()) for p, r in zip(produced, reference))
    graph = onnx.load(str(path), load_external_data=False)
    return {
        "path": str(path), "opset": max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
        "precision": "fp16" if fp16 else "fp32", "streaming": streaming, "input_size": [height, width],
        "architecture_id": network.architecture.id,
        "inputs": [{"name": n, "shape": list(v.shape)} for n, v in feed.items()],
        "outputs": [{"name": n, "shape": list(p.shape)} for n, p in zip(output_names, produced)],
        "max_abs_diff": max_abs_diff,
    }


def export_with_report(network: MostNet, path: str | Path, height: int, width: int, *, fp16: bool = False,
                       opset: int = DEFAULT_OPSET) -> dict:
    """`nss export`: the two-frame graph plus `<path>.json` with its report."""
    report = export_onnx(network, path, height, width, fp16=fp16, opset=opset)
    atomic_write_text(f"{path}.json", json.dumps(report, indent=2) + "\n")
    return report


def export_run(run: str | Path, out: str | Path, *, fp16: bool = False, opset: int = DEFAULT_OPSET,
               size: tuple[int, int] | None = None, force: bool = False) -> dict:
    """`nss export`: the network a run trained (a search run's derived architecture, with the supernet's weights)
    as ONNX, checked under ONNX Runtime; its report in `<out>.json`. Needs nothing of the run's training data."""
    refuse_existing(Path(out), force, "ONNX file")
    model = TrainedModel.load(run, device="cpu").deployable()
    height, width = size or model.config.frame_height_width
    check_frame_size(model.space, height, width, "--size")
    return export_with_report(model.network, out, height, width, fp16=fp16, opset=opset)
