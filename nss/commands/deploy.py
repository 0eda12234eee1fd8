"""`nss profile`, `nss export`, `nss predict`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import OPTIONS
from ..deploy import BACKENDS, DEFAULT_OPSET
from . import Command
from .options import add_compile_option, add_device_options, frame_size


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder (its best.pt, else last.pt; a search run: its derived architecture)")
    parser.add_argument("--out", required=True, metavar="MODEL.onnx")
    parser.add_argument("--fp16", action="store_true", help="export in half precision")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= 17, default {DEFAULT_OPSET})")
    parser.add_argument("--size", type=frame_size, metavar="HxW", help="input size (default: the run's frame size)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def run_export(args: argparse.Namespace) -> None:
    from ..deploy.export import export_run
    report = export_run(args.run, args.out, fp16=args.fp16, opset=args.opset, size=args.size, force=args.force)
    print(f"wrote {args.out} (opset {report['opset']}, {report['precision']}, {len(report['outputs'])} outputs) and "
          f"{args.out}.json; ONNX Runtime vs PyTorch max abs diff {report['max_abs_diff']:.2e}")


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="run folder (a search run: its derived architecture), architecture.json, or a "
                                       "space (name or JSON) for its supernet")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="auto: TensorRT where it and a GPU are present, else torch")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                        help="the network's arithmetic (fp16: TensorRT's engine, or the torch backend on a GPU)")
    parser.add_argument("--size", type=frame_size, metavar="HxW",
                        help="input size (default: a run's frame size, else 256x256)")
    parser.add_argument("--network", default="auto", choices=OPTIONS["network"].choices,
                        help="width/depth preset for an architecture or space target (a run's is its own)")
    parser.add_argument("--iters", type=int, default=100, help="timed iterations (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    parser.add_argument("--per-head", action="store_true",
                        help="the per-head cost table of the target's supernet (marginal latency, params, FLOPs of every "
                             "searchable head) for a latency-aware search (--latency-table)")
    parser.add_argument("--out", metavar="FILE.json", help="default: profile.json (latency_table.json with --per-head) in "
                                                          "the run folder, else here")
    add_compile_option(parser, "the torch backend's network (on a GPU it is replayed as CUDA graphs either way)")
    add_device_options(parser, "auto", "auto: a GPU where there is one; the torch backend's")


def run_profile(args: argparse.Namespace) -> None:
    from ..deploy.targets import profile_target
    report, path, note = profile_target(args.target, backend=args.backend, fp16=args.precision == "fp16",
                                        device=args.device, size=args.size, network=args.network, iters=args.iters,
                                        warmup=args.warmup, out=args.out, per_head=args.per_head, threads=args.threads,
                                        compile=args.compile)
    if note:
        print(note, file=sys.stderr)
    if args.per_head:
        print_cost_table(report, path)
        return
    lat, stream = report["latency_ms"], report["streaming_latency_ms"]
    height, width = report["input_size"]
    print(f"{args.target}: {report['params']:,} parameters, {report['flops'] / 1e9:.3f} GFLOPs at "
          f"{height}x{width} ({report['backend']}, {report['precision']}, {report['device']}, "
          f"{report['torch_threads']} thread(s){', CUDA graphs' if report['cuda_graphs'] else ''}"
          f"{'' if report['compile'] == 'off' else ', compiled with ' + report['compile']})")
    print(f"two-frame forward: median {lat['median']:.2f} ms, p90 {lat['p90']:.2f}, p99 {lat['p99']:.2f}, "
          f"cv {lat['cv']:.3f}, {report['fps']:.1f} FPS")
    print(f"streaming (cached previous features): median {stream['median']:.2f} ms, {report['streaming_fps']:.1f} FPS")
    print(f"written to {path}")


def print_cost_table(table: dict, path: Path) -> None:
    """`nss profile --per-head`: every head's marginal cost, the base and the full supernet, the sanity line."""
    height, width = table["input_size"]
    print(f"per-head costs of {table['space']['name']} ({table['network']} network, {height}x{width}, "
          f"{table['backend']}, {table['precision']}, {table['device']}; medians of {table['iters']} interleaved runs)")
    rows = [("(base: fixed heads)", table["base"]), ("(full supernet)", table["full"])] + \
        [(f"(decoder stage {s})", cost) for s, cost in table["stages"].items()] + list(table["heads"].items())
    print(f"{'':22s} {'latency ms':>11s} {'params':>12s} {'GFLOPs':>9s}")
    for name, cost in rows:
        print(f"{name:22s} {cost['latency_ms']:>11.2f} {cost['params']:>12,d} {cost['flops'] / 1e9:>9.3f}")
    for s, cost in table["stages"].items():
        print(f"decoder stage {s} is paid once when any of {', '.join(cost['needed_by'])} is kept")
    errors = [abs(c["error_pct"]) for c in table["checks"]]
    if errors:
        print(f"base + stages + own costs predict {len(errors)} random sub-networks within "
              f"{sum(errors) / len(errors):.1f}% on average (worst {max(errors):.1f}%)")
    print(f"written to {path}")


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder (its best.pt, else last.pt; a search run: its derived architecture)")
    parser.add_argument("--input", required=True, type=Path, metavar="VIDEO|DIR|DATA")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--heads", help="comma-separated heads to write (default: the finest kept head of each task)")
    parser.add_argument("--size", type=frame_size, metavar="HxW", help="frames fitted to this (default: the run's)")
    parser.add_argument("--split", default="test", help="the split of a data folder (default test)")
    parser.add_argument("--fps", type=float, help="frame rate of the preview video (default: the input's, else 25)")
    parser.add_argument("--max-frames", type=int, help="stop each clip after this many frames")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_compile_option(parser, "the network's encoder and decoder")
    add_device_options(parser)


def run_predict(args: argparse.Namespace) -> None:
    from ..deploy.predict import predict
    report = predict(args.run, args.input, args.out, heads=args.heads, device=args.device, size=args.size,
                     split=args.split, fps=args.fps, max_frames=args.max_frames, force=args.force,
                     progress=not args.quiet, threads=args.threads, compile=args.compile)
    print(f"{report['frames']} frames of {len(report['clips'])} clip(s) at {report['size'][0]}x{report['size'][1]} on "
          f"{report['device']}: {report['network_fps']:.1f} FPS for the network, {report['total_fps']:.1f} FPS with "
          f"reading and writing; heads {', '.join(report['heads'].values())}")
    print(f"written to {args.out} (per clip: outputs per frame and preview.mp4; predict.json"
          f"{', metrics.csv' if 'metrics' in report else ''})")


PROFILE = Command("profile", "parameters, FLOPs and latency of a run, architecture or space", add_profile_arguments,
                  run_profile)
EXPORT = Command("export", "a run's network as ONNX, checked against PyTorch under ONNX Runtime", add_export_arguments,
                 run_export)
PREDICT = Command("predict", "a trained run on a video, frame folder or data folder, with pictures",
                  add_predict_arguments, run_predict,
                  "Stream a video, a frame folder or a data folder through a run's trained network (each frame "
                  "encoded once, the previous frame's features cached), batch 1, and write per frame the restored "
                  "frame, the mask and its overlay, the flow (.flo and colour wheel), the homography (.txt), plus a "
                  "side-by-side preview.mp4 and predict.json; on a data folder also metrics.csv.")
