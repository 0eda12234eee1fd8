"""Deployment: profiling (parameters, FLOPs, latency on torch, ONNX Runtime, TensorRT), per-head cost tables,
ONNX export, and prediction on videos and frame folders."""

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")  # auto: TensorRT where it and a GPU are present, else torch
DEFAULT_OPSET = 18  # ONNX opset of exports; grid_sample (the warps) needs 17 or later
