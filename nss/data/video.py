"""Video in and out with PyAV (FFmpeg bundled in the wheel: no system ffmpeg): frames of a video file, and an
H.264 MP4 written frame by frame."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: str | Path) -> bool:
    return Path(path).is_file() and Path(path).suffix.lower() in VIDEO_SUFFIXES


def video_info(path: str | Path) -> dict:
    """Frame count (when the container says), frame rate and size of a video's first video stream."""
    import av
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            return {"frames": stream.frames or None, "fps": float(rate), "width": stream.width,
                    "height": stream.height}
    except (av.error.FFmpegError, IndexError) as err:
        raise DataError(f"{path}: not a readable video ({err})") from None


def read_video(path: str | Path) -> Iterator[np.ndarray]:
    """The frames of a video, each (H, W, 3) uint8 RGB."""
    import av
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as err:
        raise DataError(f"{path}: cannot decode the video ({err})") from None


class VideoWriter:
    """An H.264 MP4 (yuv420p, so every player opens it) written one RGB frame (H, W, 3) uint8 at a time."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float = 25.0):
        import av
        if width % 2 or height % 2:
            raise ValueError(f"H.264 in yuv420p needs even sides, got {width}x{height}")
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.options = {"crf": "20", "preset": "veryfast"}

    def write(self, frame: np.ndarray) -> None:
        import av
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
