"""Reading user images safely: bounded size, checked before decoding, one clear line on any problem.

``load_image`` reproduces the official source preparation (``cv2`` decode, ``resize_to_limit`` with
``source_max_dim`` 1280 and ``source_division`` 2); ``media_kind`` tells images from videos by content.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from lpt.errors import LptError

SOURCE_MAX_DIM = 1280  # official source_max_dim
SOURCE_DIVISION = 2  # official source_division: height and width are cropped to multiples of it
MIN_IMAGE_SIDE = 32  # smaller than this holds no face the detector could find
MAX_IMAGE_PIXELS = 100_000_000  # about a 10000x10000 photo; decoded it takes 300 MB
MAX_IMAGE_BYTES = 256 * 1024 * 1024

# The still formats the official code takes as images (.jpg .jpeg .png .gif .bmp .tiff .webp), as Pillow
# names them; MPO is the multi-picture JPEG many phones write.
IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "TIFF", "WEBP"})

_BEYOND_PILLOW = (-1, -1)  # a header so large that Pillow itself refuses it as a decompression bomb

MediaKind = Literal["image", "video"]


class MediaError(LptError):
    """An image or video file is missing, unreadable, empty, too small or too large."""


def check_input_file(path: Path, what: str) -> int:
    """The size of ``path``; ``MediaError`` unless it is an existing, non-empty regular file."""
    if not path.exists():
        raise MediaError(f"{what} {path} does not exist")
    if not path.is_file():
        raise MediaError(f"{what} {path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(f"{what} {path} is empty (0 bytes)")
    return size


def _read_checked(path: Path, what: str, max_bytes: int) -> bytes:
    size = check_input_file(path, what)
    if size > max_bytes:
        raise MediaError(f"{what} {path} is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB allowed")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MediaError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def _header_size(source: Path | io.BytesIO) -> tuple[int, int] | None:
    """(width, height) from a still-image header without decoding pixels; None unless it is one of the
    formats the official code accepts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(source) as header:
                return header.size if header.format in IMAGE_FORMATS else None
        except Image.DecompressionBombError:
            return _BEYOND_PILLOW
        except Exception:  # noqa: BLE001 - Pillow raises many types on malformed headers; all mean "not an image"
            return None


def load_image(path: Path | str, max_side: int = SOURCE_MAX_DIM, *, division: int = SOURCE_DIVISION,
               min_side: int = MIN_IMAGE_SIDE, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image, prepared as the official source: the longer side at most ``max_side``
    (bilinear downscale), then height and width cropped to multiples of ``division``.

    The header's dimensions are checked against ``min_side`` and ``max_pixels`` before any pixel is decoded.
    """
    path = Path(path)
    data = _read_checked(path, "image", MAX_IMAGE_BYTES)
    size = _header_size(io.BytesIO(data))
    if size is None:
        raise MediaError(f"image {path} is not a JPEG, PNG, BMP, GIF, TIFF or WebP image (unknown or corrupt header)")
    if size == _BEYOND_PILLOW:
        raise MediaError(f"image {path} declares more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels, "
                         f"more than the {max_pixels:,} allowed")
    width, height = size
    if width * height > max_pixels:
        raise MediaError(f"image {path} declares {width}x{height} pixels, more than the {max_pixels:,} allowed")
    if min(width, height) < min_side:
        raise MediaError(f"image {path} is {width}x{height}: too small, each side must be at least {min_side} pixels")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3:
        raise MediaError(f"image {path} cannot be decoded (corrupt or unsupported {width}x{height} image)")
    return resize_to_limit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), max_side, division)


def resize_to_limit(image: np.ndarray, max_side: int, division: int) -> np.ndarray:
    """The official ``resize_to_limit``: downscale so the longer side is ``max_side`` (the other side
    truncated to an int), then crop the bottom and right so both sides are multiples of ``division``."""
    height, width = image.shape[:2]
    if max_side > 0 and max(height, width) > max_side:
        if height > width:
            size = (int(width * (max_side / height)), max_side)
        else:
            size = (max_side, int(height * (max_side / width)))
        image = cv2.resize(image, size)
        height, width = image.shape[:2]
    division = max(division, 1)
    new_height, new_width = height - height % division, width - width % division
    if new_height == 0 or new_width == 0:
        return image
    return np.ascontiguousarray(image[:new_height, :new_width])


def is_image(path: Path | str) -> bool:
    """True when the file's content (not its name) starts with a still-image header Pillow recognises."""
    path = Path(path)
    return path.is_file() and _header_size(path) is not None


def _still_image_demuxer(format_names: str) -> bool:
    """FFmpeg's image2 and *_pipe demuxers take a file by its name or first bytes and decode nothing on
    opening: a "video" of one picture that Pillow already refused."""
    return any(name == "image2" or name.endswith("_pipe") for name in format_names.split(","))


def _video_probe(path: Path) -> tuple[int, str]:
    """(video streams FFmpeg finds by content, why the file is no video: "" when FFmpeg read the container)."""
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if _still_image_demuxer(container.format.name):
                return 0, "a corrupt or unsupported still image"
            return len(container.streams.video), ""
    except Exception as exc:  # noqa: BLE001 - FFmpeg's probing raises many types on arbitrary bytes; all mean "no video"
        return 0, "FFmpeg: " + (" ".join(str(getattr(exc, "strerror", None) or exc).split())[:120] or type(exc).__name__)


def is_video(path: Path | str) -> bool:
    """True when FFmpeg opens the file by content and finds a video stream, and it is not a still image."""
    return not is_image(path) and _video_probe(Path(path))[0] > 0


def media_kind(path: Path | str, what: str = "input") -> MediaKind:
    """``"image"`` or ``"video"`` by content; ``MediaError`` naming the file when it is neither."""
    path = Path(path)
    check_input_file(path, what)
    if is_image(path):
        return "image"
    streams, why = _video_probe(path)
    if streams:
        return "video"
    if not why:  # FFmpeg read the container: an MP4 whose only track had no frames, an audio file
        raise MediaError(f"{what} {path} has no video frames (the file holds no video stream)")
    raise MediaError(f"{what} {path} is neither an image nor a video that lpt can read ({why})")
