"""`nss data synth`, `nss data import`, `nss data check`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search_spaces import DEFAULT_SPACE, get_space

from ..config import OPTIONS, check_frame_size
from ..data import FLOW_DIRECTIONS
from ..data.synthetic import SyntheticSpec
from ..errors import NSSError
from . import Command
from .options import checked, fractions, frame_size


def run_synth(args: argparse.Namespace) -> None:
    from ..data import write_synthetic
    h, w = args.size
    check_frame_size(get_space(args.space), h, w, "--size")
    spec = SyntheticSpec(args.clips, args.frames, h, w, args.seed, eval_clips=args.eval_clips, scene=args.scene)
    out = write_synthetic(args.out, spec, force=args.force, progress=not args.quiet)
    print(f"wrote synthetic data to {out}")


def run_import(args: argparse.Namespace) -> None:
    from ..data import check_folder
    from ..data.importer import import_data
    labels = {kind: folder for kind, folder in (("image", args.targets), ("mask", args.masks), ("flow", args.flow),
                                                ("homography", args.homography)) if folder}
    out = import_data(args.sources, args.out, labels=labels, size=args.size, space=get_space(args.space),
                      split=args.split, seed=args.seed, flow_direction=args.flow_direction, force=args.force,
                      progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    clips = {split: len(c) for split, c in meta["splits"].items()}
    print(f"wrote {out}: {sum(clips.values())} clip(s) ({', '.join(f'{n} {s}' for s, n in clips.items())}), "
          f"frames {meta['frame_size'][0]}x{meta['frame_size'][1]}, tasks: {', '.join(meta['tasks']) or 'none'}")
    problems = check_folder(out)
    if problems:
        raise NSSError(f"{out}: imported, but `nss data check` finds {len(problems)} problem(s), e.g. {problems[0]}")


def run_check(args: argparse.Namespace) -> None:
    from ..data import inspect_folder
    problems, notes = inspect_folder(args.dir)
    for line in notes:
        print(f"note: {line}")
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        raise NSSError(f"{args.dir}: {len(problems)} problem(s) found")
    print(f"{args.dir}: ok")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_subparsers(dest="data_command", required=True, parser_class=type(parser))
    p = data.add_parser("synth", help="write synthetic clips in the folder format")
    p.add_argument("--out", required=True, metavar="DIR")
    for name in ("clips", "eval_clips", "frames", "scene"):  # as a run's synthetic data takes them
        option = OPTIONS[name]
        p.add_argument(option.flag, type=checked(name), default=option.default, metavar=option.metavar,
                       help=option.help + ("" if option.default is None else f" (default: {option.default})"))
    p.add_argument("--size", type=frame_size, default=(SyntheticSpec.height, SyntheticSpec.width), metavar="HxW")
    p.add_argument("--space", default=DEFAULT_SPACE, help="the space whose frame divisor the size must respect")
    p.add_argument("--seed", type=int, default=SyntheticSpec.seed)
    p.add_argument("--force", action="store_true", help="overwrite an existing folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(data_run=run_synth)
    p = data.add_parser("import", help="videos or frame folders (and label folders) into the folder format",
                        description="Import videos (PyAV: no system ffmpeg needed) or frame folders, with optional "
                                    "label folders in the accepted encodings (masks: grey 0/1 or 0/255, palette, "
                                    "RGB; flow: .npy, Middlebury .flo, KITTI 16-bit PNG; homographies: .txt). "
                                    "Frames are fitted to --size (scaled to cover it, centre-cropped; labels follow "
                                    "exactly), clips split into train/val/test, meta.json written.")
    p.add_argument("sources", nargs="+", type=Path,
                   help="video files, frame folders, or folders of frame folders (one clip each)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--size", type=frame_size, metavar="HxW",
                   help="frame size (multiples of the space's divisor; default: the frames cropped to such multiples)")
    p.add_argument("--space", default=DEFAULT_SPACE, help="the space whose divisor the size must respect")
    p.add_argument("--masks", type=Path, metavar="DIR", help="segmentation labels")
    p.add_argument("--flow", type=Path, metavar="DIR", help="optical-flow labels")
    p.add_argument("--targets", type=Path, metavar="DIR", help="clean frames (restoration labels)")
    p.add_argument("--homography", type=Path, metavar="DIR", help="homography labels (.txt)")
    p.add_argument("--flow-direction", default="backward", choices=FLOW_DIRECTIONS,
                   help="backward: the flow of frame N points to N-1 (the folder format's); forward: to N+1 "
                        "(Sintel, FlyingChairs, KITTI), imported by reversing each clip in time")
    p.add_argument("--split", type=fractions, default=(0.8, 0.1, 0.1), metavar="TRAIN,VAL,TEST",
                   help="fractions of the clips per split (default 0.8,0.1,0.1)")
    p.add_argument("--seed", type=int, default=0, help="shuffles the clips before the split")
    p.add_argument("--force", action="store_true", help="overwrite an existing folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(data_run=run_import)
    p = data.add_parser("check", help="validate a data folder; lists every problem with the file that has it")
    p.add_argument("dir", type=Path)
    p.set_defaults(data_run=run_check)


DATA = Command("data", "synthetic data and data-folder checks", add_arguments, lambda args: args.data_run(args))
