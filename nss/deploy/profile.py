"""Profiling: parameters, FLOPs and latency at batch 1, for the two-frame forward and the streaming per-frame
cost, on PyTorch (CPU or CUDA, fp32/fp16; replayed as CUDA graphs on a GPU, optionally torch.compile), ONNX
Runtime (CPU) or TensorRT (FP16 engine from the ONNX graph), with how busy the machine was while it was timed."""
from __future__ import annotations

import copy
import importlib.util
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from search_spaces import Architecture, SearchSpace
from supernet import MostNet

from ..device import OtherLoad, backend_device
from ..errors import NSSError
from ..model.costs import count_flops, count_parameters, reference_network
from ..model.forward import compiled
from . import BACKENDS
from .export import export_onnx, graph_inputs


def latency_stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"median": float(np.median(ms)), "mean": float(ms.mean()), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "cv": float(ms.std() / ms.mean())}


def time_interleaved(runs: dict[str, Callable[[], object]], iters: int, warmup: int,
                     device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each run, the runs taking turns so that drift and noise hit them alike. CUDA events on
    a GPU (every backend enqueues on the current stream), the wall clock elsewhere."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(iters):
        for name, run in runs.items():
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                times[name].append(start.elapsed_time(end) / 1e3)
            else:
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return times


def tensorrt_available() -> str | None:
    """None when TensorRT can run here, else why not (one line)."""
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed"
    return None


def resolve_backend(backend: str) -> tuple[str, str | None]:
    """The backend to use and, for `auto` without TensorRT, the one-line note saying why it fell back."""
    if backend not in BACKENDS:
        raise NSSError(f"--backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    why = tensorrt_available()
    if backend == "auto":
        return ("tensorrt", None) if why is None else ("torch", f"TensorRT not used ({why}); profiling with torch")
    if backend == "tensorrt" and why is not None:
        raise NSSError(f"--backend tensorrt: unavailable here ({why})")
    return backend, None


# -- backends: each returns (two-frame run, streaming run) -----------------------------------------------------
def _torch_runs(network: MostNet, height: int, width: int, device: torch.device, fp16: bool, compile: str):
    dtype = torch.float16 if fp16 else torch.float32
    net = copy.deepcopy(network).to(device, dtype).eval()  # the caller's network stays where and what it was
    frames = {k: v.to(device, dtype) for k, v in graph_inputs(net, height, width, streaming=False).items()}
    forward, encode, decode = (compiled(f, compile) for f in (net, net.encode, net.decode))
    with torch.no_grad():
        cached = net.encode(frames["previous"])

    @torch.no_grad()
    def two_frame():
        forward(frames["previous"], frames["current"])

    @torch.no_grad()
    def streaming():
        decode(encode(frames["current"]), cached, frames["current"])

    if device.type == "cuda":
        return cuda_graph(two_frame), cuda_graph(streaming)
    return two_frame, streaming


def cuda_graph(run: Callable[[], object]) -> Callable[[], object]:
    """`run` recorded once as a CUDA graph, replayed by the callable returned: at batch 1 a network's GPU time is
    mostly the host launching its kernels one by one, which a replay does at once (as a TensorRT engine does).
    The inputs stay where they were recorded, so every replay computes the same frames."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # capture wants its warm-up (cuDNN's algorithm choice, allocations) off-stream
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    return graph.replay


def _onnxruntime_runs(network: MostNet, height: int, width: int, folder: Path):
    import onnxruntime as ort
    runs = []
    for streaming in (False, True):
        path = folder / f"{'streaming' if streaming else 'two_frame'}.onnx"
        export_onnx(network, path, height, width, streaming=streaming)
        options = ort.SessionOptions()
        # ONNX Runtime's threads spin after a run, waiting for the next one: while networks take turns, the last
        # one's spinning threads take the CPU from the one being timed; stopped, each is timed alone
        options.add_session_config_entry("session.force_spinning_stop", "1")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {k: v.numpy() for k, v in graph_inputs(network, height, width, streaming).items()}
        runs.append(lambda session=session, feed=feed: session.run(None, feed))
    return runs[0], runs[1]


def _tensorrt_runs(network: MostNet, height: int, width: int, folder: Path):
    """FP16 engines built strongly typed from FP16 ONNX graphs: the graph's types hold, so the homography
    geometry, which the graph keeps in fp32, stays in fp32 (TensorRT 10 opts in with the STRONGLY_TYPED flag, in
    TensorRT 11 every network is strongly typed and the flag is ignored)."""
    import tensorrt as trt
    logger = trt.Logger(trt.Logger.WARNING)
    runs = []
    for streaming in (False, True):
        path = folder / f"{'streaming' if streaming else 'two_frame'}.onnx"
        export_onnx(network, path, height, width, streaming=streaming, fp16=True)
        builder = trt.Builder(logger)
        graph = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(graph, logger)
        if not parser.parse(path.read_bytes()):
            raise NSSError(f"TensorRT could not parse {path.name}: {parser.get_error(0)}")
        serialized = builder.build_serialized_network(graph, builder.create_builder_config())
        if serialized is None:  # TensorRT logs why; without this check the next call fails with a TypeError
            raise NSSError(f"TensorRT could not build an engine from {path.name} (its log above says why)")
        engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
        context = engine.create_execution_context()
        inputs = graph_inputs(network, height, width, streaming)
        buffers = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = torch.float16 if engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
            shape = tuple(engine.get_tensor_shape(name))
            tensor = inputs[name].to("cuda", dtype) if name in inputs else torch.empty(shape, dtype=dtype, device="cuda")
            buffers[name] = tensor
            context.set_tensor_address(name, tensor.data_ptr())
        # on the current stream, where the timing events are recorded
        runs.append(lambda context=context, keep=buffers:
                    context.execute_async_v3(torch.cuda.current_stream().cuda_stream))
    return runs[0], runs[1]


def check_backend_options(backend: str, device: torch.device, fp16: bool, compile: str) -> None:
    """What a backend cannot do, refused in one line (before anything is built or timed)."""
    if backend == "onnxruntime" and (fp16 or device.type != "cpu"):
        raise NSSError("--backend onnxruntime: profiles fp32 on the CPU; use torch or tensorrt for fp16 or a GPU")
    if compile != "off" and backend != "torch":
        raise NSSError(f"--compile {compile}: compiles the torch backend's network; {backend} builds its own graph")


def backend_runs(network: MostNet, height: int, width: int, backend: str, device: torch.device, fp16: bool,
                 folder: Path, compile: str = "off") -> tuple[Callable[[], object], Callable[[], object]]:
    """The two-frame forward and the streaming per-frame step of `network` at batch 1 on a backend, as callables
    (ONNX graphs and TensorRT engines are written to `folder`, which must outlive the callables). The torch
    backend replays CUDA graphs on a GPU and compiles with torch.compile's `compile` backend unless "off"."""
    check_backend_options(backend, device, fp16, compile)
    if backend == "torch":
        return _torch_runs(network, height, width, device, fp16, compile)
    if backend == "onnxruntime":
        return _onnxruntime_runs(network, height, width, folder)
    return _tensorrt_runs(network, height, width, folder)


def interleaved_times(networks: dict[str, MostNet], height: int, width: int, *, backend: str = "torch",
                      device: str = "cpu", fp16: bool = False, iters: int = 30,
                      warmup: int = 5) -> dict[str, list[float]]:
    """Seconds per batch-1 two-frame forward of each network, the networks timed in turns (one round: each runs
    once) so that whatever drifts or competes for the machine hits them alike; compare their medians, or the
    paired differences of one round."""
    torch_device, fp16 = timing_target(backend, device, fp16)
    with tempfile.TemporaryDirectory() as folder:
        runs = {}
        for i, (name, network) in enumerate(networks.items()):
            (Path(folder) / str(i)).mkdir()
            runs[name] = backend_runs(network, height, width, backend, torch_device, fp16, Path(folder) / str(i))[0]
        return time_interleaved(runs, iters, warmup, torch_device)


def profile_network(network: MostNet, *, height: int, width: int, backend: str = "torch", device: str = "cpu",
                    fp16: bool = False, iters: int = 100, warmup: int = 10, compile: str = "off") -> dict:
    """Parameters, FLOPs and latency statistics (milliseconds) of a network at batch 1 (the torch backend: compiled
    with torch.compile's `compile` backend unless "off", replayed as CUDA graphs on a GPU)."""
    if iters < 1 or warmup < 0:
        raise NSSError(f"--iters must be >= 1 and --warmup >= 0, got {iters} and {warmup}")
    report = {"params": count_parameters(network), "flops": count_flops(network, height, width),
              "architecture_id": network.architecture.id, "heads": list(network.heads)}
    torch_device, fp16 = timing_target(backend, device, fp16)
    load = OtherLoad()
    with tempfile.TemporaryDirectory() as folder:
        two_frame, streaming = backend_runs(network, height, width, backend, torch_device, fp16, Path(folder),
                                            compile)
        with load.measuring():
            times = time_interleaved({"two_frame": two_frame, "streaming": streaming}, iters, warmup, torch_device)
    latency, stream_latency = latency_stats(times["two_frame"]), latency_stats(times["streaming"])
    report.update({
        "backend": backend, **described(torch_device, fp16), "input_size": [height, width], "batch_size": 1,
        "iters": iters, "warmup": warmup, "compile": compile,
        "cuda_graphs": backend == "torch" and torch_device.type == "cuda",
        "latency_ms": latency, "fps": 1e3 / latency["median"], "streaming_latency_ms": stream_latency,
        "streaming_fps": 1e3 / stream_latency["median"], **machine(load),
    })
    return report


def timing_target(backend: str, device: str, fp16: bool) -> tuple[torch.device, bool]:
    """The device and precision a backend times on: TensorRT always on CUDA and in fp16 (its engines are built so)."""
    return backend_device(backend, device), fp16 or backend == "tensorrt"


def described(device: torch.device, fp16: bool) -> dict[str, str]:
    """How a timing's report names its precision and device."""
    return {"precision": "fp16" if fp16 else "fp32", "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


def machine(load: OtherLoad) -> dict[str, Any]:
    """What a timing ran with: torch's threads, the CPUs, and the cores other processes kept busy meanwhile."""
    return {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "other_load_cores": load.cores}


def measurement_options(backend: str, device: str, iters: int, size: tuple[int, int]) -> dict[str, Any]:
    """How an experiment times its architectures, as its manifest keeps it: the backend (auto resolved), the
    device it runs on, the timed iterations and the input size."""
    backend = resolve_backend(backend)[0]
    return {"backend": backend, "device": str(backend_device(backend, device)), "iters": iters, "size": list(size)}


def timed(networks: dict[str, MostNet], options: dict[str, Any]) -> dict[str, list[float]]:
    """interleaved_times of `networks` as an experiment's latency measurement (`measurement_options`) says."""
    return interleaved_times(networks, *options["size"], backend=options["backend"], device=options["device"],
                             iters=options["iters"])


def reference_latency(space: SearchSpace, size: str, options: dict[str, Any]) -> float:
    """The median batch-1 latency (ms) of a space's supernet, measured while nothing else runs. `options`: an
    experiment's latency measurement (backend, device, iters, size)."""
    return 1e3 * statistics.median(timed({"reference": reference_network(space, size)}, options)["reference"])


def latency_against_reference(architecture: Architecture, size: str, options: dict[str, Any]) -> float:
    """The architecture's median batch-1 latency (ms), timed in turns with its space's supernet and scaled by the
    supernet's latency measured before the trials started (`options["reference_ms"]`): a ratio of two networks
    timed together holds while other trials share the machine, an absolute time does not."""
    networks = {"derived": reference_network(architecture, size),
                "reference": reference_network(Architecture.full(architecture.space), size)}
    times = timed(networks, options)
    return statistics.median(times["derived"]) / statistics.median(times["reference"]) * options["reference_ms"]
