"""The label encodings common tools write, read into what training uses: a value and a per-pixel weight (1 where
labelled). Every refusal names the file, what it holds and what is accepted.

Masks (PNG):
- grey (L, 8 or 16 bit): 0/1 or 0/255 (0/65535), nothing else (a class-index map is refused, not misread);
- palette (P, DAVIS/VOC): index 0 background, any other index foreground, index 255 ignored (VOC's boundaries);
- RGB/RGBA: black (all colour channels 0) background, any other colour foreground (colour-coded annotations).
Flow (dx, dy; frame N at (x, y) shows what frame N−1 shows at (x+dx, y+dy)):
- .npy: float32 H×W×2;
- .flo (Middlebury; Sintel, FlyingChairs and most flow tools): float32 magic 202021.25, int32 width, int32 height,
  then H×W×2 float32 row-major;
- .png (KITTI): 16-bit RGB, u = (R − 2^15)/64, v = (G − 2^15)/64, B = 1 where the flow is valid (a sparse label).
Homographies: .txt, a 3×3 matrix mapping frame N−1 to N.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

FLO_MAGIC = np.float32(202021.25)
MASK_SUFFIXES = (".png",)
FLOW_SUFFIXES = (".npy", ".flo", ".png")
SUFFIXES = {"image": (".png", ".jpg", ".jpeg"), "mask": MASK_SUFFIXES, "flow": FLOW_SUFFIXES,
            "homography": (".txt",)}
PALETTE_IGNORE = 255


def _check_size(path: Path, shape: tuple[int, ...], size: tuple[int, int] | None) -> None:
    if size is not None and tuple(shape[:2]) != tuple(size):
        raise DataError(f"{path}: size {shape[1]}x{shape[0]} does not match the frame size {size[1]}x{size[0]}")


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: corrupt or unreadable image ({type(err).__name__})") from None


def read_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] from an 8- or 16-bit PNG or a JPEG."""
    with _open(path) as image:
        if image.mode in ("I;16", "I;16B", "I"):
            array = np.asarray(image, np.float32) / 65535.0
            array = np.repeat(array[..., None], 3, axis=-1)
        else:
            array = np.asarray(image.convert("RGB"), np.float32) / 255.0
    _check_size(path, array.shape, size)
    return array


def read_mask(path: Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Foreground (H, W) in {0, 1} and its weight (0 where ignored), from any of the accepted encodings."""
    with _open(path) as image:
        mode = image.mode
        if mode == "P":
            index = np.asarray(image)
            weight = index != PALETTE_IGNORE
            foreground = (index > 0) & weight
        elif mode in ("L", "1", "I;16", "I;16B", "I"):
            value = np.asarray(image)
            values = np.unique(value)
            peak = next((p for p in (1, 255, 65535) if set(values.tolist()) <= {0, p}), None)
            if peak is None:
                shown = ", ".join(str(v) for v in values[:6]) + (", …" if len(values) > 6 else "")
                raise DataError(f"{path}: a grey mask of mode {mode!r} with values {{{shown}}}; accepted: 0/1 or "
                                "0/255 (0/65535 in 16 bits); a class-index map needs a palette or its foreground "
                                "class picked out first")
            foreground, weight = value == peak, np.ones(value.shape, bool)
        elif mode in ("RGB", "RGBA", "LA"):
            colour = np.asarray(image.convert("RGB"))
            foreground, weight = colour.any(axis=-1), np.ones(colour.shape[:2], bool)
        else:
            raise DataError(f"{path}: a mask of mode {mode!r} is not accepted (grey 0/1 or 0/255, palette, or RGB "
                            "with a black background)")
    _check_size(path, foreground.shape, size)
    return foreground.astype(np.float32), weight.astype(np.float32)


def read_flo(path: Path) -> np.ndarray:
    data = path.read_bytes()
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != FLO_MAGIC:
        raise DataError(f"{path}: not a Middlebury .flo file (its first 4 bytes must be the float 202021.25)")
    width, height = (int(v) for v in np.frombuffer(data[4:12], "<i4"))
    expected = 12 + 8 * width * height
    if width <= 0 or height <= 0 or len(data) != expected:
        raise DataError(f"{path}: .flo header says {width}x{height} (file of {expected} bytes), the file has "
                        f"{len(data)} bytes")
    return np.frombuffer(data[12:], "<f4").reshape(height, width, 2).copy()


def write_flo(path: Path, flow: np.ndarray) -> None:
    height, width = flow.shape[:2]
    Path(path).write_bytes(FLO_MAGIC.tobytes() + np.array([width, height], "<i4").tobytes()
                           + np.ascontiguousarray(flow, "<f4").tobytes())


def read_flow(path: Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flow (H, W, 2) float32 and its weight (H, W): 1 everywhere, or KITTI's valid bit."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            flow = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: corrupt or unreadable .npy ({err})") from None
        weight = None
    elif suffix == ".flo":
        try:
            flow, weight = read_flo(path), None
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
    elif suffix == ".png":
        flow, weight = _read_kitti(path)
    else:
        raise DataError(f"{path}: flow files are .npy, .flo (Middlebury) or 16-bit .png (KITTI), not {suffix!r}")
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise DataError(f"{path}: flow must be H×W×2, got shape {flow.shape}")
    _check_size(path, flow.shape, size)
    flow = flow.astype(np.float32)
    return flow, (np.ones(flow.shape[:2], np.float32) if weight is None else weight)


def _read_kitti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """KITTI's 16-bit RGB flow PNG: the flow and its valid bit. (Pillow reads 16-bit RGB as 8-bit: PyAV's PNG
    decoder keeps the 16 bits.)"""
    samples = read_png16(path)
    if samples is None:
        with _open(path) as image:
            mode = image.mode
        raise DataError(f"{path}: a flow PNG must be KITTI's 16-bit RGB (u, v, valid), got mode {mode!r}")
    flow = (samples[..., :2].astype(np.float32) - 2 ** 15) / 64.0
    valid = (samples[..., 2] > 0).astype(np.float32)
    return flow * valid[..., None], valid


def read_png16(path: Path) -> np.ndarray | None:
    """The (H, W, 3) uint16 samples of a 16-bit RGB PNG, None if it is another kind of image."""
    import av
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
    except (av.error.FFmpegError, StopIteration):
        raise DataError(f"{path}: corrupt or unreadable PNG") from None
    if frame.format.name not in ("rgb48be", "rgb48le", "rgba64be", "rgba64le"):
        return None
    return frame.to_ndarray(format="rgb48le")


def write_png16(path: Path, samples: np.ndarray) -> None:
    """A 16-bit RGB PNG of (H, W, 3) uint16 samples (KITTI's flow format)."""
    import av
    height, width = samples.shape[:2]
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(samples, np.uint16), format="rgb48le")
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb48be"
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)


def write_kitti_flow(path: Path, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    valid = np.ones(flow.shape[:2]) if valid is None else valid
    samples = np.stack([np.clip(np.round(flow[..., 0] * 64 + 2 ** 15), 0, 65535),
                        np.clip(np.round(flow[..., 1] * 64 + 2 ** 15), 0, 65535), valid > 0], axis=-1)
    write_png16(path, samples.astype(np.uint16))
